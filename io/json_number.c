#include "json_number.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void json_number_text(double v, char out[32])
{
    if (!isfinite(v)) {
        snprintf(out, 32, "null");
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) { /* an integer: no exponent, no point */
        snprintf(out, 32, "%.0f", v);
        return;
    }
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(out, 32, "%.*g", digits, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

cJSON *json_exact_number(double v)
{
    char text[32];
    json_number_text(v, text);
    return isfinite(v) ? cJSON_CreateRaw(text) : cJSON_CreateNull();
}

cJSON *json_add_exact_number(cJSON *obj, const char *name, double v)
{
    cJSON *item = json_exact_number(v);
    if (item && !cJSON_AddItemToObject(obj, name, item)) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}
