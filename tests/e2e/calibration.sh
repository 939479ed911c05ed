# labels: mpi
# Calibration in evaluate (docs/evaluate.md "Calibration", docs/metrics.md "Calibration"):
# on a deliberately over-confident model (a small CNN trained hard on the sample),
# metrics.json's reliability diagram, ECE and Brier score equal those recomputed from
# predictions.csv, calibration.csv holds the same bins, the printed line states them, and
# report.html draws the reliability diagram inline (checked in headless Chromium).
# train calibrate = temperature on the same run: the card holds T, the val ECE drops below
# the noise bound of a calibrated model, the ROC curve, AUC and decisions are unchanged, and
# predict, evaluate and infer give the calibrated probabilities.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3 # standard library only (json, csv)

"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
# over-confident: many epochs at a high learning rate, the last epoch's weights
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/run" --backbone cnn --epochs 12 --learning_rate 3e-3 \
    --batch_size 16 --restore_best false --quiet > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"

"$RADBATCH" evaluate --model "$M" --shards "$T/s64" --split val --out "$T/ev" --bootstrap 0 --quiet > "$T/ev.log" 2>&1 \
    || { cat "$T/ev.log"; fail "evaluate"; }
# recompute from predictions.csv (probabilities with 6 decimals: numbers within 1e-5)
"$PY" - "$T/ev" > "$T/check.txt" <<'PYEOF' || { cat "$T/check.txt"; fail "calibration differs from predictions.csv"; }
import csv, json, math, sys
d = sys.argv[1]
j = json.load(open(d + "/metrics.json"))
c = j["screening"]["calibration"]
pos = j["screening"]["positive_class"]
rows = list(csv.DictReader(open(d + "/predictions.csv")))
ps = [(float(r["prob_" + pos]), 1 if r["true_label"] == pos else 0) for r in rows if r["true_label"]]
n = len(ps)
edges = [i * 0.1 for i in range(1, 10)]
cnt = [0] * 10; posn = [0] * 10; sp = [0.0] * 10
for p, y in ps:
    b = sum(e < p for e in edges)
    cnt[b] += 1; posn[b] += y; sp[b] += p
ece = sum(cnt[b] / n * abs(posn[b] / cnt[b] - sp[b] / cnt[b]) for b in range(10) if cnt[b])
brier = sum((p - y) ** 2 for p, y in ps) / n
assert c["bins"] == 10 and len(c["reliability"]) == 10, c
assert abs(c["ece"] - ece) < 1e-5, (c["ece"], ece)
assert abs(c["brier"] - brier) < 1e-5, (c["brier"], brier)
cal = list(csv.DictReader(open(d + "/calibration.csv")))
assert len(cal) == 10
for b, (e, r) in enumerate(zip(c["reliability"], cal)):
    assert e["count"] == cnt[b] == int(r["count"]) and e["positives"] == posn[b] == int(r["positives"]), (b, e, r, cnt[b])
    assert abs(e["lo"] - b / 10) < 1e-12 and abs(e["hi"] - (b + 1) / 10) < 1e-12
    if cnt[b]:
        assert abs(e["mean_predicted"] - sp[b] / cnt[b]) < 1e-5 and e["observed"] == posn[b] / cnt[b]
        # calibration.csv prints %.17g; cJSON prints 15 significant digits when they read back
        # within an ulp, so the two files agree to 1e-12, not always bit for bit
        assert math.isclose(float(r["mean_predicted"]), e["mean_predicted"], rel_tol=1e-12, abs_tol=0)
        assert math.isclose(float(r["observed"]), e["observed"], rel_tol=1e-12, abs_tol=0)
    else:
        assert e["mean_predicted"] is None and r["mean_predicted"] == "" and r["observed"] == ""
