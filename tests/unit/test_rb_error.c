/* rb_error: the one helper that takes the reason out of a per-file error message
 * (rb_error_reason, src/rb_error.c), as errors.csv and per-file warnings of convert,
 * evaluate, infer and predict write it, and the message's fields as rb_fail fills them. */
#include "rb_error.h"
#include "test_util.h"

#include <string.h>

int main(void)
{
    rb_error e;
    rb_fail(&e, "a hint", "%s: %s", "dir/x.jpeg", "truncated JPEG data");
    CHECK(!strcmp(rb_error_reason(&e, "dir/x.jpeg"), "truncated JPEG data"), "'%s'",
          rb_error_reason(&e, "dir/x.jpeg"));
    CHECK(!strcmp(e.hint, "a hint"), "hint '%s'", e.hint);
    CHECK(!strncmp(e.where, "unit/test_rb_error.c:", 21), "where '%s'", e.where);

    /* another path, a prefix of the path, or no ": " after it: the message whole */
    CHECK(rb_error_reason(&e, "dir/y.jpeg") == e.msg, "other path");
    CHECK(rb_error_reason(&e, "dir/x") == e.msg, "path prefix '%s'", rb_error_reason(&e, "dir/x"));
    rb_fail(&e, NULL, "dir/x.jpeg:12 odd");
    CHECK(rb_error_reason(&e, "dir/x.jpeg") == e.msg, "no ': ' after the path");
    CHECK(e.hint[0] == 0, "no hint '%s'", e.hint);

    /* a message that is only the path and ": " gives an empty reason */
    rb_fail(&e, NULL, "a.png: ");
    CHECK(!strcmp(rb_error_reason(&e, "a.png"), ""), "'%s'", rb_error_reason(&e, "a.png"));
    return TEST_DONE();
}
