/* JSON numbers that read back exactly (io/json_number.c): a model card's threshold is one
 * image's float score; cJSON's own printer writes 15 digits when they read back within
 * DBL_EPSILON, which can be one ulp above the score, so that image would no longer reach
 * the threshold. The exact writer must round-trip every value, with no more digits than
 * needed. */
#include "json_number.h"
#include "test_util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the value read back from the printed object {"v": x}; NAN when v is not a number */
static double round_trip(cJSON *obj)
{
    char *text = cJSON_PrintUnformatted(obj);
    cJSON *back = text ? cJSON_Parse(text) : NULL;
    const cJSON *v = back ? cJSON_GetObjectItemCaseSensitive(back, "v") : NULL;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(back);
    free(text);
    return d;
}

int main(void)
{
    /* the float score behind a threshold that once moved an image (0.530853569507599 is
     * what cJSON printed; it reads back one ulp above the score) */
    double score = (double)0.5308535695075989f;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "v", score);
    double plain = round_trip(o);
    cJSON_Delete(o);
    CHECK(plain != score, "cJSON's own printer now round-trips %.17g: this test no longer shows why the exact writer "
                          "exists", score);
    o = cJSON_CreateObject();
    json_add_exact_number(o, "v", score);
    CHECK(round_trip(o) == score, "exact writer: %.17g read back as %.17g", score, round_trip(o));
    float f = 0.5308535695075989f;
    CHECK((float)round_trip(o) >= f, "the image at the threshold still reaches it");
    cJSON_Delete(o);

    /* many values: every float in a sweep, random doubles, extremes; each reads back exactly */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int bad = 0, n = 0;
    for (int i = 0; i < 200000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double v;
        if (i % 2)
            v = (double)(float)((double)(s >> 11) / 9007199254740992.0); /* float scores in [0, 1) */
        else {
            uint64_t bits = s & ~(0x7ffull << 52);
            bits |= (uint64_t)(1023 + (int)(s % 40) - 20) << 52; /* doubles within 2^+-20 */
            memcpy(&v, &bits, sizeof v);
        }
        o = cJSON_CreateObject();
        json_add_exact_number(o, "v", v);
        bad += round_trip(o) != v;
        n++;
        cJSON_Delete(o);
    }
    CHECK(bad == 0, "%d of %d values did not read back exactly", bad, n);
    double edge[] = {0, 1, 0.5, 0.1, 1e-300, 5e-324, 1.7976931348623157e308, -2.5, 38.3};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        o = cJSON_CreateObject();
        json_add_exact_number(o, "v", edge[i]);
        CHECK(round_trip(o) == edge[i], "%.17g", edge[i]);
        cJSON_Delete(o);
    }
    /* no more digits than needed: 0.1 stays 0.1, 0.5 stays 0.5 */
    o = cJSON_CreateObject();
    json_add_exact_number(o, "v", 0.1);
    char *text = cJSON_PrintUnformatted(o);
    CHECK(text && strcmp(text, "{\"v\":0.1}") == 0, "0.1 printed as %s", text ? text : "(null)");
    free(text);
    cJSON_Delete(o);
    /* integers in integer form, also beyond 1e15 where %.15g would switch to an exponent */
    o = cJSON_CreateObject();
    json_add_exact_number(o, "a", 158);
    json_add_exact_number(o, "b", 1234567890123456.0);
    json_add_exact_number(o, "c", -3);
    text = cJSON_PrintUnformatted(o);
    CHECK(text && strcmp(text, "{\"a\":158,\"b\":1234567890123456,\"c\":-3}") == 0, "integers printed as %s",
          text ? text : "(null)");
    free(text);
    cJSON_Delete(o);
    /* in an array */
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, json_exact_number(score));
    text = cJSON_PrintUnformatted(arr);
    cJSON *back = text ? cJSON_Parse(text) : NULL;
    CHECK(back && cJSON_IsNumber(cJSON_GetArrayItem(back, 0)) && cJSON_GetArrayItem(back, 0)->valuedouble == score,
          "array item %s", text ? text : "(null)");
    cJSON_Delete(back);
    free(text);
    cJSON_Delete(arr);
    /* not finite: null, as cJSON writes it */
    o = cJSON_CreateObject();
    json_add_exact_number(o, "v", NAN);
    json_add_exact_number(o, "w", INFINITY);
    text = cJSON_PrintUnformatted(o);
    CHECK(text && strcmp(text, "{\"v\":null,\"w\":null}") == 0, "non-finite printed as %s", text ? text : "(null)");
    free(text);
    cJSON_Delete(o);
    return TEST_DONE();
}
