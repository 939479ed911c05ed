# Operating points (docs/evaluate.md "Operating points"): every form of `threshold` on
# evaluate, predict and infer; evaluate --set_threshold writes a copy of the model whose
# card records the threshold, its rule, the split and data it was chosen on and the
# sensitivity/specificity there, with the same weights and valid checksums, and predict and
# infer use it; every report states the threshold and its source; evaluate warns exactly
# when the threshold was chosen on the split it reports; bad forms exit 2 naming the key.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3 # standard library only (json)
jget() { # jget FILE EXPR: a Python expression on the JSON document j
    "$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); v = eval(sys.argv[2]); print("null" if v is None else v)' "$1" "$2"
}
card() { "$RADBATCH" inspect "$1" | awk '/^model card:/ { f = 1; next } f { print } f && /^}/ { exit }' > "$2"; }
expect2() { # expect2 WHAT CMD...: exit 2 and a message naming the key 'threshold'
    local what=$1 rc; shift
    set +e
    "$@" > "$T/x.out" 2> "$T/x.err"
    rc=$?
    set -e
    [ $rc = 2 ] || { cat "$T/x.err"; fail "$what: exit $rc, expected 2"; }
    grep -q "key 'threshold'" "$T/x.err" || { cat "$T/x.err"; fail "$what: the error does not name the key"; }
}

"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s96" --run_dir "$T/run" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet \
    > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"

