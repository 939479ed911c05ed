/* Classification metrics with scikit-learn's exact semantics: confusion matrix, per-class
 * precision/recall/F1, classification_report text, binary screening metrics, ROC curve and
 * AUC, one-vs-rest AUC, threshold choice and seeded bootstrap confidence intervals.
 *
 * Pure computation: no MPI, no files. The text formatters (src/report_text.c) write to a
 * FILE* or a buffer given by the caller. Definitions, tie handling and the bootstrap are
 * written up in docs/metrics.md.
 *
 * Conventions shared by every function here:
 *  - labels are int32 class indices; a sample whose true label lies outside [0, k) (-1 =
 *    unlabelled) is skipped and counted in an `n_ignored` field, never an error;
 *  - probabilities are float32, row-major (n, k), as the model writes them; the score of
 *    class c for sample i is probs[i * k + c] (functions that take one score column take
 *    `score` and `stride`: score[i * stride]); a non-finite score is an error
 *    for every function that returns a status;
 *  - a sample is called positive at threshold t when score >= t (roc_curve's convention),
 *    so a threshold taken from the ROC curve reproduces that point exactly;
 *  - a ratio whose denominator is 0 is 0.0 (sklearn's zero_division="warn"), except ROC
 *    quantities, which are NaN as in sklearn (AUC with one class only, fpr without
 *    negatives, tpr without positives);
 *  - sums of several doubles use numpy's pairwise summation so that averages are bitwise
 *    those of sklearn.
 * Every result depends on the samples' order only through the bootstrap; drivers pass
 * samples in global sample order so the result is the same on any number of ranks. */
#ifndef METRICS_H
#define METRICS_H

#include "rb_error.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------------ confusion matrix */

/* cm: (k, k) row = true label, column = predicted label (sklearn's layout). ADDS the n
 * pairs (+=), so per-rank matrices merge by summation (MPI_SUM over MPI_INT64_T).
 * Pairs whose true or predicted label is outside [0, k) are skipped; returns their count. */
int64_t metrics_confusion_add(int64_t *cm, int32_t k, const int32_t *y_true,
                              const int32_t *y_pred, int64_t n);

/* y_pred: (n)  probs: (n, k). y_pred[i] = argmax_j probs[i, j], the first on ties
 * (numpy.argmax; a NaN counts as the maximum, as in numpy). */
void metrics_argmax(int32_t *y_pred, const float *probs, int64_t n, int32_t k);

/* Thresholded decision for a positive class: y_pred[i] = positive when
 * probs[i, positive] >= threshold, else the most probable other class (first on ties). */
void metrics_predict_threshold(int32_t *y_pred, const float *probs, int64_t n, int32_t k,
                               int32_t positive, double threshold);

/* --------------------------------------------------------- per-class and averages */

typedef struct metrics_prf {
    double precision; /* tp / predicted */
    double recall;    /* tp / support */
    double f1;        /* 2 tp / (support + predicted), sklearn's form */
    int64_t support;  /* true samples of the class; for the averages: the total */
    int64_t predicted; /* samples predicted as the class; for the averages: the total */
} metrics_prf;

typedef struct metrics_classification {
    int32_t k;
    int64_t total;          /* sum of the matrix: the report's support total */
    int64_t correct;        /* its trace */
    double accuracy;        /* correct / total (0 when total is 0) */
    metrics_prf *per_class; /* [k], allocated */
    metrics_prf macro;      /* unweighted mean over the k classes */
    metrics_prf weighted;   /* mean weighted by support (unweighted when total is 0) */
} metrics_classification;

/* From a (k, k) confusion matrix. Every class 0..k-1 keeps its row, as sklearn with
 * labels=range(k): zero support gives recall 0, never predicted gives precision 0, both
 * give f1 0, and those zeros enter the averages. */
int metrics_classification_compute(metrics_classification *c, const int64_t *cm, int32_t k,
                                   rb_error *err);
void metrics_classification_free(metrics_classification *c);

/* ------------------------------------------------------------------ text (report_text.c)
 * Each formatter writes to f when f is not NULL, else into buf (cap bytes; truncated and
 * always NUL-terminated when cap > 0). Returns the full length of the text, NUL excluded,
 * like snprintf, or -1 on a write error or bad argument. */

