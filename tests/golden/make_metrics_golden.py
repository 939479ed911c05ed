#!/usr/bin/env python3
"""Golden values for tests/unit/test_metrics.c, from scikit-learn itself.

Run by hand (CI only reads the committed output):
    pip install scikit-learn numpy
    python3 tests/golden/make_metrics_golden.py    # rewrites tests/golden/metrics/

Every case is a set of predictions (true labels, class probabilities as float32) and what
scikit-learn says about them. Labels outside [0, k) (-1 = unlabelled) are dropped before
scikit-learn sees them, which is what src/metrics.c does; labels=range(k) is always passed,
so a class with zero support and a class never predicted keep their rows.

Files:
    metrics/index.txt                 case names, one a line
    metrics/<case>.txt                inputs and outputs (format below)
    metrics/<case>.report<d>.txt      classification_report(..., digits=d), exact bytes

<case>.txt: '#' comments; otherwise a keyword and whitespace-separated values. Doubles are
printed with repr() (shortest round trip, exact through strtod); 'nan', 'inf'.
    k <k>   n <n>
    name <i> <text to the end of the line>      (absent: sklearn's default "0", "1", ...)
    digits <d...>                              report files written for these digits
    y_true <n ints>                            may hold -1 (ignored)
    probs <n*k float32 values, row-major>      printed with %.9g (exact for float32)
    y_pred <n ints>                            numpy.argmax(probs, axis=1)
    cm <k*k>                                   confusion_matrix(labels=range(k)), rows = true
    precision|recall|f1 <k doubles>   support <k ints>
    accuracy <v>   macro <p r f1>   weighted <p r f1>
    ovr_auc <k doubles>                        roc_auc_score(y == c, probs[:, c]), nan when
                                               undefined (one class only)
    auc_macro <v>   auc_weighted <v>           roc_auc_score(multi_class='ovr'), k >= 3 only
    positive <c>                               binary screening of class c against the rest
    roc_fpr|roc_tpr|roc_thr <doubles>          roc_curve(y == c, probs[:, c]) (drop_intermediate)
    roc_auc <v>
    threshold <t>                              screening at score >= t:
    counts <tp fp tn fn>
    screening <sens spec ppv npv f1 mcc balanced_accuracy accuracy>  (sklearn's scorers)
    youden <t>                                 thresholds[argmax(tpr - fpr)], J compared
                                               exactly in integers; nan without both classes
    target_sens <target> <t>                   largest t (distinct scores and +inf) with
                                               sensitivity >= target
    target_spec <target> <t>                   smallest such t with specificity >= target
    bootstrap <B> <seed> <level>               percentile CIs over B resamples drawn with
                                               rb_rng_below (re-implemented below)
    ci <metric> <lo> <hi> <n_defined>          metric: accuracy sensitivity specificity auc
"""
import os
import sys
import warnings

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, classification_report,
                             confusion_matrix, f1_score, matthews_corrcoef,
                             precision_recall_fscore_support, precision_score, recall_score,
                             roc_auc_score, roc_curve)

warnings.simplefilter("ignore")  # UndefinedMetricWarning: the zero_division cases are wanted

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "metrics")

# ---- src/rb_rng.h, bit for bit
M64 = (1 << 64) - 1
RNG_BOOTSTRAP = 0xB0075EED  # METRICS_RNG_BOOTSTRAP in src/metrics.h


def mix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rng_u64(seed, a, b, c):
    h = mix64(seed ^ 0x5851F42D4C957F2D)
    h = mix64(h ^ a)
    h = mix64(h ^ ((b + 0x632BE59BD9B4E019) & M64))
    h = mix64(h ^ ((c + 0x8CB92BA72F3D8DD7) & M64))
    return h


def rng_below(seed, a, b, c, n):
    return ((rng_u64(seed, a, b, c) >> 32) * n) >> 32


# ---- formatting
def r(v):
    v = float(v)
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def rs(a):
    return " ".join(r(v) for v in np.asarray(a).reshape(-1))


def ints(a):
    return " ".join(str(int(v)) for v in np.asarray(a).reshape(-1))


