/* Calibration metrics (src/metrics_calib.c): a reliability diagram, ECE and Brier score
 * worked by hand, then 1000 fixed samples (scores on and around every bin edge, 0 and 1,
 * unlabelled records) compared with scikit-learn's calibration_curve and brier_score_loss
 * run by $RADBATCH_PYTHON (tests/python-requirements.txt). Numbers within 1e-12
 * relative. Temperature scaling: the fitted T of cases whose optimum is known in closed
 * form, the calibrated probabilities, and that the order of the scores is kept. */
#include "metrics.h"
#include "rb_rng.h"
#include "test_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int close_rel(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return a == b || fabs(a - b) <= 1e-12 * fmax(fabs(b), 1e-300) || fabs(a - b) <= 1e-15;
}

/* Eight labelled samples and one unlabelled (class 1 is the positive class):
 *   p     0    0.125 0.125 0.5  0.5  0.75  0.875 1     (0.3, label -1: skipped)
 *   y     0    0     1     1    0    0     1     1
 *   bin   0    1     1     4    4    7     8     9     (0.5 is the upper edge of bin 4)
 * bins: 0 {n 1, mean 0, obs 0}, 1 {2, 0.125, 0.5}, 4 {2, 0.5, 0.5}, 7 {1, 0.75, 0},
 *       8 {1, 0.875, 1}, 9 {1, 1, 1}, the others empty
 * ECE = 2/8 * 0.375 + 1/8 * 0.75 + 1/8 * 0.125 = 0.203125
 * Brier = (0 + 0.015625 + 0.765625 + 0.25 + 0.25 + 0.5625 + 0.015625 + 0) / 8 = 0.232421875 */
static void hand(void)
{
    rb_error err = {0};
    const float p1[9] = {0.f, 0.125f, 0.125f, 0.5f, 0.5f, 0.75f, 0.875f, 1.f, 0.3f};
    const int32_t y[9] = {0, 0, 1, 1, 0, 0, 1, 1, -1};
    float probs[18];
    for (int i = 0; i < 9; i++) {
        probs[i * 2] = 1.f - p1[i];
        probs[i * 2 + 1] = p1[i];
    }
    metrics_calibration c;
    CHECK(metrics_calibration_compute(&c, y, probs + 1, 2, 9, 2, 1, &err) == 0, "%s", err.msg);
    CHECK(c.n == 8 && c.n_ignored == 1, "n %lld ignored %lld", (long long)c.n, (long long)c.n_ignored);
    const int64_t cnt[10] = {1, 2, 0, 0, 2, 0, 0, 1, 1, 1};
    const int64_t pos[10] = {0, 1, 0, 0, 1, 0, 0, 0, 1, 1};
    const double mean[10] = {0, 0.125, NAN, NAN, 0.5, NAN, NAN, 0.75, 0.875, 1};
    const double obs[10] = {0, 0.5, NAN, NAN, 0.5, NAN, NAN, 0, 1, 1};
    for (int b = 0; b < 10; b++) {
        CHECK(c.count[b] == cnt[b] && c.positives[b] == pos[b], "bin %d: %lld %lld", b, (long long)c.count[b],
              (long long)c.positives[b]);
        CHECK(close_rel(c.mean_predicted[b], mean[b]) && close_rel(c.observed[b], obs[b]), "bin %d: %g %g", b,
              c.mean_predicted[b], c.observed[b]);
    }
    CHECK(c.ece == 0.203125, "ece %.17g", c.ece);
    CHECK(c.brier == 0.232421875, "brier %.17g", c.brier);

    /* the other class of the same data: p0 = 1 - p1, y0 = 1 - y; Brier is symmetric */
    CHECK(metrics_calibration_compute(&c, y, probs, 2, 9, 2, 0, &err) == 0, "%s", err.msg);
    CHECK(c.brier == 0.232421875, "brier class 0 %.17g", c.brier);

    /* edges: 0.1f is just above 0.1 (bin 1), 0.5 exactly is bin 4, just above is bin 5 */
    CHECK(metrics_calibration_bin(0.0) == 0 && metrics_calibration_bin(0.1) == 0, "bins of 0 and 0.1");
    CHECK(metrics_calibration_bin((double)0.1f) == 1, "bin of 0.1f");
    CHECK(metrics_calibration_bin(0.5) == 4 && metrics_calibration_bin((double)nextafterf(0.5f, 1.f)) == 5,
          "bins around 0.5");
    CHECK(metrics_calibration_bin(1.0) == 9, "bin of 1");

    /* a perfectly confident, always right model: ECE 0, Brier 0 */
    const float sure[4] = {0.f, 1.f, 0.f, 1.f};
    const int32_t ys[4] = {0, 1, 0, 1};
    CHECK(metrics_calibration_compute(&c, ys, sure, 1, 4, 2, 1, &err) == 0 && c.ece == 0 && c.brier == 0,
          "perfect: ece %g brier %g", c.ece, c.brier);
    /* no labelled sample: NaN, not an error */
    const int32_t none[2] = {-1, -1};
    CHECK(metrics_calibration_compute(&c, none, sure, 1, 2, 2, 1, &err) == 0 && isnan(c.ece) && isnan(c.brier),
          "unlabelled only");
    /* a non-finite score is an error naming the sample */
    const float bad[2] = {0.2f, NAN};
    CHECK(metrics_calibration_compute(&c, ys, bad, 1, 2, 2, 1, &err) < 0 && strstr(err.msg, "sample 1"),
          "NaN score: %s", err.msg);
    CHECK(metrics_calibration_compute(&c, ys, sure, 1, 2, 2, 2, &err) < 0, "positive class out of range");
}

