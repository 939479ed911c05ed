/* JSON numbers that read back as the same double.
 *
 * cJSON prints a number with 15 significant digits whenever these read back within
 * DBL_EPSILON of it, so a value can come back one ulp off. Numbers radbatch reads again
 * decide things: a model card's threshold is one image's score (one ulp above it, that
 * image is no longer flagged), a checkpoint's learning rate must resume bit-exactly, and a
 * nightly infer run compares its threshold with the previous run's. So every number
 * radbatch writes to JSON goes through these: integers (below 2^53) in integer form, other
 * values with the fewest digits (15, 16 or 17) that read back exactly, and null for NaN and
 * infinities (as cJSON writes them). The items are cJSON "raw" items: printed as they are,
 * numbers again once the text is parsed. */
#ifndef JSON_NUMBER_H
#define JSON_NUMBER_H

#include <cjson/cJSON.h>

/* A new item holding v; NULL when out of memory. */
cJSON *json_exact_number(double v);
/* obj[name] = v; the item, or NULL on failure (as cJSON_AddNumberToObject). */
cJSON *json_add_exact_number(cJSON *obj, const char *name, double v);
/* The text: at most 24 characters and the terminating 0. */
void json_number_text(double v, char out[32]);

#endif