print("ece %.4f brier %.4f n %d" % (c["ece"], c["brier"], n))
PYEOF
cat "$T/check.txt"
ECE=$("$PY" -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["screening"]["calibration"]["ece"])' "$T/ev/metrics.json")
"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0.15 else 1)' "$ECE" || fail "the over-confident model's ECE is only $ECE"
grep -q "^Calibration of P(PNEUMONIA): ECE $ECE (10 equal-width bins), Brier score " "$T/ev.log" \
    || { cat "$T/ev.log"; fail "no calibration line in the printed report"; }
ok "metrics.json, calibration.csv and the printed line agree with predictions.csv (ECE $ECE)"

# report.html: the reliability diagram inline, nothing outside the file
H="$T/ev/report.html"
grep -q '<h2>Calibration</h2>' "$H" || fail "report.html has no Calibration section"
grep -q 'aria-label="Reliability diagram: P(PNEUMONIA)"' "$H" || fail "report.html has no reliability diagram"
grep -qF "ECE = $ECE" "$H" || fail "report.html does not state ECE $ECE"
grep -q 'Brier score = ' "$H" || fail "report.html does not state the Brier score"
html_self_contained "$H" || fail "report.html holds a script or refers to something outside itself"
ok "report.html draws the reliability diagram"

# ---- train calibrate = temperature: the same run (same seed, same weights) with a
# temperature fitted on val, stored in the card and applied by evaluate, predict and infer
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/runc" --backbone cnn --epochs 12 --learning_rate 3e-3 \
    --batch_size 16 --restore_best false --calibrate temperature > "$T/trainc.log" 2>&1 \
    || { cat "$T/trainc.log"; fail "train --calibrate temperature"; }
grep -q '^calibration: temperature [0-9.]* fitted on val (41 records): NLL ' "$T/trainc.log" \
    || { cat "$T/trainc.log"; fail "train does not report the fitted temperature"; }
MC="$T/runc/model.h5"
"$RADBATCH" inspect "$MC" | awk '/^model card:/ { f = 1; next } f { print } f && /^}/ { exit }' > "$T/cardc.json"
"$RADBATCH" evaluate --model "$MC" --shards "$T/s64" --split val --out "$T/evc" --bootstrap 0 --quiet > "$T/evc.log" 2>&1 \
    || { cat "$T/evc.log"; fail "evaluate the calibrated model"; }
"$PY" - "$T/cardc.json" "$T/ev" "$T/evc" > "$T/checkc.txt" <<'PYEOF' || { cat "$T/checkc.txt"; fail "temperature scaling"; }
import csv, json, math, sys
card = json.load(open(sys.argv[1]))
cal = card["calibration"]
T = cal["temperature"]
assert cal["method"] == "temperature" and cal["fitted_on"]["split"] == "val" and cal["fitted_on"]["records"] == 41, cal
assert T > 1, "an over-confident model needs T > 1, got %g" % T
assert cal["after"]["nll"] < cal["before"]["nll"], cal
# the NLL at T = 1 is the val loss training measured on the same logits
assert abs(cal["before"]["nll"] - card["final_metrics"]["val_loss"]) < 1e-6 * card["final_metrics"]["val_loss"], cal
m0 = json.load(open(sys.argv[2] + "/metrics.json"))["screening"]
m1 = json.load(open(sys.argv[3] + "/metrics.json"))["screening"]
e0, e1 = m0["calibration"]["ece"], m1["calibration"]["ece"]
assert abs(m1["calibration"]["ece"] - cal["after"]["ece"]) < 1e-12, (m1["calibration"]["ece"], cal["after"])
assert abs(e0 - cal["before"]["ece"]) < 1e-12, (e0, cal["before"])
# the bound: a perfectly calibrated model's expected ECE on n images in B non-empty bins is
# at most sum_b (n_b/n) sqrt(p_b (1-p_b) / n_b) <= 0.5 sqrt(B / n) (Jensen, Cauchy-Schwarz)
rel = m1["calibration"]["reliability"]
n = sum(b["count"] for b in rel)
B = sum(1 for b in rel if b["count"])
bound = 0.5 * math.sqrt(B / n)
assert e1 < bound, "ECE after %g not below the noise bound %g" % (e1, bound)
assert e1 < e0 / 4, "ECE %g -> %g: not a quarter" % (e0, e1)
# the ranking is kept: the same ROC curve and AUC, the same decisions at each card's threshold
assert m0["roc_auc"] == m1["roc_auc"], (m0["roc_auc"], m1["roc_auc"])
r0 = [(r["fpr"], r["tpr"]) for r in csv.DictReader(open(sys.argv[2] + "/roc.csv"))]
r1 = [(r["fpr"], r["tpr"]) for r in csv.DictReader(open(sys.argv[3] + "/roc.csv"))]
assert r0 == r1, "the ROC curves differ"
for k in ("tp", "fp", "tn", "fn"):
    assert m0[k] == m1[k], (k, m0[k], m1[k])
