/* radbatch evaluate's state and the steps of evaluate_main (jobs/job_evaluate.c), one file
 * each, in the order of docs/evaluate.md "What evaluate does":
 *   2. the data: a shards folder or image folders          evaluate_data.c
 *   3-5. this rank's forward passes, gathered to rank 0    evaluate_pass.c
 *   5-6. the screening threshold, the decisions            evaluate_threshold.c
 *   stress = true: the shifted passes                      evaluate_stress.c
 *   7. metrics, files, printed report                      evaluate_files.c
 *   7. report.html                                         evaluate_html.c */
#ifndef EVALUATE_H
#define EVALUATE_H

#include "convert_inputs.h"
#include "job_config.h"
#include "evaluate_keys.h"
#include "metrics.h"
#include "rb_buf.h"
#include "rb_mpi.h"
#include "shard_dataset.h"
#include "stress.h"
#include "threshold.h"
#include "trained_model.h"

#include <stdint.h>

#define MAX_LISTED_ERRORS 200

/* This rank's records: the contiguous run [lo, hi) of its batches. */
typedef struct eval_mine {
    int64_t lo, hi;
    float *probs;   /* [(hi-lo) * k] */
    int32_t *labels;
    int8_t *ok;
    char **reason;  /* [(hi-lo)] why an image could not be read, or NULL */
} eval_mine;

/* Rank 0: every record in record order, and every row of errors.csv (listing problems,
 * then unreadable images). */
typedef struct eval_all {
    int32_t *labels;
    int8_t *ok;
    float *probs;   /* [n * k], zero for failed records */
    char **paths;
    char **reasons; /* NULL for readable records */
    int64_t nerr;
    const char **err_path, **err_reason;
} eval_all;

/* The screening threshold: fixed by rank 0, broadcast. */
typedef struct eval_threshold {
    double value;
    threshold_spec spec;  /* the key `threshold` */
    char rule[64];        /* its text: "model", "0.3", "sensitivity:0.95" */
    char source[1400];    /* where the value came from, for every report */
    int same_split;       /* chosen on the data this run reports (warned about) */
    char warning[1600];   /* the warning's text when same_split */
} eval_threshold;

/* One row of the stress test (rank 0): a shift at a severity (0: none) and the screening
 * metrics there at the run's threshold. */
typedef struct eval_stress_row {
    int shift, severity;
    double parameter;
    double auc, sensitivity, specificity, accuracy;
    int64_t n;
} eval_stress_row;

#define EVAL_STRESS_ROWS (1 + RB_SHIFT_COUNT * RB_SHIFT_MAX_SEVERITY)

typedef struct eval_ctx {
    job_config cfg;
    evaluate_keys keys; /* the keys, typed (evaluate_keys.h); filled before any work */
    rb_world w;
    char *models;   /* comma-separated model files */
    char *data;     /* comma-separated data paths */
    const char *out;
    char *out_owned; /* out when derived from run_dir */
    int model_from_run; /* model = run_dir/model.h5: the training run must be finished */
    trained_model tm;
    int k;
    int positive;   /* screening class, -1 none */
    /* data: one of the two */
    int is_shards;
    shard_dataset ds;
    input_set in;
    int img_splits; /* image folders laid out as train/val/test */
    int64_t n;      /* records */
    int threads;    /* model threads of this rank */
    eval_mine mine;
    eval_all all;
    eval_threshold thr;
    int64_t counts[4]; /* evaluated, failed, unlabelled (evaluated without label), records */
    int64_t *cm;       /* [k * k], summed over the ranks */
    /* stress test (evaluate_stress.c): the pass's shift, and rank 0's rows */
    int stress_pass, shift, shift_severity;
    void *shift_tmp;
    eval_stress_row stress[EVAL_STRESS_ROWS];
    int nstress;
    double seconds;
} eval_ctx;

/* evaluate_data.c: open the shards folder, or list the image folders on rank 0 and
 * broadcast the list; sets n. Every rank calls it. */
int evaluate_open_data(eval_ctx *x, rb_error *err);

/* evaluate_pass.c: evaluate this rank's batches into x->mine and pack each record for
 * rank 0; rank 0 unpacks every rank's records, in record order, into x->all. */
int evaluate_my_records(eval_ctx *x, rb_buf *pack, rb_error *err);
int evaluate_unpack_all(eval_ctx *x, const uint8_t *data, size_t len, rb_error *err);
/* The probabilities of this rank's records [lo, hi) into out[(hi-lo) * k] (zero rows left
 * for unreadable ones), with the stress shift x->shift at x->shift_severity when
 * x->stress_pass; what: the progress line's label. */
int evaluate_forward(eval_ctx *x, float *out, const char *what, rb_error *err);

/* evaluate_stress.c: --stress true: every rank re-scores its records under each shift and
 * severity; rank 0 fills x->stress. After the threshold is known on every rank. */
int evaluate_stress(eval_ctx *x, rb_error *err);

/* evaluate_threshold.c */
/* Rank 0: the screening threshold on all records, its source, and whether it was chosen on
 * the split this run reports. */
int evaluate_choose_threshold(eval_ctx *x, rb_error *err);
/* Rank 0, after the metrics: the copy of the model whose card records this operating point
 * (set_threshold). */
int evaluate_store_threshold(const eval_ctx *x, const metrics_eval *ev, rb_error *err);
/* Decisions of n probability rows: the threshold for two classes, else the argmax. */
void evaluate_decide(const eval_ctx *x, const float *probs, int64_t n, int32_t *y_pred);

/* evaluate_files.c: rank 0 computes the metrics, writes every output file (summary.json
 * last) and prints the report. */
int evaluate_report(eval_ctx *x, rb_error *err);
/* 4 decimals, "n/a" for NaN, "inf"/"-inf"; a 95% interval "lo - hi" or "n/a". */
void evaluate_fmt4(char *b, size_t cap, double v);
void evaluate_fmt_ci(char *b, size_t cap, const metrics_ci *c);

/* evaluate_gallery.c: report.html's galleries of false positives and false negatives at the
 * operating point (rank 0; reads the images again). */
struct html_doc;
int evaluate_html_galleries(struct html_doc *d, eval_ctx *x, rb_error *err);

/* evaluate_html.c */
int evaluate_write_report_html(const eval_ctx *x, const metrics_eval *ev, const char *report_text, rb_error *err);

#endif
