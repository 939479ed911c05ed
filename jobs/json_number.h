/* JSON numbers that read back as the same double.
 *
 * cJSON prints a number with 15 significant digits whenever these read back within
 * DBL_EPSILON of it, so a value can come back one ulp off. For values that decide
 * something when read again (a model card's threshold, which equals one image's score, and
 * its calibration temperature) that ulp moves an image across the threshold. These are
 * written with the fewest digits (15, 16 or 17) that read back exactly. */
#ifndef JSON_NUMBER_H
#define JSON_NUMBER_H

#include <cjson/cJSON.h>

/* obj[name] = v, exact; null when v is not finite (as cJSON prints it). NULL on failure. */
cJSON *json_add_exact_number(cJSON *obj, const char *name, double v);

#endif