# ---- the training card: Youden on val, with the data and the rates measured there
card "$M" "$T/card.json"
IDX=$(jget "$T/card.json" 'j["data"]["index_checksum"]') # XXH3-64 of the shards' index.json
[ ${#IDX} = 16 ] || fail "train card: no index checksum"
[ "$(jget "$T/card.json" 'j["threshold"]["method"]')" = youden ] || fail "train card: method"
[ "$(jget "$T/card.json" 'j["threshold"]["chosen_on"]["split"]')" = val ] || fail "train card: split"
[ "$(jget "$T/card.json" 'j["threshold"]["chosen_on"]["index_checksum"]')" = "$IDX" ] || fail "train card: index checksum"
jget "$T/card.json" '0 <= j["threshold"]["sensitivity"] <= 1 and 0 <= j["threshold"]["specificity"] <= 1' | grep -qx True \
    || fail "train card: sensitivity/specificity at the threshold"
ok "the training card records method, split, data and the rates there"

# ---- evaluate: each form, its rule and source in metrics.json, the decisions it gives
ev() { # ev OUT ARGS...: evaluate into $T/OUT, stderr kept in $T/OUT.err
    local o=$1; shift
    "$RADBATCH" evaluate "$@" --data "${DATA:-$T/s96}" --out "$T/$o" --bootstrap 0 --quiet > "$T/$o.out" 2> "$T/$o.err" \
        || { cat "$T/$o.err"; fail "evaluate $*"; }
}
thr() { jget "$T/$1/metrics.json" "j['screening']['threshold']['$2']"; }
ev e_model --model "$M" --split val
[ "$(thr e_model rule)" = model ] || fail "model: rule"
[ "$(thr e_model value)" = "$(jget "$T/card.json" 'j["threshold"]["value"]')" ] || fail "model: not the card's value"
thr e_model source | grep -q "^model card: youden on val of .*s96$" || fail "model: source '$(thr e_model source)'"
ev e_val --model "$M" --split val --threshold 0.3
[ "$(thr e_val value)" = 0.3 ] && [ "$(thr e_val source)" = "command line" ] || fail "0.3: value or source"
tail -n +2 "$T/e_val/predictions.csv" | awk -F, '{ want = ($5 + 0 >= 0.3) ? "PNEUMONIA" : "NORMAL"; if ($3 != want) bad = 1 } END { exit bad }' \
    || fail "0.3: decisions are not prob >= 0.3"
printf '[evaluate]\nthreshold = 0.25\n' > "$T/job.ini"
ev e_job "$T/job.ini" --model "$M" --split val
[ "$(thr e_job value)" = 0.25 ] && [ "$(thr e_job source)" = "job file" ] || fail "job file value: value or source"
ev e_you --model "$M" --split val --threshold youden
[ "$(thr e_you rule)" = youden ] || fail "youden: rule"
ev e_sens --model "$M" --split val --threshold sensitivity:0.95
[ "$(thr e_sens rule)" = sensitivity:0.95 ] && [ "$(thr e_sens target)" = 0.95 ] || fail "sensitivity: rule or target"
thr e_sens source | grep -q "^sensitivity:0.95 on val of .*s96 (this data)$" || fail "sensitivity: source"
jget "$T/e_sens/metrics.json" 'j["screening"]["sensitivity"] >= 0.95' | grep -qx True || fail "sensitivity 0.95 not reached"
ev e_spec --model "$M" --split val --threshold specificity:0.8
jget "$T/e_spec/metrics.json" 'j["screening"]["specificity"] >= 0.8' | grep -qx True || fail "specificity 0.8 not reached"
for o in e_model e_sens; do # the printed report header and report.html state it
    grep -A1 "^Threshold $(thr $o rule): PNEUMONIA positive when its probability >= [0-9.]* (.*)$" "$T/$o.out" \
        | grep -q "^Classification Report:$" || fail "$o: no threshold line above the printed report"
    grep -qF "($(thr $o source))" "$T/$o.out" || fail "$o: the printed threshold line has no source"
    grep -qF "$(thr $o source)" "$T/$o/report.html" || fail "$o: report.html does not state the source"
done
ok "evaluate: model, a value (command line, job file), youden, sensitivity:, specificity:"

# ---- the warning: threshold chosen on the split the report is on, and only then
warned() { # warned OUT yes|no
    local want=$1 o=$2 w=no
    grep -q "^warning: the threshold was chosen on the" "$T/$o.err" && w=yes
    [ "$w" = "$want" ] || fail "$o: stderr warning '$w', expected '$want'"
    [ "$(thr $o chosen_on_reported_split)" = "$([ $want = yes ] && echo True || echo False)" ] || fail "$o: metrics.json flag"
    if [ $want = yes ]; then grep -q "Warning: the threshold was chosen on the" "$T/$o/report.html" || fail "$o: report.html note"
    else ! grep -q "Warning: the threshold" "$T/$o/report.html" || fail "$o: report.html warns"; fi
}
warned yes e_model # the card's Youden was chosen on val of these shards
warned yes e_sens  # chosen on this very data
warned no e_val    # a given value
ev e_train --model "$M" --split train
warned no e_train  # the card's threshold, another split
cp -r "$T/s96" "$T/s96copy"
DATA="$T/s96copy" ev e_copy --model "$M" --split val
warned yes e_copy  # the same shards (same index checksum) in another folder
ok "the same-split warning: stderr, metrics.json and report.html, only when the split is the one chosen on"

# ---- set_threshold: a copy whose card records the operating point
OP="$T/op.h5"
ev e_set --model "$M" --split val --threshold sensitivity:0.95 --set_threshold "$OP"
[ -f "$OP" ] || fail "set_threshold wrote no file"
card "$OP" "$T/op.json"
o='j["threshold"]'
[ "$(jget "$T/op.json" "$o['value']")" = "$(thr e_set value)" ] || fail "stored value"
[ "$(jget "$T/op.json" "$o['method']")" = sensitivity ] && [ "$(jget "$T/op.json" "$o['target']")" = 0.95 ] || fail "stored method"
[ "$(jget "$T/op.json" "$o['chosen_on']['split']")" = val ] || fail "stored split"
[ "$(jget "$T/op.json" "$o['chosen_on']['index_checksum']")" = "$IDX" ] || fail "stored index checksum"
[ "$(jget "$T/op.json" "$o['chosen_on']['data']")" = "$(cd "$T/s96" && pwd -P)" ] || fail "stored data path"
[ "$(jget "$T/op.json" "$o['sensitivity']")" = "$(jget "$T/e_set/metrics.json" 'j["screening"]["sensitivity"]')" ] || fail "stored sensitivity"
[ "$(jget "$T/op.json" "$o['specificity']")" = "$(jget "$T/e_set/metrics.json" 'j["screening"]["specificity"]')" ] || fail "stored specificity"
[ "$(jget "$T/op.json" "$o['set_by']")" = evaluate ] || fail "stored set_by"
[ "$(jget "$T/op.json" 'j["backbone"]')" = "$(jget "$T/card.json" 'j["backbone"]')" ] || fail "the rest of the card was not kept"
"$RADBATCH" inspect "$M" --diff "$OP" | grep -q "^diff: 0 of" || fail "the copy's weights differ"
"$RADBATCH" inspect "$OP" > "$T/op.inspect" || fail "inspect of the copy"
grep -q "integrity: every checksum matches" "$T/op.inspect" || fail "the copy's checksums do not verify"
grep -Eq "^  operating point: threshold [0-9.]+ on PNEUMONIA \(sensitivity:0.95 on val of /.*/s96; sensitivity [0-9.]+, specificity [0-9.]+ there; set by evaluate\)$" \
    "$T/op.inspect" || fail "inspect: no operating point line for the copy"
"$RADBATCH" inspect "$M" > "$T/m.inspect" || fail "inspect of the model"
grep -Eq "^  operating point: threshold [0-9.]+ on PNEUMONIA \(youden on val of /.*/s96; .*; set by train\)$" "$T/m.inspect" \
    || fail "inspect: no operating point line for the trained model"
ev e_op_train --model "$OP" --split train
thr e_op_train source | grep -q "^model card: sensitivity:0.95 on val of " || fail "evaluate of the copy: source"
[ "$(thr e_op_train value)" = "$(thr e_set value)" ] || fail "evaluate of the copy: value"
warned no e_op_train
ev e_op_val --model "$OP" --split val
warned yes e_op_val
# image folders laid out as val/ and test/: the same folder and split warns, another split not
for sp in val test; do
    mkdir -p "$T/imgs/$sp/NORMAL" "$T/imgs/$sp/PNEUMONIA"
    for c in NORMAL PNEUMONIA; do
        mapfile -t files < <(ls "$SAMPLE/$c" | sort)
        first=$([ $sp = val ] && echo 0 || echo 2)
        cp "$SAMPLE/$c/${files[$first]}" "$SAMPLE/$c/${files[$((first + 1))]}" "$T/imgs/$sp/$c/"
    done
done
DATA="$T/imgs" ev i_set --model "$M" --split val --threshold sensitivity:0.5 --set_threshold "$T/op_img.h5"
DATA="$T/imgs" ev i_val --model "$T/op_img.h5" --split val
warned yes i_val
DATA="$T/imgs" ev i_test --model "$T/op_img.h5" --split test
warned no i_test
ok "set_threshold: the copy records value, rule, split, data, rates; same weights, checksums verify; evaluate uses it"

# ---- predict: the forms, the source in JSON and text
A="$SAMPLE/NORMAL/$(ls "$SAMPLE/NORMAL" | sort | head -1)"
pj() { "$RADBATCH" predict --json "$@" "$A" > "$T/p.json" || fail "predict $*"; }
pget() { jget "$T/p.json" "j['threshold']['$1']"; }
pj --model "$OP"
[ "$(pget value)" = "$(thr e_set value)" ] && pget source | grep -q "^model card: sensitivity:0.95 on val of " || fail "predict model"
pj --model "$OP" --threshold sensitivity:0.95
[ "$(pget value)" = "$(thr e_set value)" ] && [ "$(pget rule)" = sensitivity:0.95 ] || fail "predict sensitivity:0.95"
pj --model "$OP" --threshold 0.3
[ "$(pget value)" = 0.3 ] && [ "$(pget source)" = "command line" ] || fail "predict 0.3"
pj --model "$M" --threshold youden
[ "$(pget value)" = "$(jget "$T/card.json" 'j["threshold"]["value"]')" ] || fail "predict youden from the training card"
"$RADBATCH" predict --model "$OP" "$A" | grep -q "^  decision: .* threshold [0-9.]*, model card: sensitivity:0.95 on val of " \
    || fail "predict text: no source"
expect2 "predict sensitivity:0.95 without a stored one" "$RADBATCH" predict --model "$M" --threshold sensitivity:0.95 "$A"
grep -q "set_threshold" "$T/x.err" || fail "predict: the error does not say how to store an operating point"
expect2 "predict specificity:0.9 on a sensitivity card" "$RADBATCH" predict --model "$OP" --threshold specificity:0.9 "$A"
ok "predict: model, value, stored rules; a rule the card lacks exits 2 with how to store it"

# ---- infer: summary.json and report.html state it; flagged follows it
inf() { local o=$1; shift; "$RADBATCH" infer --input "$SAMPLE" --out "$T/$o" --quiet "$@" > /dev/null 2>&1 || fail "infer $*"; }
inf i_op --model "$OP"
[ "$(jget "$T/i_op/summary.json" 'j["threshold"]')" = "$(thr e_set value)" ] || fail "infer: not the stored threshold"
jget "$T/i_op/summary.json" 'j["threshold_source"]' | grep -q "^model card: sensitivity:0.95 on val of " || fail "infer: source"
grep -q "threshold model: model card: sensitivity:0.95 on val of " "$T/i_op/report.html" || fail "infer report.html: source"
inf i_sens --model "$OP" --threshold sensitivity:0.95
[ "$(jget "$T/i_sens/summary.json" 'j["threshold_rule"]')" = sensitivity:0.95 ] || fail "infer sensitivity: rule"
cmp -s "$T/i_op/flagged.csv" "$T/i_sens/flagged.csv" || fail "infer: the stored rule flags other images than the card's"
inf i_03 --model "$OP" --threshold 0.3
want=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "prob_PNEUMONIA") c = i; next } $c + 0 >= 0.3 { n++ } END { print n + 0 }' "$T/i_03/predictions.csv")
[ "$(jget "$T/i_03/summary.json" 'j["flagged"]')" = "$want" ] || fail "infer 0.3: flagged is not the count of prob >= 0.3"
[ "$(jget "$T/i_03/summary.json" 'j["threshold_source"]')" = "command line" ] || fail "infer 0.3: source"
inf i_you --model "$M" --threshold youden
[ "$(jget "$T/i_you/summary.json" 'j["threshold"]')" = "$(jget "$T/card.json" 'j["threshold"]["value"]')" ] || fail "infer youden: not the training card's"
jget "$T/i_you/summary.json" 'j["threshold_source"]' | grep -q "^model card: youden on val of " || fail "infer youden: source"
expect2 "infer sensitivity:0.95 without a stored one" "$RADBATCH" infer --model "$M" --input "$SAMPLE" --out "$T/i_bad" --threshold sensitivity:0.95
[ ! -e "$T/i_bad" ] || fail "infer: a refused threshold left a run folder"
set +e
"$RADBATCH" infer --model "$OP" --input "$SAMPLE" --out "$T/i_since" --since "$T/i_op" --threshold 0.3 > /dev/null 2> "$T/since.err"
rc=$?
set -e
[ $rc = 1 ] && grep -q "flagged at threshold" "$T/since.err" || fail "infer --since at another threshold: exit $rc"
ok "infer: stored rules (sensitivity:, youden) and given values, source in summary.json and report.html, --since needs the same threshold"

