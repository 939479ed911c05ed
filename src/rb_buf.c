#include "rb_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int grow(rb_buf *b, size_t need)
{
    if (b->failed)
        return -1;
    if (b->len + need <= b->cap)
        return 0;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + need)
        nc *= 2;
    uint8_t *d = realloc(b->data, nc);
    if (!d) {
        b->failed = 1;
        return -1;
    }
    b->data = d;
    b->cap = nc;
    return 0;
}

int rb_buf_put(rb_buf *b, const void *p, size_t n)
{
    if (grow(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int rb_buf_put_str(rb_buf *b, const char *s) { return rb_buf_put(b, s ? s : "", strlen(s ? s : "") + 1); }

int rb_buf_printf(rb_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || grow(b, (size_t)n + 1) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n; /* the NUL is not part of the content */
    return 0;
}

int rb_buf_get(rb_buf *b, void *p, size_t n)
{
    if (b->pos + n > b->len)
        return -1;
    memcpy(p, b->data + b->pos, n);
    b->pos += n;
    return 0;
}

const char *rb_buf_get_str(rb_buf *b)
{
    if (b->pos >= b->len)
        return NULL;
    const char *s = (const char *)b->data + b->pos;
    const void *end = memchr(s, 0, b->len - b->pos);
    if (!end)
        return NULL;
    b->pos += strlen(s) + 1;
    return s;
}

void rb_buf_free(rb_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}
