/* rb_error: the one way radbatch reports a failure.
 *
 * A function that can fail takes `rb_error *err` last and returns 0 on success, -1 on
 * failure after filling err with: what went wrong (naming the path or key involved), where
 * in our code it was detected (file:line), and a hint for the user. Library code never
 * prints or exits; the command driver prints the error once and decides the exit code. */
#ifndef RB_ERROR_H
#define RB_ERROR_H

#include <stdarg.h>

typedef struct rb_error {
    char msg[1024];  /* what failed, naming the file/key: "x.jpeg: truncated JPEG data" */
    char hint[512];  /* what the user can do about it; may be empty */
    char where[128]; /* source location that detected it: "io/image_decode.c:120" */
} rb_error;

/* Fill err (if not NULL) and return -1. hint may be NULL. */
int rb_fail_at(rb_error *err, const char *file, int line, const char *hint, const char *fmt,
               ...) __attribute__((format(printf, 5, 6)));
#define rb_fail(err, hint, ...) rb_fail_at((err), __FILE__, __LINE__, (hint), __VA_ARGS__)

/* Prefix err->msg with more context ("convert: " ...). Returns -1. */
int rb_error_prefix(rb_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void rb_error_clear(rb_error *err);

/* err->msg without a leading "<path>: " (the reason alone, for errors.csv and per-file
 * warnings); err->msg whole when it does not start with path. Points into err->msg. */
const char *rb_error_reason(const rb_error *err, const char *path);

/* "error: <msg>\n  hint: <hint>\n  (detected at <where>)" on stderr. */
void rb_error_print(const rb_error *err, const char *prefix);

#endif
