#include "json_number.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

cJSON *json_add_exact_number(cJSON *obj, const char *name, double v)
{
    if (!isfinite(v))
        return cJSON_AddNullToObject(obj, name);
    char buf[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return cJSON_AddRawToObject(obj, name, buf);
}
