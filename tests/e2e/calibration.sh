# Calibration in evaluate (docs/evaluate.md "Calibration", docs/metrics.md "Calibration"):
# on a deliberately over-confident model (a small CNN trained hard on the sample),
# metrics.json's reliability diagram, ECE and Brier score equal those recomputed from
# predictions.csv, calibration.csv holds the same bins, the printed line states them, and
# report.html draws the reliability diagram inline (checked in headless Chromium).
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
        assert float(r["mean_predicted"]) == e["mean_predicted"] and float(r["observed"]) == e["observed"]
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
grep -qi '<script' "$H" && fail "report.html holds a script"
grep -Eqi '(https?:|ftp:|//[a-z0-9.-]+\.[a-z]{2,}/|src=|@import|url\((["'"'"']?)[^#])' "$H" && fail "report.html refers to something outside itself"
ok "report.html draws the reliability diagram"

CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || skip "chromium not installed (tests/setup.sh installs it); render check not run"
# render the calibration section alone: it must not be blank
"$PY" - "$H" "$T/cal.html" <<'PYEOF'
import sys
s = open(sys.argv[1]).read()
i = s.find('<h2>Calibration</h2>'); j = s.find('</figure>', i)
head = s[:s.find('<body>') + 6]
open(sys.argv[2], 'w').write(head + s[i:j + 9] + '</body></html>')
PYEOF
printf '<!DOCTYPE html><html><head><meta charset="utf-8"><title>empty</title></head><body></body></html>\n' > "$T/empty.html"
render() {
    timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$T/chrome-profile" \
        --screenshot="$2" --window-size=700,700 "file://$1" > "$T/chrome.log" 2>&1 || true
    [ -s "$2" ] || { cat "$T/chrome.log"; fail "chromium wrote no screenshot of $1"; }
}
render "$T/empty.html" "$T/empty.png"
render "$T/cal.html" "$T/cal.png"
[ "$(wc -c < "$T/cal.png")" -gt $(($(wc -c < "$T/empty.png") * 8)) ] || fail "the reliability diagram renders blank"
ok "chromium renders the reliability diagram ($(wc -c < "$T/cal.png") bytes, empty page $(wc -c < "$T/empty.png"))"
