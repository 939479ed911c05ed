/* A growable byte buffer for building messages (MPI gathers, serialized lists). Once an
 * allocation fails the buffer is marked failed and further appends do nothing. */
#ifndef RB_BUF_H
#define RB_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct rb_buf {
    uint8_t *data;
    size_t len, cap, pos; /* pos: read cursor */
    int failed;
} rb_buf;

/* A buffer that reads len bytes of data from the start (rb_buf_get...); it does not own data. */
static inline rb_buf rb_buf_reader(const void *data, size_t len)
{
    return (rb_buf){.data = (uint8_t *)data, .len = len, .cap = len};
}

int rb_buf_put(rb_buf *b, const void *p, size_t n);
int rb_buf_put_str(rb_buf *b, const char *s); /* with its NUL */
int rb_buf_printf(rb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* reading: return 0, or -1 when the buffer is exhausted */
int rb_buf_get(rb_buf *b, void *p, size_t n);
const char *rb_buf_get_str(rb_buf *b); /* pointer into the buffer, or NULL */
void rb_buf_free(rb_buf *b);

#endif