def f32s(a):
    return " ".join("%.9g" % float(v) for v in np.asarray(a, np.float32).reshape(-1))


# ---- inputs
def probs_with_argmax(rng, pred, k, conc=1.0):
    """Random float32 probability rows whose unique argmax is pred[i]."""
    out = np.zeros((len(pred), k), np.float32)
    for i, c in enumerate(pred):
        while True:
            p = rng.dirichlet([conc] * k)
            j = int(np.argmax(p))
            p[[j, c]] = p[[c, j]]
            p32 = p.astype(np.float32)
            if int(np.argmax(p32)) == c and np.sum(p32 == p32[c]) == 1:
                break
        out[i] = p32
    return out


def binary_probs(p1):
    p1 = np.asarray(p1, np.float32)
    return np.stack([np.float32(1) - p1, p1], axis=1).astype(np.float32)


def cases():
    cs = []
    rng = np.random.default_rng(20240611)

    # binary, scores on a 0.1 grid: many ties, some exactly 0.5 (argmax says 0, screening at
    # threshold 0.5 says positive)
    n = 40
    p1 = rng.integers(0, 11, n) / 10.0
    y = (rng.random(n) < 0.15 + 0.7 * p1).astype(int)
    cs.append(dict(name="binary_ties", k=2, names=["NORMAL", "PNEUMONIA"], y_true=y,
                   probs=binary_probs(p1), positive=1, threshold=0.5,
                   bootstrap=(200, 2024, 0.95)))

    # imbalanced binary, continuous scores
    n = 150
    y = (rng.random(n) < 0.12).astype(int)
    p1 = np.clip(rng.normal(0.3 + 0.35 * y, 0.18), 0.001, 0.999)
    cs.append(dict(name="binary_imbalanced", k=2, names=["NORMAL", "PNEUMONIA"], y_true=y,
                   probs=binary_probs(p1), positive=1, threshold=0.3,
                   bootstrap=(100, 7, 0.9)))

    # 3 classes, class 2 never true (zero support) but predicted; two unlabelled samples
    n = 30
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, 3, n))
    pred[:2] = 2
    probs = probs_with_argmax(rng, pred, 3)
    y[5] = -1
    y[17] = -1
    cs.append(dict(name="three_zero_support", k=3, names=["normal", "bacteria", "virus"],
                   y_true=y, probs=probs, positive=1, threshold=0.4))

    # 3 classes, class 1 never predicted; a name longer than "weighted avg"
    n = 36
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    pred[pred == 1] = 0
    probs = probs_with_argmax(rng, pred, 3)
    cs.append(dict(name="three_never_predicted", k=3,
                   names=["NORMAL", "BACTERIAL PNEUMONIA", "VIRAL"], y_true=y, probs=probs,
                   positive=2, threshold=0.35, bootstrap=(50, 99, 0.95)))

    # perfect predictions
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1])
    p1 = np.where(y == 1, 0.6 + 0.03 * np.arange(10), 0.4 - 0.03 * np.arange(10))
    cs.append(dict(name="perfect", k=2, names=["NORMAL", "PNEUMONIA"], y_true=y,
                   probs=binary_probs(p1), positive=1, threshold=0.5,
                   bootstrap=(40, 5, 0.95)))

    # all wrong, scores inverted
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    p1 = np.where(y == 1, 0.05 + 0.04 * np.arange(8), 0.95 - 0.04 * np.arange(8))
    cs.append(dict(name="all_wrong", k=2, names=["NORMAL", "PNEUMONIA"], y_true=y,
                   probs=binary_probs(p1), positive=1, threshold=0.5))

    # n = 1
    cs.append(dict(name="n1", k=2, names=["NORMAL", "PNEUMONIA"], y_true=np.array([1]),
                   probs=binary_probs([0.8]), positive=1, threshold=0.5,
                   bootstrap=(10, 1, 0.95)))
    cs.append(dict(name="n1_wrong3", k=3, names=None, y_true=np.array([0]),
                   probs=np.array([[0.2, 0.3, 0.5]], np.float32), positive=0,
                   threshold=0.5))

    # counts chosen so values land on decimal ties: 0.125, 0.375, 0.625, ...
    y = np.array([1] * 1 + [0] * 7 + [0] * 3 + [1] * 5)
    pred = np.array([1] * 1 + [1] * 7 + [0] * 3 + [0] * 5)
    probs = probs_with_argmax(rng, pred, 2)
    cs.append(dict(name="rounding", k=2, names=None, y_true=y, probs=probs, positive=1,
                   threshold=0.5, digits=[2, 4, 0, 1, 3]))

    # UTF-8 names (width counts code points, as Python's len), digits beyond the width
    n = 25
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.5, y, rng.integers(0, 3, n))
    probs = probs_with_argmax(rng, pred, 3)
    cs.append(dict(name="utf8_names", k=3,
                   names=["Normal", "Pneumonía bacteriana", "Pneumonía"], y_true=y,
                   probs=probs, positive=2, threshold=0.4, digits=[2, 4, 25]))

    # 10 classes: numpy's pairwise summation with 8 accumulators in the averages
    n = 300
    y = rng.integers(0, 10, n)
    pred = np.where(rng.random(n) < 0.55, y, rng.integers(0, 10, n))
    probs = probs_with_argmax(rng, pred, 10, conc=0.5)
    cs.append(dict(name="ten_classes", k=10, names=None, y_true=y, probs=probs, positive=3,
                   threshold=0.2))
    return cs


