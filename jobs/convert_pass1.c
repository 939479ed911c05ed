/* radbatch convert: pass 1 (docs/convert.md, "What it does", step 2). Every rank reads a
 * contiguous slice of the listed files, hashes each (XXH3-128) and checks its header; the
 * results are then shared with every rank. */
#include "convert_ctx.h"
#include "fsutil.h"
#include "rb_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Pass-1 result of one entry, exchanged between ranks. */
typedef struct probe_result {
    uint8_t hash[16];
    int32_t h, w;
    int8_t ok;
    int8_t pad[7];
} probe_result;

void convert_add_error(convert_ctx *x, const char *path, const char *reason)
{
    rb_buf_put_str(&x->errors, path);
    rb_buf_put_str(&x->errors, reason);
    if (x->cfg.nopts && !x->keys.quiet)
        rb_warn("%s: %s", path, reason);
}

void convert_hex128(const uint8_t *h, char *out)
{
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
}

int convert_pass1(convert_ctx *x, rb_error *err)
{
    int64_t n = x->in.n, P = x->world.size, r = x->world.rank;
    int64_t lo = n * r / P, hi = n * (r + 1) / P;
    probe_result *mine = calloc((size_t)(hi - lo + 1), sizeof *mine);
    if (!mine)
        return rb_fail(err, NULL, "out of memory");
    rb_progress prog;
    rb_progress_start(&prog, "checking files (rank 0's share)", hi - lo);
    for (int64_t i = lo; i < hi; i++) {
        plan_entry *e = &x->in.e[i];
        probe_result *pr = &mine[i - lo];
        uint8_t *buf;
        size_t len;
        rb_error fe;
        if (fs_read_file(e->abs, x->lim.max_file_bytes, &buf, &len, &fe) < 0) {
            convert_add_error(x, e->rel, rb_error_reason(&fe, e->abs));
            continue;
        }
        XXH128_hash_t h = XXH3_128bits(buf, len);
        XXH128_canonical_t canon;
        XXH128_canonicalFromHash(&canon, h);
        memcpy(pr->hash, canon.digest, 16);
        image_info info;
        if (image_probe(buf, len, &x->lim, &info, e->rel, &fe) < 0)
            convert_add_error(x, e->rel, rb_error_reason(&fe, e->rel));
        else {
            pr->ok = 1;
            pr->h = info.height;
            pr->w = info.width;
        }
        free(buf);
        if (((i - lo) & 255) == 0)
            rb_progress_update(&prog, i - lo);
    }
    void *all = NULL;
    size_t alen = 0;
    int rc = rb_mpi_allgather_bytes(mine, (size_t)(hi - lo) * sizeof *mine, &all, &alen, err);
    free(mine);
    if (rc < 0)
        return -1;
    if (alen != (size_t)n * sizeof(probe_result)) {
        free(all);
        return rb_fail(err, NULL, "internal error: probe results have the wrong size");
    }
    const probe_result *pr = all;
    for (int64_t i = 0; i < n; i++) {
        memcpy(x->in.e[i].hash, pr[i].hash, 16);
        x->in.e[i].ok = pr[i].ok;
        x->in.e[i].src_h = pr[i].h;
        x->in.e[i].src_w = pr[i].w;
    }
    free(all);
    return 0;
}