static const char *PY =
    "import sys, numpy as np\n"
    "from sklearn.calibration import calibration_curve\n"
    "from sklearn.metrics import brier_score_loss\n"
    "y, p = [], []\n"
    "for line in open(sys.argv[1]):\n"
    "    a, b = line.split()\n"
    "    if int(a) >= 0:\n"
    "        y.append(int(a)); p.append(float(b))\n"
    "y = np.array(y) == 1; p = np.array(p, dtype=np.float32).astype(np.float64)\n"
    "prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy='uniform')\n"
    "ids = np.searchsorted(np.linspace(0, 1, 11)[1:-1], p)\n"
    "cnt = np.bincount(ids, minlength=10)\n"
    "w = cnt[cnt > 0] / len(p)\n"
    "print(repr(float(brier_score_loss(y, p))))\n"
    "print(repr(float(np.sum(w * np.abs(prob_true - prob_pred)))))\n"
    "print(' '.join(str(int(v)) for v in cnt))\n"
    "print(' '.join(repr(float(v)) for v in prob_pred))\n"
    "print(' '.join(repr(float(v)) for v in prob_true))\n";

/* 1000 fixed samples against scikit-learn. */
static void against_sklearn(void)
{
    const char *py = getenv("RADBATCH_PYTHON");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import sklearn' 2>/dev/null", py ? py : "");
    if (!py || !*py || system(cmd) != 0) {
        test_skip("scikit-learn not available to $RADBATCH_PYTHON (%s): run tests/setup.sh", py ? py : "unset");
        return;
    }
    enum { N = 1000 };
    static float score[N];
    static int32_t y[N];
    for (int i = 0; i < N; i++) {
        double u = rb_rng_uniform(42, 0, (uint64_t)i, 1);
        float p;
        if (i % 10 == 0) /* on and around the edges */
            p = (float)((i / 10) % 11) / 10.f;
        else if (i % 10 == 1)
            p = nextafterf((float)((i / 10) % 11) / 10.f, 2.f);
        else
            p = (float)u;
        if (p > 1.f)
            p = 1.f;
        score[i] = p;
        /* over-confident: the outcome follows 0.25 + p / 2 */
        y[i] = i % 37 == 5 ? -1 : rb_rng_uniform(42, 0, (uint64_t)i, 2) < 0.25 + p / 2;
    }
    char *dir = (char *)test_tmpdir("calibration");
    char data[1024], script[1024], out[1024];
    snprintf(data, sizeof data, "%s/samples.txt", dir);
    snprintf(script, sizeof script, "%s/ref.py", dir);
    snprintf(out, sizeof out, "%s/ref.txt", dir);
    FILE *f = fopen(data, "w"), *g = fopen(script, "w");
    CHECK(f && g, "cannot write to %s", dir);
    if (!f || !g)
        return;
    for (int i = 0; i < N; i++)
        fprintf(f, "%d %.9g\n", (int)y[i], (double)score[i]);
    fputs(PY, g);
    fclose(f);
    fclose(g);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' > '%s'", py, script, data, out);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    metrics_calibration c;
    rb_error err = {0};
    CHECK(metrics_calibration_compute(&c, y, score, 1, N, 2, 1, &err) == 0, "%s", err.msg);
    FILE *r = fopen(out, "r");
    CHECK(r != NULL, "no output from scikit-learn");
    if (!r)
        return;
    double brier = NAN, ece = NAN;
    CHECK(fscanf(r, "%lf %lf", &brier, &ece) == 2, "brier and ece");
    CHECK(close_rel(c.brier, brier), "brier %.17g, sklearn %.17g", c.brier, brier);
    CHECK(close_rel(c.ece, ece), "ece %.17g, sklearn %.17g", c.ece, ece);
    int nonempty = 0;
    for (int b = 0; b < 10; b++) {
        long long cnt = -1;
        CHECK(fscanf(r, "%lld", &cnt) == 1 && cnt == c.count[b], "bin %d count %lld, sklearn %lld", b,
              (long long)c.count[b], cnt);
        nonempty += c.count[b] > 0;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 10; b++) {
            if (!c.count[b])
                continue;
            double v = NAN, mine = pass ? c.observed[b] : c.mean_predicted[b];
            CHECK(fscanf(r, "%lf", &v) == 1 && close_rel(mine, v), "bin %d %s %.17g, sklearn %.17g", b,
                  pass ? "observed" : "mean predicted", mine, v);
        }
    CHECK(nonempty == 10, "every bin filled (%d)", nonempty);
    CHECK(c.ece > 0.1, "the fixed data are over-confident: ece %g", c.ece);
    fclose(r);
}