def target_threshold(yb, s, target, kind):
    cands = sorted(set(float(v) for v in s)) + [np.inf]
    P, N = int(np.sum(yb == 1)), int(np.sum(yb == 0))
    if kind == "sens":
        for t in sorted(cands, reverse=True):  # largest first
            if P and np.sum((s >= t) & (yb == 1)) / P >= target:
                return t
        return np.nan
    for t in cands:  # smallest first
        if N and np.sum((s < t) & (yb == 0)) / N >= target:
            return t
    return np.nan


def screening(yb, yh):
    return [recall_score(yb, yh, pos_label=1, zero_division="warn"),
            recall_score(yb, yh, pos_label=0, zero_division="warn"),
            precision_score(yb, yh, pos_label=1, zero_division="warn"),
            precision_score(yb, yh, pos_label=0, zero_division="warn"),
            f1_score(yb, yh, pos_label=1, zero_division="warn"),
            matthews_corrcoef(yb, yh), balanced_accuracy_score(yb, yh), accuracy_score(yb, yh)]


def auc_or_nan(yb, s):
    if len(np.unique(yb)) != 2:
        return np.nan
    return roc_auc_score(yb, s)


def quantiles(vals, level):
    vals = np.asarray([v for v in vals if not np.isnan(v)])
    if len(vals) == 0:
        return np.nan, np.nan, 0
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(vals, [a, 1.0 - a])
    return lo, hi, len(vals)