/* sklearn.metrics.classification_report(y_true, y_pred, labels=range(k),
 * target_names=names, digits=digits), byte for byte: names[k] are UTF-8 (NULL: "0", "1",
 * ...), digits >= 0 (sklearn's default is 2). The text ends with a newline (print() in
 * Python adds a second one). */
int64_t metrics_report_text(FILE *f, char *buf, size_t cap, const metrics_classification *c,
                            const char *const *names, int digits);

/* The confusion matrix as an aligned table: a header of predicted names, one row per true
 * class. */
int64_t metrics_confusion_text(FILE *f, char *buf, size_t cap, const int64_t *cm, int32_t k,
                               const char *const *names);

/* --------------------------------------------------------------------- ROC and AUC */

typedef struct metrics_roc {
    int64_t n_points;   /* points on the curve, the (0, 0) start included */
    double *fpr;        /* [n_points] false positive rate; NaN when there is no negative */
    double *tpr;        /* [n_points] true positive rate; NaN when there is no positive */
    double *thresholds; /* [n_points] decreasing; thresholds[0] = +inf */
    int64_t n_pos, n_neg, n_ignored;
    double auc;         /* trapezoid over the curve; NaN unless both classes are present */
} metrics_roc;

/* sklearn.metrics.roc_curve(y_true == positive, score) with drop_intermediate=True, and
 * roc_auc_score. Samples with equal scores form one point (a tie between a positive and a
 * negative counts half in the AUC). y_true: (n), score: score[i * stride]. */
int metrics_roc_compute(metrics_roc *roc, const int32_t *y_true, const float *score,
                        int64_t stride, int64_t n, int32_t k, int32_t positive,
                        rb_error *err);
void metrics_roc_free(metrics_roc *roc);

/* The AUC alone (same value as metrics_roc_compute). */
int metrics_auc(double *auc, const int32_t *y_true, const float *score, int64_t stride,
                int64_t n, int32_t k, int32_t positive, rb_error *err);

/* One-vs-rest AUC of every class from probs (n, k): per_class[k] (NaN for a class with
 * no sample or with every sample), their mean (NaN if any is NaN) and their mean weighted
 * by support (classes with zero support weigh 0) = sklearn roc_auc_score(y_true, probs,
 * multi_class="ovr", labels=range(k), average="macro" / "weighted"). per_class, macro and
 * weighted may each be NULL. */
int metrics_auc_ovr(double *per_class, double *macro, double *weighted, const int32_t *y_true,
                    const float *probs, int64_t n, int32_t k, rb_error *err);

/* ---------------------------------------------------------------- binary screening */

typedef struct metrics_screening {
    int32_t positive;
    double threshold;          /* positive when score >= threshold */
    int64_t tp, fp, tn, fn;
    int64_t n_ignored;
    double sensitivity;        /* TPR, recall: tp / (tp + fn) */
    double specificity;        /* TNR: tn / (tn + fp) */
    double ppv;                /* precision: tp / (tp + fp) */
    double npv;                /* tn / (tn + fn) */
    double f1;                 /* 2 tp / (2 tp + fp + fn) */
    double mcc;                /* Matthews correlation coefficient; 0 when undefined */
    double balanced_accuracy;  /* mean recall over the classes present in y_true */
    double accuracy;           /* (tp + tn) / n */
} metrics_screening;

/* Counts at score >= threshold, added (+=) to counts[4] = {tp, fp, tn, fn}: mergeable
 * across ranks like the confusion matrix. Returns the number of samples skipped. No check
 * of the scores here: a NaN score is called negative. */
int64_t metrics_binary_counts_add(int64_t counts[4], const int32_t *y_true, const float *score,
                                  int64_t stride, int64_t n, int32_t k, int32_t positive,
                                  double threshold);

/* All screening metrics from the four counts (sklearn's recall_score, precision_score,
 * f1_score, matthews_corrcoef, balanced_accuracy_score, accuracy_score). */
void metrics_screening_from_counts(metrics_screening *s, int64_t tp, int64_t fp, int64_t tn,
                                   int64_t fn);

/* The same for class `positive` against the rest at the decision a (k, k) confusion matrix
 * records (e.g. the argmax): tp = cm[positive][positive], fn the rest of its row, fp the
 * rest of its column, tn everything else. */
void metrics_screening_from_confusion(metrics_screening *s, const int64_t *cm, int32_t k,
                                      int32_t positive);

int metrics_screening_compute(metrics_screening *s, const int32_t *y_true, const float *score,
                              int64_t stride, int64_t n, int32_t k, int32_t positive,
                              double threshold, rb_error *err);