# ---- bad forms exit 2 naming the key, before any work
for bad in foo sensitivity:1.5 sensitivity specificity:x -0.1 1.5 ''; do
    expect2 "evaluate '$bad'" "$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/e_bad" --threshold "$bad"
    expect2 "predict '$bad'" "$RADBATCH" predict --model "$M" --threshold "$bad" "$A"
    expect2 "infer '$bad'" "$RADBATCH" infer --model "$M" --input "$SAMPLE" --out "$T/i_bad" --threshold "$bad"
done
[ ! -e "$T/e_bad" ] && [ ! -e "$T/i_bad" ] || fail "a bad threshold left an output folder"
set +e
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/e_x" --set_threshold "$T/x.h5" > /dev/null 2> "$T/x.err"; rc1=$?
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/e_x" --threshold 0.3 --set_threshold "$M" > /dev/null 2> "$T/y.err"; rc2=$?
"$RADBATCH" evaluate --model "$M,$M" --data "$T/s96" --out "$T/e_x" --threshold 0.3 --set_threshold "$T/x.h5" > /dev/null 2> "$T/z.err"; rc3=$?
set -e
[ $rc1 = 2 ] && grep -q "set_threshold" "$T/x.err" || fail "set_threshold with threshold = model: exit $rc1"
[ $rc3 = 2 ] && grep -q "ensemble" "$T/z.err" || fail "set_threshold with an ensemble: exit $rc3"
[ ! -e "$T/x.h5" ] && [ ! -e "$T/e_x" ] || fail "a refused set_threshold wrote something"
[ $rc2 = 2 ] && grep -q "is the model file" "$T/y.err" || fail "set_threshold onto the model itself: exit $rc2"
ok "bad forms and bad set_threshold uses: exit 2 naming the key"
