/* radbatch evaluate --stress true (docs/evaluate.md "Stress test"): every rank re-scores its
 * records under each shift of src/stress.h at each severity, severity 0 (no shift) first;
 * rank 0 gathers the probabilities in record order and measures the AUC, and the
 * sensitivity, specificity and accuracy at the run's screening threshold. A shifted image
 * depends only on the image, the seed and its record index, so the rows are the same on any
 * number of ranks. */
#include "evaluate.h"
#include "job_run.h"
#include "rb_log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rank 0: the row of one pass from the gathered probabilities (record order). */
static int stress_row(eval_ctx *x, const float *probs, eval_stress_row *r, rb_error *err)
{
    int k = x->k;
    int64_t n = x->n, m = 0;
    int32_t *yt = malloc((size_t)(n ? n : 1) * sizeof *yt);
    float *sc = malloc((size_t)(n ? n : 1) * sizeof *sc);
    if (!yt || !sc) {
        free(yt);
        free(sc);
        return rb_fail(err, NULL, "out of memory for %lld records", (long long)n);
    }
    for (int64_t i = 0; i < n; i++)
        if (x->all.ok[i]) {
            yt[m] = x->all.labels[i];
            sc[m++] = probs[i * k + x->positive];
        }
    metrics_screening s;
    int rc = metrics_auc(&r->auc, yt, sc, 1, m, k, x->positive, err);
    if (rc == 0)
        rc = metrics_screening_compute(&s, yt, sc, 1, m, k, x->positive, x->thr.value, err);
    if (rc == 0) {
        r->sensitivity = s.sensitivity;
        r->specificity = s.specificity;
        r->accuracy = s.accuracy;
        r->n = s.tp + s.fp + s.tn + s.fn;
    }
    free(yt);
    free(sc);
    return rc;
}

int evaluate_stress(eval_ctx *x, rb_error *err)
{
    x->nstress = 0;
    if (!x->keys.stress)
        return 0;
    int k = x->k;
    int64_t mine = x->mine.hi - x->mine.lo;
    float *p = calloc((size_t)(mine > 0 ? mine : 1) * k, sizeof *p);
    x->shift_tmp = malloc(rb_shift_scratch_bytes(x->tm.height, x->tm.width, x->tm.channels));
    int ok = p && x->shift_tmp;
    if (!ok)
        rb_fail(err, NULL, "out of memory for the stress test");
    int agreed = rb_mpi_agree_ok(ok);
    x->stress_pass = 1;
    /* passes: severity 0 (no shift), then every shift at severities 1..n */
    for (int s = -1; agreed && s < RB_SHIFT_COUNT; s++) {
        int nsev = s < 0 ? 0 : rb_shift_severities((rb_shift)s);
        for (int sev = s < 0 ? 0 : 1; agreed && sev <= nsev; sev++) {
            x->shift = s < 0 ? 0 : s;
            x->shift_severity = sev;
            char what[96];
            snprintf(what, sizeof what, "stress: %s %d (rank 0's share)", s < 0 ? "none" : rb_shift_name((rb_shift)s),
                     sev);
            memset(p, 0, (size_t)(mine > 0 ? mine : 1) * k * sizeof *p);
            ok = evaluate_forward(x, p, what, err) == 0;
            if (!(agreed = rb_mpi_agree_ok(ok)))
                break;
            void *all = NULL;
            size_t alen = 0;
            ok = rb_mpi_gather_bytes(p, (size_t)mine * k * sizeof *p, &all, &alen, err) == 0;
            if (ok && x->w.rank == 0) {
                eval_stress_row *r = &x->stress[x->nstress++];
                memset(r, 0, sizeof *r);
                r->shift = s;
                r->severity = sev;
                r->parameter = s < 0 ? NAN : rb_shift_parameter((rb_shift)s, sev);
                if (alen != (size_t)x->n * k * sizeof(float))
                    ok = rb_fail(err, NULL, "internal: stress gather holds %zu bytes", alen) == 0;
                else
                    ok = stress_row(x, all, r, err) == 0;
            }
            free(all);
            agreed = rb_mpi_agree_ok(ok);
        }
    }
    x->stress_pass = 0;
    x->shift_severity = 0;
    free(p);
    free(x->shift_tmp);
    x->shift_tmp = NULL;
    if (!agreed)
        return job_failed_where(ok);
    return 0;
}
