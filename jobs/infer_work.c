#include "infer_work.h"
#include "fsutil.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

const char *infer_input_kind_name(infer_input_kind k)
{
    return k == INFER_INPUT_LIST ? "list" : k == INFER_INPUT_SHARDS ? "shards" : "folder";
}

char *infer_chunk_path(const char *work, const char *prefix, int64_t k)
{
    size_t n = strlen(work) + strlen(prefix) + 40;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s-%0*lld.csv", work, prefix, INFER_CHUNK_DIGITS, (long long)k);
    return s;
}

int csvrec_read(FILE *f, rb_buf *rec)
{
    rec->len = 0;
    rec->pos = 0;
    int inq = 0, c, any = 0;
    while ((c = getc(f)) != EOF) {
        any = 1;
        char ch = (char)c;
        if (rb_buf_put(rec, &ch, 1) < 0)
            return -1;
        if (ch == '"')
            inq = !inq;
        else if (ch == '\n' && !inq)
            break;
    }
    if (!any)
        return 0;
    if (rb_buf_put(rec, "", 1) < 0)
        return -1;
    rec->len--; /* the NUL is not content */
    return 1;
}

int csvrec_key(const char *rec, rb_buf *out)
{
    out->len = 0;
    const char *p = rec;
    if (*p == '"') {
        p++;
        for (; *p; p++) {
            if (*p == '"') {
                if (p[1] == '"') {
                    rb_buf_put(out, "\"", 1);
                    p++;
                    continue;
                }
                break;
            }
            rb_buf_put(out, p, 1);
        }
    } else {
        const char *e = p;
        while (*e && *e != ',' && *e != '\n' && *e != '\r')
            e++;
        rb_buf_put(out, p, (size_t)(e - p));
    }
    if (rb_buf_put(out, "", 1) < 0)
        return -1;
    out->len--;
    return 0;
}

void csvrow_field(rb_buf *row, const char *s, int first)
{
    if (!first)
        rb_buf_put(row, ",", 1);
    if (!s)
        s = "";
    if (strpbrk(s, ",\"\r\n") == NULL) {
        rb_buf_put(row, s, strlen(s));
        return;
    }
    rb_buf_put(row, "\"", 1);
    for (; *s; s++) {
        if (*s == '"')
            rb_buf_put(row, "\"", 1);
        rb_buf_put(row, s, 1);
    }
    rb_buf_put(row, "\"", 1);
}

int infer_entry_parse(char **f, int nf, infer_entry *e)
{
    if (nf < 5)
        return -1;
    e->path = f[0];
    char *end;
    e->size = strtoll(f[1], &end, 10);
    if (*end)
        return -1;
    snprintf(e->mtime, sizeof e->mtime, "%s", f[2]);
    snprintf(e->hash, sizeof e->hash, "%s", f[3]);
    e->ref = f[4];
    return 0;
}

void infer_entry_format(rb_buf *row, const char *path, int64_t size, const char *mtime, const char *hash,
                        const char *ref)
{
    char num[32];
    snprintf(num, sizeof num, "%" PRId64, size);
    csvrow_field(row, path, 1);
    csvrow_field(row, num, 0);
    csvrow_field(row, mtime, 0);
    csvrow_field(row, hash, 0);
    csvrow_field(row, ref, 0);
    rb_buf_put(row, "\n", 1);
}

void infer_mtime_text(char out[32], int64_t sec, int32_t nsec)
{
    snprintf(out, 32, "%" PRId64 ".%09d", sec, (int)nsec);
}

void infer_hash_hex(const void *data, size_t len, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits(data, len));
}

int infer_write_atomic(const char *path, const void *data, size_t len, rb_error *err)
{
    return fs_write_file_atomic(path, data, len, err); /* fsyncs the folder too: the rename is durable */
}
