#include "infer_index.h"
#include "fsutil.h"
#include "infer_work.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One CSV record starting at byte `off` of the file, into p->rec (NUL-terminated). */
static int read_record_at(infer_prev *p, uint64_t off, rb_error *err)
{
    p->rec.len = 0;
    int inq = 0;
    char buf[4096];
    for (;;) {
        ssize_t n = pread(p->fd_csv, buf, sizeof buf, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return rb_fail(err, NULL, "previous index.csv: read error: %s", strerror(errno));
        }
        if (n == 0)
            break;
        ssize_t i = 0;
        for (; i < n; i++) {
            if (buf[i] == '"')
                inq = !inq;
            else if (buf[i] == '\n' && !inq) {
                i++;
                break;
            }
        }
        rb_buf_put(&p->rec, buf, (size_t)i);
        off += (uint64_t)i;
        if (i < n || (p->rec.len && p->rec.data[p->rec.len - 1] == '\n' && !inq))
            break;
    }
    rb_buf_put(&p->rec, "", 1);
    if (p->rec.failed)
        return rb_fail(err, NULL, "out of memory");
    p->rec.len--;
    return 0;
}

static int read_offset(infer_prev *p, int64_t i, uint64_t *off, rb_error *err)
{
    if (pread(p->fd_idx, off, 8, (off_t)(24 + 8 * i)) != 8)
        return rb_fail(err, "rerun the previous run, or run without --since", "previous index.idx: short read");
    return 0;
}

int infer_prev_open(infer_prev *p, const char *run_dir, int nclasses, char *const *class_names, rb_error *err)
{
    memset(p, 0, sizeof *p);
    p->fd_csv = p->fd_idx = -1;
    char *c = fs_join(run_dir, "index.csv"), *x = fs_join(run_dir, "index.idx");
    if (!c || !x) {
        free(c);
        free(x);
        return rb_fail(err, NULL, "out of memory");
    }
    p->fd_csv = open(c, O_RDONLY | O_CLOEXEC);
    p->fd_idx = open(x, O_RDONLY | O_CLOEXEC);
    int rc = 0;
    if (p->fd_csv < 0 || p->fd_idx < 0)
        rc = rb_fail(err, "--since takes the folder of a finished infer run (it holds index.csv and index.idx)",
                     "%s: cannot open %s: %s", run_dir, p->fd_csv < 0 ? "index.csv" : "index.idx", strerror(errno));
    char head[24];
    if (rc == 0 && (pread(p->fd_idx, head, 24, 0) != 24 || memcmp(head, INFER_INDEX_MAGIC, 8) != 0))
        rc = rb_fail(err, "the previous run's index is damaged; run without --since", "%s: bad magic", x);
    if (rc == 0) {
        uint32_t ver;
        uint64_t n;
        memcpy(&ver, head + 8, 4);
        memcpy(&n, head + 16, 8);
        if (ver != 1)
            rc = rb_fail(err, NULL, "%s: index version %u (this radbatch reads 1)", x, ver);
        p->n = (int64_t)n;
    }
    if (rc == 0 && read_record_at(p, 0, err) == 0) {
        int nf = csv_split_line((char *)p->rec.data, p->fields, INFER_INDEX_MAX_FIELDS);
        p->nfields = 4 + nclasses + 2;
        int ok = nf == p->nfields && !strcmp(p->fields[0], "path");
        for (int k = 0; ok && k < nclasses; k++) {
            const char *h = p->fields[5 + k];
            ok = !strncmp(h, "prob_", 5) && !strcmp(h + 5, class_names[k]);
        }
        if (!ok)
            rc = rb_fail(err, "the model's classes differ from the previous run's; run without --since",
                         "%s: the header does not match this model's classes", c);
    } else if (rc == 0)
        rc = -1;
    free(c);
    free(x);
    if (rc < 0)
        infer_prev_close(p);
    return rc;
}