/* ---------------------------------------------------------------- threshold choice */

typedef enum metrics_threshold_rule {
    METRICS_THRESHOLD_FIXED = 0,   /* the given value */
    METRICS_THRESHOLD_YOUDEN,      /* max of sensitivity + specificity - 1 on the ROC curve */
    METRICS_THRESHOLD_SENSITIVITY, /* largest threshold whose sensitivity >= target */
    METRICS_THRESHOLD_SPECIFICITY  /* smallest threshold whose specificity >= target */
} metrics_threshold_rule;

/* "fixed", "youden", "sensitivity", "specificity" */
const char *metrics_threshold_rule_name(metrics_threshold_rule rule);
int metrics_threshold_rule_parse(const char *s, metrics_threshold_rule *rule);

/* Youden: the point of metrics_roc's curve with the largest J = tpr - fpr, J compared
 * exactly (tps * n_neg - fps * n_pos in integers), the largest threshold on ties (+inf
 * when no point beats chance) = thresholds[argmax(tpr - fpr)] up to rounding of equal J.
 * Sensitivity / specificity targets search every distinct score and +inf: the largest
 * threshold with tp / n_pos >= target, the smallest with tn / n_neg >= target (in double,
 * target in [0, 1]). The result may be +inf (predict no positive). Fails when a class the
 * rule needs is absent (Youden needs both, the sensitivity target a positive, the
 * specificity target a negative). FIXED: *threshold = target. */
int metrics_threshold_choose(double *threshold, metrics_threshold_rule rule, double target,
                             const int32_t *y_true, const float *score, int64_t stride,
                             int64_t n, int32_t k, int32_t positive, rb_error *err);

/* ------------------------------------------------------------------------ bootstrap */

/* Purpose key of the bootstrap's random stream: resample b draws, for j = 0..m-1, the
 * sample rb_rng_below(seed, b, j, METRICS_RNG_BOOTSTRAP, m) among the m labelled samples
 * (in their order of appearance). */
#define METRICS_RNG_BOOTSTRAP 0xB0075EEDULL

typedef struct metrics_ci {
    double estimate;   /* the value on the full data, as metrics_screening / metrics_roc
                        * give it (0 for an undefined ratio, NaN for an undefined AUC) */
    double lo, hi;     /* percentile interval; NaN when no resample defines the metric */
    int64_t n_defined; /* resamples where the metric is defined (sensitivity needs a
                        * positive, specificity a negative, AUC both) */
} metrics_ci;

typedef struct metrics_bootstrap {
    int64_t resamples;
    uint64_t seed;
    double level; /* 0.95: quantiles (1 - level) / 2 and 1 - (1 - level) / 2 */
    metrics_ci accuracy, sensitivity, specificity, auc;
} metrics_bootstrap;

/* Percentile bootstrap at the given threshold; quantiles as numpy.quantile (linear). */
int metrics_bootstrap_compute(metrics_bootstrap *b, const int32_t *y_true, const float *score,
                              int64_t stride, int64_t n, int32_t k, int32_t positive,
                              double threshold, int64_t resamples, uint64_t seed, double level,
                              rb_error *err);

/* -------------------------------------------------------------- calibration (metrics_calib.c) */

#define METRICS_CALIB_BINS 10

/* Reliability diagram, expected calibration error and Brier score of one class's
 * probability (docs/metrics.md "Calibration"). Bin b (0..9) holds the scores p with
 * b/10 < p <= (b+1)/10, bin 0 also p = 0 (scikit-learn's calibration_curve with
 * strategy="uniform": searchsorted on the inner edges linspace(0, 1, 11)[1:-1]).
 *   ece   = sum over the bins of (count_b / n) * |observed_b - mean_predicted_b|
 *   brier = mean over the samples of (p - y)^2, y = 1 for the class, else 0
 * (sklearn.metrics.brier_score_loss). Empty bins have NaN means and weigh 0; with no
 * labelled sample ece and brier are NaN. */
typedef struct metrics_calibration {
    int32_t positive;
    int64_t n, n_ignored;                       /* labelled samples used, skipped */
    int64_t count[METRICS_CALIB_BINS];          /* samples in the bin */
    int64_t positives[METRICS_CALIB_BINS];      /* of which of the class */
    double mean_predicted[METRICS_CALIB_BINS];  /* mean score in the bin; NaN if empty */
    double observed[METRICS_CALIB_BINS];        /* positives / count; NaN if empty */
    double ece, brier;
} metrics_calibration;

