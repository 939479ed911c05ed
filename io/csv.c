#include "csv.h"
#include "fsutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int csv_writer_open(csv_writer *w, const char *path, rb_error *err)
{
    memset(w, 0, sizeof *w);
    w->path = strdup(path);
    w->tmp = fs_temp_name(path);
    if (!w->path || !w->tmp)
        return rb_fail(err, NULL, "%s: out of memory", path);
    w->f = fopen(w->tmp, "w");
    if (!w->f) {
        int e = errno;
        free(w->path);
        free(w->tmp);
        w->path = w->tmp = NULL;
        return rb_fail(err, "check that the output folder exists and is writable", "%s: cannot create: %s",
                       path, strerror(e));
    }
    return 0;
}

void csv_field(csv_writer *w, const char *s)
{
    if (w->col++)
        fputc(',', w->f);
    if (!s)
        s = "";
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, w->f);
        return;
    }
    fputc('"', w->f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', w->f);
        fputc(*s, w->f);
    }
    fputc('"', w->f);
}

void csv_field_int(csv_writer *w, long long v)
{
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    csv_field(w, b);
}

void csv_field_float(csv_writer *w, double v, int digits)
{
    char b[64];
    snprintf(b, sizeof b, "%.*f", digits, v);
    csv_field(w, b);
}

void csv_end_row(csv_writer *w)
{
    fputc('\n', w->f);
    w->col = 0;
}

int csv_writer_close(csv_writer *w, rb_error *err)
{
    int rc = fs_commit_stream(w->f, w->tmp, w->path, err);
    w->f = NULL;
    free(w->path);
    free(w->tmp);
    w->path = w->tmp = NULL;
    return rc;
}

void csv_writer_abort(csv_writer *w)
{
    if (w->f)
        fclose(w->f);
    if (w->tmp)
        unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    memset(w, 0, sizeof *w);
}

int csv_split_line(char *line, char **fields, int maxf)
{
    int n = 0;
    char *p = line;
    size_t l = strlen(line);
    while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
        line[--l] = 0;
    while (n < maxf) {
        if (*p == '"') {
            char *out = ++p, *start = p;
            for (;;) {
                if (*p == 0)
                    break;
                if (*p == '"') {
                    if (p[1] == '"') {
                        *out++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *out++ = *p++;
            }
            fields[n++] = start;
            char *rest = p;
            *out = 0;
            p = rest;
            while (*p && *p != ',')
                p++;
        } else {
            fields[n++] = p;
            while (*p && *p != ',')
                p++;
        }
        if (*p != ',')
            break;
        *p++ = 0;
    }
    return n;
}