p0 = [r["predicted_label"] for r in csv.DictReader(open(sys.argv[2] + "/predictions.csv"))]
p1 = [r["predicted_label"] for r in csv.DictReader(open(sys.argv[3] + "/predictions.csv"))]
assert p0 == p1, "decisions differ"
print("T %.4f: ECE %.4f -> %.4f (bound %.4f, n %d, %d bins), Brier %.4f -> %.4f, AUC %.4f both" % (
    T, e0, e1, bound, n, B, m0["calibration"]["brier"], m1["calibration"]["brier"], m0["roc_auc"]))
PYEOF
cat "$T/checkc.txt"
ok "temperature scaling: ECE drops below the bound, ranking, AUC and decisions unchanged"

# predict, evaluate and infer give the same calibrated probabilities, softmax(logits / T)
# of the uncalibrated model's logits (recovered as log p1 - log p0 from its predict --json)
IMG="$T/images"
for c in NORMAL PNEUMONIA; do
    mkdir -p "$IMG/$c"
    ls "$SAMPLE/$c" | sort | head -6 | while read -r f; do cp "$SAMPLE/$c/$f" "$IMG/$c/"; done
done
( cd "$IMG" && "$RADBATCH" predict --json true --model "$M" NORMAL/* PNEUMONIA/* ) > "$T/pred0.jsonl"
( cd "$IMG" && "$RADBATCH" predict --json true --model "$MC" NORMAL/* PNEUMONIA/* ) > "$T/pred1.jsonl"
"$RADBATCH" evaluate --model "$MC" --data "$IMG" --out "$T/evimg" --bootstrap 0 --quiet > /dev/null
"$RADBATCH" infer --model "$MC" --input "$IMG" --out "$T/inf" --quiet > /dev/null 2>&1 || fail "infer"
"$PY" - "$T" "$IMG" > "$T/checkp.txt" <<'PYEOF' || { cat "$T/checkp.txt"; fail "calibrated probabilities differ"; }
import csv, json, math, sys
t, img = sys.argv[1], sys.argv[2]
T = json.load(open(t + "/cardc.json"))["calibration"]["temperature"]
p0 = {j["file"]: j["probabilities"] for j in map(json.loads, open(t + "/pred0.jsonl"))}
p1 = {j["file"]: j["probabilities"]["PNEUMONIA"] for j in map(json.loads, open(t + "/pred1.jsonl"))}
ev = {r["path"]: float(r["prob_PNEUMONIA"]) for r in csv.DictReader(open(t + "/evimg/predictions.csv"))}
inf = {r["path"]: float(r["prob_PNEUMONIA"]) for r in csv.DictReader(open(t + "/inf/predictions.csv"))}
assert len(p1) == 12 and set(p1) == set(ev) == set(inf), (sorted(p1), sorted(ev), sorted(inf))
checked = 0
for f, p in p1.items():
    assert abs(p - ev[f]) <= 1e-6 and abs(p - inf[f]) <= 1e-6, (f, p, ev[f], inf[f])
    a, b = p0[f]["NORMAL"], p0[f]["PNEUMONIA"]
    if min(a, b) >= 1e-4:  # 6 printed decimals: the logit within 0.5%
        want = 1 / (1 + math.exp(-(math.log(b) - math.log(a)) / T))
        assert abs(p - want) < 1e-3, (f, p, want)
        checked += 1
assert checked >= 6, "only %d images with a recoverable logit" % checked
print("12 images: predict, evaluate and infer agree; %d match sigmoid(logit / T)" % checked)
PYEOF
cat "$T/checkp.txt"
ok "predict, evaluate and infer apply the card's temperature"

# on 2 ranks: the val logits gathered from both ranks (training itself may differ from the
# 1-rank run in float rounding, amplified over 120 steps at this learning rate): the card's
# NLL at T = 1 is that run's val loss, and evaluate measures the card's ECE after fitting
mpirun -n 2 "$RADBATCH" train --shards "$T/s64" --run_dir "$T/runc2" --backbone cnn --epochs 12 --learning_rate 3e-3 \
    --batch_size 16 --restore_best false --calibrate temperature --quiet > "$T/trainc2.log" 2>&1 \
    || { cat "$T/trainc2.log"; fail "train --calibrate temperature on 2 ranks"; }
"$RADBATCH" inspect "$T/runc2/model.h5" | awk '/^model card:/ { f = 1; next } f { print } f && /^}/ { exit }' > "$T/cardc2.json"
"$RADBATCH" evaluate --model "$T/runc2/model.h5" --shards "$T/s64" --split val --out "$T/evc2" --bootstrap 0 --quiet \
    > /dev/null 2>&1 || fail "evaluate the 2-rank calibrated model"
"$PY" - "$T/cardc2.json" "$T/evc2/metrics.json" <<'PYEOF' || fail "2 ranks: the fit does not match the val split"
import json, sys
card = json.load(open(sys.argv[1])); cal = card["calibration"]
ece = json.load(open(sys.argv[2]))["screening"]["calibration"]["ece"]
assert cal["fitted_on"]["records"] == 41 and cal["temperature"] > 1, cal
assert abs(cal["before"]["nll"] - card["final_metrics"]["val_loss"]) < 1e-6 * card["final_metrics"]["val_loss"], cal
assert abs(cal["after"]["ece"] - ece) < 1e-12, (cal["after"]["ece"], ece)
PYEOF
ok "2 ranks: temperature fitted on all 41 val records, its NLL and ECE those of the val split"

# calibrate = temperature needs a val split
set +e
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/noval" --backbone cnn --epochs 1 --val_split "" \
    --calibrate temperature --quiet > "$T/noval.out" 2> "$T/noval.err"
rc=$?
set -e
[ $rc != 0 ] || fail "calibrate = temperature without a val split succeeded"
grep -q "calibrate = temperature fits the temperature on the val split" "$T/noval.err" \
    || { cat "$T/noval.err"; fail "no clear error for calibrate without val"; }
ok "calibrate = temperature without a val split: exit $rc, $(head -1 "$T/noval.err")"

need_chromium
# render the calibration section alone: it must not be blank
"$PY" - "$H" "$T/cal.html" <<'PYEOF'
import sys
s = open(sys.argv[1]).read()
i = s.find('<h2>Calibration</h2>'); j = s.find('</figure>', i)
head = s[:s.find('<body>') + 6]
open(sys.argv[2], 'w').write(head + s[i:j + 9] + '</body></html>')
PYEOF
blank=$(empty_page_png 700,700)
render "$T/cal.html" "$T/cal.png" 700,700
[ "$(wc -c < "$T/cal.png")" -gt $((blank * 8)) ] || fail "the reliability diagram renders blank"
ok "chromium renders the reliability diagram ($(wc -c < "$T/cal.png") bytes, empty page $blank)"