/* The bin of a score in [0, 1] (scores outside are clamped to bins 0 and 9). */
int metrics_calibration_bin(double p);

int metrics_calibration_compute(metrics_calibration *c, const int32_t *y_true, const float *score,
                                int64_t stride, int64_t n, int32_t k, int32_t positive,
                                rb_error *err);

/* Temperature scaling (docs/train.md "Calibration"): probabilities softmax(z / T) of the
 * logits z (m = k logits per sample, softmax output) or sigmoid(z / T) of the positive
 * class's logit (m = 1, a sigmoid output; the other class gets 1 - p). logits: (n, m). */

/* Search range of T and the golden-section iterations on log T. */
#define METRICS_TEMPERATURE_MIN 0.01
#define METRICS_TEMPERATURE_MAX 100.0
#define METRICS_TEMPERATURE_ITERS 80

/* Mean negative log-likelihood of the labelled samples (labels outside [0, k) skipped) at
 * temperature T; NaN without a labelled sample. */
double metrics_temperature_nll(const float *logits, int m, const int32_t *y_true, int64_t n, int32_t k,
                               int32_t positive, double T);

/* The T in [METRICS_TEMPERATURE_MIN, METRICS_TEMPERATURE_MAX] minimising that NLL:
 * golden-section search on u = log T (the NLL is convex in 1/T, so unimodal in log T).
 * *nll_before (T = 1) and *nll_after may be NULL. Fails without a labelled sample or with a
 * non-finite logit. */
int metrics_temperature_fit(double *T, double *nll_before, double *nll_after, const float *logits, int m,
                            const int32_t *y_true, int64_t n, int32_t k, int32_t positive, rb_error *err);

/* probs (n, k) from logits (n, m) at temperature T, in double, rounded to float once. */
void metrics_temperature_probs(float *probs, const float *logits, int m, int64_t n, int32_t k, int32_t positive,
                               double T);

/* ----------------------------------------------------------- everything for a report */

typedef struct metrics_eval_config {
    int32_t positive;            /* screening class; -1: none (multi-class only) */
    metrics_threshold_rule rule; /* how the screening threshold is chosen */
    double threshold;            /* FIXED: the threshold; else ignored */
    double target;               /* SENSITIVITY / SPECIFICITY: the target */
    int64_t bootstrap;           /* resamples; 0: no confidence intervals */
    uint64_t seed;
    double level;
} metrics_eval_config;

/* positive -1, FIXED 0.5, target 0.95, 1000 resamples, seed 0, level 0.95 */
void metrics_eval_config_default(metrics_eval_config *cfg);

typedef struct metrics_eval {
    int32_t k;
    int64_t n;               /* samples given */
    int64_t n_ignored;       /* of which skipped (label outside [0, k)) */
    int64_t *confusion;      /* [k * k], allocated */
    metrics_classification cls;
    int has_probs;           /* probabilities given: the AUC fields are set */
    double *auc_ovr;         /* [k] one-vs-rest AUC per class, allocated (NULL w/o probs) */
    double auc_macro, auc_weighted;
    int has_screening;       /* cfg->positive >= 0 and probabilities given */
    metrics_screening screening;
    metrics_threshold_rule threshold_rule;
    metrics_roc roc;
    int has_bootstrap;
    metrics_bootstrap bootstrap;
    int has_calibration;     /* with has_screening: the positive class's calibration */
    metrics_calibration calibration;
} metrics_eval;

/* Everything at once, for the evaluate driver (which serializes the struct). y_pred may be
 * NULL: argmax of probs. probs may be NULL when y_pred is given: no AUC, no screening. */
int metrics_eval_compute(metrics_eval *ev, const metrics_eval_config *cfg,
                         const int32_t *y_true, const int32_t *y_pred, const float *probs,
                         int64_t n, int32_t k, rb_error *err);
void metrics_eval_free(metrics_eval *ev);

/* A summary for the log (report_text.c): samples, one-vs-rest AUCs, and when present
 * the screening threshold, counts and metrics with their confidence intervals. Same
 * output conventions as metrics_report_text. */
int64_t metrics_summary_text(FILE *f, char *buf, size_t cap, const metrics_eval *ev,
                             const char *const *names);

#endif
