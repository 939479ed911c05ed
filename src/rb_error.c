#include "rb_error.h"
#include "rb_log.h"

#include <stdio.h>
#include <string.h>

int rb_fail_at(rb_error *err, const char *file, int line, const char *hint, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    snprintf(err->hint, sizeof err->hint, "%s", hint ? hint : "");
    /* keep only the last two path components: "io/image_decode.c" */
    const char *short_file = file, *p = file + strlen(file);
    int slashes = 0;
    while (p > file) {
        --p;
        if (*p == '/' && ++slashes == 2) {
            short_file = p + 1;
            break;
        }
    }
    snprintf(err->where, sizeof err->where, "%s:%d", short_file, line);
    return -1;
}

int rb_error_prefix(rb_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char pre[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", pre, old);
    return -1;
}

void rb_error_clear(rb_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

const char *rb_error_reason(const rb_error *err, const char *path)
{
    size_t l = strlen(path);
    if (strncmp(err->msg, path, l) == 0 && err->msg[l] == ':' && err->msg[l + 1] == ' ')
        return err->msg + l + 2;
    return err->msg;
}

void rb_error_print(const rb_error *err, const char *prefix)
{
    char text[sizeof err->msg + sizeof err->hint + sizeof err->where + 256];
    int n = snprintf(text, sizeof text, "error: %s%s\n", prefix ? prefix : "",
                     err->msg[0] ? err->msg : "unknown failure");
    if (err->hint[0] && n >= 0 && (size_t)n < sizeof text)
        n += snprintf(text + n, sizeof text - (size_t)n, "  hint: %s\n", err->hint);
    if (err->where[0] && n >= 0 && (size_t)n < sizeof text)
        snprintf(text + n, sizeof text - (size_t)n, "  (detected at %s)\n", err->where);
    rb_log_stderr(text); /* one write: lines of concurrent messages do not interleave */
}