/* Temperature scaling worked by hand: three samples share the positive logit s = 10, two
 * of them positive, so the NLL is minimal where sigmoid(s / T) = 2/3, T = s / ln 2. The
 * same with a softmax of logits (0, s), and with three classes: logits (s, 0, 0) and labels
 * 0, 0, 1, 2 need softmax(./T)[0] = 1/2, again T = s / ln 2. */
static void temperature(void)
{
    rb_error err = {0};
    const double want = 10.0 / log(2.0);
    double T, b, a;
    const float z1[4] = {10.f, 10.f, 10.f, -3.f};
    const int32_t y1[4] = {1, 1, 0, -1}; /* the unlabelled sample is skipped */
    CHECK(metrics_temperature_fit(&T, &b, &a, z1, 1, y1, 4, 2, 1, &err) == 0, "%s", err.msg);
    CHECK(fabs(T - want) < 1e-6 * want, "sigmoid: T %.10g, want %.10g", T, want);
    /* NLL at the optimum: -(2 ln 2/3 + ln 1/3) / 3 */
    double nll = -(2 * log(2.0 / 3) + log(1.0 / 3)) / 3;
    CHECK(fabs(a - nll) < 1e-9 && b > a, "sigmoid: NLL %.10g -> %.10g, want %.10g", b, a, nll);
    const float z2[8] = {0.f, 10.f, 0.f, 10.f, 0.f, 10.f, 0.f, 0.f};
    CHECK(metrics_temperature_fit(&T, NULL, NULL, z2, 2, y1, 4, 2, 1, &err) == 0, "%s", err.msg);
    CHECK(fabs(T - want) < 1e-6 * want, "softmax 2: T %.10g", T);
    const float z3[12] = {10.f, 0.f, 0.f, 10.f, 0.f, 0.f, 10.f, 0.f, 0.f, 10.f, 0.f, 0.f};
    const int32_t y3[4] = {0, 0, 1, 2};
    CHECK(metrics_temperature_fit(&T, NULL, NULL, z3, 3, y3, 4, 3, 0, &err) == 0, "%s", err.msg);
    CHECK(fabs(T - want) < 1e-6 * want, "softmax 3: T %.10g", T);
    /* probabilities at T: sigmoid(10 / T) = 2/3 for the positive class, 1/3 the other */
    float pr[8];
    metrics_temperature_probs(pr, z1, 1, 4, 2, 1, want);
    CHECK(fabsf(pr[1] - 2.f / 3) < 1e-6f && fabsf(pr[0] - 1.f / 3) < 1e-6f, "sigmoid probs %g %g", pr[0], pr[1]);
    metrics_temperature_probs(pr, z2, 2, 4, 2, 1, want);
    CHECK(fabsf(pr[1] - 2.f / 3) < 1e-6f && fabsf(pr[0] - 1.f / 3) < 1e-6f, "softmax probs %g %g", pr[0], pr[1]);
    /* T = 1 gives the model's own softmax; a large logit does not overflow */
    const float big[2] = {0.f, 200.f};
    metrics_temperature_probs(pr, big, 2, 1, 2, 1, 1.0);
    CHECK(pr[1] == 1.f && pr[0] >= 0.f && pr[0] < 1e-30f, "softmax of (0, 200): %g %g", pr[0], pr[1]);
    metrics_temperature_probs(pr, big + 1, 1, 1, 2, 1, 100.0);
    CHECK(fabsf(pr[1] - (float)(1 / (1 + exp(-2.0)))) < 1e-7f, "sigmoid(200 / 100) %g", pr[1]);
    /* the order of the scores never changes: same ranking, same AUC */
    float zs[6] = {-5.f, -0.1f, 0.f, 0.2f, 3.f, 40.f}, p1[12], p2[12];
    metrics_temperature_probs(p1, zs, 1, 6, 2, 1, 1.0);
    metrics_temperature_probs(p2, zs, 1, 6, 2, 1, 7.5);
    for (int i = 0; i + 1 < 6; i++)
        CHECK(p2[i * 2 + 1] < p2[(i + 1) * 2 + 1] && p1[i * 2 + 1] <= p1[(i + 1) * 2 + 1], "order at %d", i);
    /* nothing to fit on */
    const int32_t none[4] = {-1, -1, -1, -1};
    CHECK(metrics_temperature_fit(&T, NULL, NULL, z1, 1, none, 4, 2, 1, &err) < 0 && strstr(err.msg, "no labelled"),
          "no label: %s", err.msg);
    const float inf[4] = {10.f, INFINITY, 0.f, 0.f};
    CHECK(metrics_temperature_fit(&T, NULL, NULL, inf, 1, y1, 4, 2, 1, &err) < 0, "non-finite logit");
    CHECK(metrics_temperature_fit(&T, NULL, NULL, z3, 1, y3, 4, 3, 0, &err) < 0, "one logit for three classes");
}

int main(void)
{
    hand();
    temperature();
    against_sklearn();
    return TEST_DONE();
}