def write_case(c):
    k, name = c["k"], c["name"]
    y_true = np.asarray(c["y_true"], int)
    probs = np.asarray(c["probs"], np.float32)
    n = len(y_true)
    assert probs.shape == (n, k)
    y_pred = np.argmax(probs, axis=1)
    digits = c.get("digits", [2, 4])
    L = ["# written by tests/golden/make_metrics_golden.py with scikit-learn %s, numpy %s"
         % (sklearn.__version__, np.__version__), "case " + name, "k %d" % k, "n %d" % n]
    if c["names"]:
        L += ["name %d %s" % (i, s) for i, s in enumerate(c["names"])]
    L += ["digits " + ints(digits), "y_true " + ints(y_true), "probs " + f32s(probs),
          "y_pred " + ints(y_pred)]

    ok = (y_true >= 0) & (y_true < k)
    yt, yp, pr = y_true[ok], y_pred[ok], probs[ok].astype(np.float64)
    labels = list(range(k))
    L.append("cm " + ints(confusion_matrix(yt, yp, labels=labels)))
    p, rc, f, s = precision_recall_fscore_support(yt, yp, labels=labels, zero_division="warn")
    L += ["precision " + rs(p), "recall " + rs(rc), "f1 " + rs(f), "support " + ints(s)]
    L.append("accuracy " + r(accuracy_score(yt, yp)))
    for avg in ("macro", "weighted"):
        a = precision_recall_fscore_support(yt, yp, labels=labels, average=avg,
                                            zero_division="warn")
        L.append("%s %s" % (avg, rs(a[:3])))
    for d in digits:
        txt = classification_report(yt, yp, labels=labels, target_names=c["names"], digits=d)
        with open(os.path.join(OUT, "%s.report%d.txt" % (name, d)), "w", encoding="utf-8",
                  newline="") as fh:
            fh.write(txt)

    L.append("ovr_auc " + rs([auc_or_nan((yt == j).astype(int), pr[:, j]) for j in labels]))
    if k >= 3:
        for avg in ("macro", "weighted"):
            L.append("auc_%s %s" % (avg, r(roc_auc_score(yt, pr, multi_class="ovr",
                                                         labels=labels, average=avg))))

    pos = c["positive"]
    yb, sc = (yt == pos).astype(int), pr[:, pos]
    L.append("positive %d" % pos)
    fpr, tpr, thr = roc_curve(yb, sc)
    L += ["roc_fpr " + rs(fpr), "roc_tpr " + rs(tpr), "roc_thr " + rs(thr),
          "roc_auc " + r(auc_or_nan(yb, sc))]
    t = c["threshold"]
    yh = (sc >= t).astype(int)
    L.append("threshold " + r(t))
    L.append("counts %d %d %d %d" % (np.sum((yh == 1) & (yb == 1)), np.sum((yh == 1) & (yb == 0)),
                                     np.sum((yh == 0) & (yb == 0)), np.sum((yh == 0) & (yb == 1))))
    L.append("screening " + rs(screening(yb, yh)))
    # J = tpr - fpr compared exactly: tps * N - fps * P in integers (np.argmax(tpr - fpr)
    # may prefer a later point when rounding breaks a tie), first maximum
    P, N = int(np.sum(yb == 1)), int(np.sum(yb == 0))
    if P and N:
        J = [int(round(tp * P)) * N - int(round(fp * N)) * P for tp, fp in zip(tpr, fpr)]
        L.append("youden " + r(thr[int(np.argmax(J))]))
    else:
        L.append("youden nan")
    for tg in (0.0, 0.5, 0.9, 0.95, 1.0):
        L.append("target_sens %s %s" % (r(tg), r(target_threshold(yb, sc, tg, "sens"))))
    for tg in (0.0, 0.5, 0.9, 1.0):
        L.append("target_spec %s %s" % (r(tg), r(target_threshold(yb, sc, tg, "spec"))))

    if "bootstrap" in c:
        B, seed, level = c["bootstrap"]
        m = len(yb)
        vals = {"accuracy": [], "sensitivity": [], "specificity": [], "auc": []}
        for b in range(B):
            idx = np.array([rng_below(seed, b, j, RNG_BOOTSTRAP, m) for j in range(m)], int)
            ybr, scr = yb[idx], sc[idx]
            yhr = (scr >= t).astype(int)
            P, N = int(np.sum(ybr)), int(m - np.sum(ybr))
            vals["accuracy"].append(np.sum(yhr == ybr) / m)
            vals["sensitivity"].append(np.sum(yhr[ybr == 1]) / P if P else np.nan)
            vals["specificity"].append(np.sum(1 - yhr[ybr == 0]) / N if N else np.nan)
            vals["auc"].append(roc_auc_score(ybr, scr) if P and N else np.nan)
        L.append("bootstrap %d %d %s" % (B, seed, r(level)))
        for key in ("accuracy", "sensitivity", "specificity", "auc"):
            lo, hi, nd = quantiles(vals[key], level)
            L.append("ci %s %s %s %d" % (key, r(lo), r(hi), nd))

    with open(os.path.join(OUT, name + ".txt"), "w", encoding="utf-8", newline="") as fh:
        fh.write("\n".join(L) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    cs = cases()
    for c in cs:
        write_case(c)
    with open(os.path.join(OUT, "index.txt"), "w") as fh:
        fh.write("".join(c["name"] + "\n" for c in cs))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %d cases, %d files, %d bytes in %s" % (len(cs), len(os.listdir(OUT)), total,
                                                       OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
