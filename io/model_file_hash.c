/* The model file's checksums (see docs/formats-model.md, "Integrity"): XXH3-64 of each
 * tensor's bytes and of the root, /optimizer and /train_state attributes, written and
 * checked as 16 hex digits. */
#include "model_file_internal.h"
#include "fsutil.h"
#include "h5util.h"
#include "rb_log.h"

#include <hdf5.h>
#include <xxhash.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex64(char out[17], uint64_t h) { snprintf(out, 17, "%016llx", (unsigned long long)h); }

uint64_t mf_text_hash(const char *s) { return XXH3_64bits(s ? s : "", s ? strlen(s) : 0); }

/* each name followed by a NUL byte, so ["ab","c"] and ["a","bc"] differ */
uint64_t mf_names_hash(const char *const *v, int n)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return 0;
    XXH3_64bits_reset(st);
    for (int i = 0; i < n; i++)
        XXH3_64bits_update(st, v[i] ? v[i] : "", (v[i] ? strlen(v[i]) : 0) + 1);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

/* /optimizer's attributes as one text: "kind\nstep\nconfig" */
uint64_t mf_optimizer_hash(const char *kind, int64_t step, const char *config)
{
    size_t len = strlen(kind) + strlen(config ? config : "") + 32;
    char *t = malloc(len);
    if (!t)
        return 0;
    snprintf(t, len, "%s\n%lld\n%s", kind, (long long)step, config ? config : "");
    uint64_t h = mf_text_hash(t);
    free(t);
    return h;
}

/* /train_state's attributes as one text (best_metric in hexadecimal float notation) */
uint64_t mf_train_state_hash(const model_file_train_state *t)
{
    char s[256];
    snprintf(s, sizeof s, "%lld\n%lld\n%lld\n%llu\n%a\n%s", (long long)t->epoch, (long long)t->step,
             (long long)t->data_position, (unsigned long long)t->rng_seed, t->best_metric,
             t->best_metric_name);
    return mf_text_hash(s);
}

int mf_attr_write_hash(hid_t obj, const char *name, uint64_t h)
{
    char hex[17];
    hex64(hex, h);
    return h5_attr_write_str(obj, name, hex);
}

/* Compare obj@name (16 hex digits) with h. 0 when equal; otherwise -1 with an error that
 * names the file and `what`. */
int mf_attr_check_hash(hid_t obj, const char *name, uint64_t h, const char *path, const char *what,
                           rb_error *err)
{
    const char *hint = "the file is damaged (a changed byte); use another copy, or rerun train to rewrite it";
    char stored[64] = "";
    if (H5Aexists(obj, name) <= 0 || h5_attr_read_str(obj, name, stored, sizeof stored) < 0)
        return rb_fail(err, hint, "%s: no readable checksum for %s (attribute %s)", path, what, name);
    char want[17];
    hex64(want, h);
    if (strcmp(stored, want) != 0)
        return rb_fail(err, hint, "%s: checksum mismatch in %s: stored %s, computed %s", path, what, stored, want);
    return 0;
}