int infer_prev_find(infer_prev *p, const char *path, rb_error *err)
{
    int64_t lo = 0, hi = p->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        uint64_t off;
        if (read_offset(p, mid, &off, err) < 0 || read_record_at(p, off, err) < 0)
            return -1;
        csvrec_key((const char *)p->rec.data, &p->key);
        int c = strcmp((const char *)p->key.data, path);
        if (c == 0) {
            int nf = csv_split_line((char *)p->rec.data, p->fields, INFER_INDEX_MAX_FIELDS);
            if (nf != p->nfields)
                return rb_fail(err, "the previous run's index is damaged; run without --since",
                               "previous index.csv: row of %s has %d fields, expected %d", path, nf, p->nfields);
            return 1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

void infer_prev_close(infer_prev *p)
{
    if (p->fd_csv >= 0)
        close(p->fd_csv);
    if (p->fd_idx >= 0)
        close(p->fd_idx);
    rb_buf_free(&p->rec);
    rb_buf_free(&p->key);
    memset(p, 0, sizeof *p);
    p->fd_csv = p->fd_idx = -1;
}

/* ---- writing ------------------------------------------------------------------------------ */
int infer_index_open(infer_index_writer *w, const char *out_dir, const char *header, rb_error *err)
{
    memset(w, 0, sizeof *w);
    w->csv_path = fs_join(out_dir, "index.csv");
    w->idx_path = fs_join(out_dir, "index.idx");
    w->csv_tmp = w->csv_path ? fs_temp_name(w->csv_path) : NULL;
    w->idx_tmp = w->idx_path ? fs_temp_name(w->idx_path) : NULL;
    if (!w->csv_tmp || !w->idx_tmp) {
        infer_index_abort(w);
        return rb_fail(err, NULL, "out of memory");
    }
    w->csv = fopen(w->csv_tmp, "w");
    w->idx = fopen(w->idx_tmp, "w");
    if (!w->csv || !w->idx) {
        int e = errno;
        infer_index_abort(w);
        return rb_fail(err, NULL, "%s: cannot create index files: %s", out_dir, strerror(e));
    }
    char head[24] = {0};
    memcpy(head, INFER_INDEX_MAGIC, 8);
    uint32_t ver = 1;
    memcpy(head + 8, &ver, 4);
    fwrite(head, 1, 24, w->idx);
    fputs(header, w->csv);
    w->offset = strlen(header);
    return 0;
}

int infer_index_add(infer_index_writer *w, const char *row, size_t len)
{
    fwrite(&w->offset, 8, 1, w->idx);
    fwrite(row, 1, len, w->csv);
    w->offset += len;
    w->rows++;
    return 0;
}

static int close_one(FILE *f, const char *tmp, const char *path, rb_error *err)
{
    return fs_commit_stream(f, tmp, path, err);
}

int infer_index_close(infer_index_writer *w, rb_error *err)
{
    int rc = 0;
    if (fseek(w->idx, 16, SEEK_SET) != 0 || fwrite(&w->rows, 8, 1, w->idx) != 1 || fseek(w->idx, 0, SEEK_END) != 0)
        rc = fs_write_fail(err, w->idx_path, errno ? errno : EIO, 24 + 8 * (uint64_t)w->rows);
    /* the offsets file goes last: an index.csv without its index.idx is not taken as one */
    if (rc == 0)
        rc = close_one(w->csv, w->csv_tmp, w->csv_path, err);
    else
        fclose(w->csv);
    w->csv = NULL;
    if (rc == 0)
        rc = close_one(w->idx, w->idx_tmp, w->idx_path, err);
    else
        fclose(w->idx);
    w->idx = NULL;
    infer_index_abort(w);
    return rc;
}

void infer_index_abort(infer_index_writer *w)
{
    if (w->csv)
        fclose(w->csv);
    if (w->idx)
        fclose(w->idx);
    if (w->csv_tmp)
        unlink(w->csv_tmp);
    if (w->idx_tmp)
        unlink(w->idx_tmp);
    free(w->csv_path);
    free(w->idx_path);
    free(w->csv_tmp);
    free(w->idx_tmp);
    memset(w, 0, sizeof *w);
}
