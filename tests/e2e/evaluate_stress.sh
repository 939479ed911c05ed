# labels: mpi
# evaluate --stress true (docs/evaluate.md "Stress test"): metrics.json holds severity 0 and
# every shift at each severity; severity 0 (a full pass through the stress machinery)
# equals the clean score; the rows are the same on a rerun and on 2 ranks (seeded shifts
# keyed to record indices); inverted polarity lowers the AUC of a trained model; the
# printed table and report.html's charts and table are there, the page renders in
# headless Chromium.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3 # standard library only (json)

"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/run" --backbone cnn --epochs 12 --learning_rate 3e-3 \
    --batch_size 16 --restore_best false --quiet > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"
for run in a b; do
    "$RADBATCH" evaluate --model "$M" --shards "$T/s64" --split val --out "$T/$run" --bootstrap 0 --stress true \
        --quiet > "$T/$run.log" 2>&1 || { cat "$T/$run.log"; fail "evaluate --stress true ($run)"; }
done
mpirun -n 2 "$RADBATCH" evaluate --model "$M" --shards "$T/s64" --split val --out "$T/r2" --bootstrap 0 --stress true \
    --batch_size 8 --quiet > "$T/r2.log" 2>&1 || { cat "$T/r2.log"; fail "evaluate --stress true on 2 ranks"; }

"$PY" - "$T" > "$T/check.txt" <<'PYEOF' || { cat "$T/check.txt"; fail "stress results"; }
import json, sys
t = sys.argv[1]
j = json.load(open(t + "/a/metrics.json"))
st, sc = j["stress"], j["screening"]
rows = st["results"]
want = [("none", 0)] + [(s, v) for s in ("contrast", "gamma", "blur", "noise", "resolution", "zoom") for v in (1, 2, 3)] \
    + [("invert", 1)]
assert [(r["shift"], r["severity"]) for r in rows] == want, [(r["shift"], r["severity"]) for r in rows]
assert st["threshold"] == sc["threshold"]["value"] and st["seed"] == 123 and st["positive_class"] == "PNEUMONIA"
clean = rows[0]
for k in ("roc_auc", "sensitivity", "specificity", "accuracy"):
    assert clean[k] == sc[k], (k, clean[k], sc[k])
assert clean["images"] == 41
params = {(r["shift"], r["severity"]): r.get("parameter") for r in rows}
assert params[("contrast", 1)] == 0.8 and params[("gamma", 3)] == 2.2 and params[("blur", 2)] == 1.0 \
    and params[("noise", 3)] == 16 and params[("resolution", 1)] == 2 and params[("zoom", 3)] == 0.7, params
for r in rows:
    for k in ("roc_auc", "sensitivity", "specificity"):
        assert 0 <= r[k] <= 1, r
inv = rows[-1]
assert inv["roc_auc"] < clean["roc_auc"] - 0.1, "inverted polarity: AUC %g, clean %g" % (inv["roc_auc"], clean["roc_auc"])
for other in ("b", "r2"):
    o = json.load(open(t + "/" + other + "/metrics.json"))["stress"]
    assert o == st, "stress results of run %s differ" % other
print("clean AUC %.4f, inverted %.4f; %d rows identical on a rerun and on 2 ranks" % (
    clean["roc_auc"], inv["roc_auc"], len(rows)))
PYEOF
cat "$T/check.txt"
grep -q '^Stress test (PNEUMONIA positive when its probability >= ' "$T/a.log" || fail "no printed stress table"
[ "$(sed -n '/^Stress test/,/^$/p' "$T/a.log" | grep -cE '^  (none|contrast|gamma|blur|noise|resolution|zoom|invert) ')" = 20 ] \
    || { cat "$T/a.log"; fail "the printed stress table does not have 20 rows"; }
ok "metrics.json and the printed table: severity 0 equals the clean score, deterministic on 1 and 2 ranks, inversion lowers the AUC"

H="$T/a/report.html"
grep -q '<h2>Stress test</h2>' "$H" || fail "report.html has no Stress test section"
for m in 'ROC AUC' sensitivity specificity; do
    grep -q "aria-label=\"Stress test: $m\"" "$H" || fail "report.html lacks the stress chart of $m"
done
grep -q '<td>invert</td>' "$H" || fail "report.html lacks the stress table"
grep -qi '<script' "$H" && fail "report.html holds a script"
ok "report.html: stress charts and table"

need_chromium
"$PY" - "$H" "$T/stress.html" <<'PYEOF'
import sys
s = open(sys.argv[1]).read()
i = s.find('<h2>Stress test</h2>'); j = s.find('</table>', i)
open(sys.argv[2], 'w').write(s[:s.find('<body>') + 6] + s[i:j + 8] + '</body></html>')
PYEOF
blank=$(empty_page_png 900,1800)
render "$T/stress.html" "$T/stress.png" 900,1800
[ "$(wc -c < "$T/stress.png")" -gt $((blank * 8)) ] || fail "the stress section renders blank"
ok "chromium renders the stress charts ($(wc -c < "$T/stress.png") bytes, empty page $blank)"
