#include "json_number.h"
#include "job_marker.h"

#include "fsutil.h"
#include "rb_mpi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int job_marker_clear(const char *dir, rb_error *err)
{
    char *p = fs_join(dir, JOB_MARKER_FILE);
    if (!p)
        return rb_fail(err, NULL, "out of memory");
    int rc = 0;
    if (unlink(p) != 0 && errno != ENOENT)
        rc = rb_fail(err, "check the permissions of the output folder", "%s: cannot remove the marker of an earlier run: %s",
                     p, strerror(errno));
    free(p);
    return rc;
}

void job_marker_add_hosts(cJSON *j)
{
    int n = rb_mpi_host_count();
    if (n <= 0)
        return;
    cJSON *h = cJSON_AddArrayToObject(j, "hosts");
    for (int r = 0; r < n; r++)
        cJSON_AddItemToArray(h, cJSON_CreateString(rb_mpi_host(r)));
}

int job_marker_write(const char *dir, const char *command, cJSON *fields, rb_error *err)
{
    cJSON *j = cJSON_CreateObject();
    char format[64];
    snprintf(format, sizeof format, "radbatch-%s-summary", command);
    cJSON_AddStringToObject(j, "format", format);
    json_add_exact_number(j, "version", 1);
    cJSON_AddBoolToObject(j, "complete", 1);
    cJSON_AddStringToObject(j, "radbatch", RADBATCH_VERSION);
    job_marker_add_hosts(j);
    if (fields) {
        cJSON *it;
        while ((it = fields->child) != NULL) {
            cJSON_DetachItemViaPointer(fields, it);
            cJSON_AddItemToObject(j, it->string, it); /* it->string stays valid: the item keeps it */
        }
        cJSON_Delete(fields);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char *p = fs_join(dir, JOB_MARKER_FILE);
    int rc;
    if (!text || !p)
        rc = rb_fail(err, NULL, "out of memory");
    else {
        size_t n = strlen(text);
        char *t = realloc(text, n + 2);
        if (t) {
            text = t;
            text[n++] = '\n';
        }
        rc = fs_write_file_atomic(p, text, n, err);
    }
    free(text);
    free(p);
    return rc;
}

int job_marker_done(const char *dir, const char *command)
{
    char *p = fs_join(dir, JOB_MARKER_FILE);
    uint8_t *b = NULL;
    size_t n = 0;
    rb_error e;
    int ok = p && fs_is_file(p) && fs_read_file(p, 64 << 20, &b, &n, &e) == 0;
    cJSON *j = ok ? cJSON_ParseWithLength((const char *)b, n) : NULL;
    ok = j && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "complete"));
    if (ok && command) {
        char format[64];
        snprintf(format, sizeof format, "radbatch-%s-summary", command);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
        ok = cJSON_IsString(f) && strcmp(f->valuestring, format) == 0;
    }
    cJSON_Delete(j);
    free(b);
    free(p);
    return ok;
}
