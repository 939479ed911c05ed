# labels: invariance
# radbatch predict: text and --json output for single images, the same probabilities as
# evaluate, corrupt/missing files reported by name while the others are still predicted
# (exit 1), bad keys (exit 2), and 150 images from one shell glob.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s96" --run_dir "$T/run" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet \
    > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"
A="$SAMPLE/NORMAL/$(ls "$SAMPLE/NORMAL" | sort | head -1)"
B="$SAMPLE/PNEUMONIA/$(ls "$SAMPLE/PNEUMONIA" | sort | head -1)"

# text: "<file>: CLASS (xx.xx%)", one line per class, the threshold decision
"$RADBATCH" predict --model "$M" "$A" "$B" > "$T/text.out" || fail "predict text"
for f in "$A" "$B"; do
    grep -Eq "^$f: (NORMAL|PNEUMONIA) \([0-9]+\.[0-9]{2}%\)$" "$T/text.out" || fail "no result line for $f: $(cat "$T/text.out")"
done
[ "$(grep -Ec '^  NORMAL +[0-9]+\.[0-9]{2}%$' "$T/text.out")" = 2 ] || fail "class probability lines"
[ "$(grep -Ec '^  PNEUMONIA +[0-9]+\.[0-9]{2}%$' "$T/text.out")" = 2 ] || fail "class probability lines"
[ "$(grep -Ec '^  decision: (NORMAL|PNEUMONIA) \(probability of PNEUMONIA [0-9.]+ (>=|<) threshold [0-9.]+' "$T/text.out")" = 2 ] \
    || fail "decision lines: $(cat "$T/text.out")"
# the confidence is the probability of the decided class
awk '/^\// { split($0, a, ": "); cls = a[2]; sub(/ .*/, "", cls); conf = $NF; gsub(/[()%]/, "", conf) }
     /^  (NORMAL|PNEUMONIA) / { p = $2; sub(/%/, "", p); if ($1 == cls && p != conf) bad = 1 } END { exit bad }' "$T/text.out" \
    || fail "confidence is not the decided class's probability"
# the model file as first positional argument works too
"$RADBATCH" predict "$M" "$A" | head -1 | grep -q "^$A: " || fail "model as positional argument"
ok "text output"

# --json: one object per line with class, confidence, probabilities, threshold decision
"$RADBATCH" predict --model "$M" "$A" "$B" --json > "$T/json.out" || fail "predict --json"
[ "$(wc -l < "$T/json.out")" = 2 ] || fail "--json: expected 2 lines"
while read -r line; do
    for key in '"file":' '"class":' '"confidence":' '"probabilities":{"NORMAL":' '"PNEUMONIA":' '"threshold":{' '"positive":'; do
        case "$line" in *"$key"*) ;; *) fail "--json line without $key: $line" ;; esac
    done
done < "$T/json.out"
ok "json output"

# same probabilities as evaluate on the image files
mkdir -p "$T/two/NORMAL" "$T/two/PNEUMONIA"
cp "$A" "$T/two/NORMAL/"
cp "$B" "$T/two/PNEUMONIA/"
"$RADBATCH" evaluate --model "$M" --data "$T/two" --out "$T/ev" --bootstrap 0 --quiet > /dev/null || fail "evaluate"
for f in "$A" "$B"; do
    pe=$(grep "/$(basename "$f")," "$T/ev/predictions.csv" | cut -d, -f5)
    pp=$(grep -F "\"file\":\"$f\"" "$T/json.out" | sed 's/.*"PNEUMONIA":\([0-9.e-]*\).*/\1/')
    # an image's probability never depends on its batch companions (docs/engine.md)
    [ -n "$pe" ] && [ "$pe" = "$pp" ] || fail "$f: evaluate says $pe, predict says $pp"
done
ok "predict = evaluate"

# bad files: named on stderr, the good ones still predicted, exit 1
head -c 1500 "$A" > "$T/truncated.jpeg"
echo "hello" > "$T/text.png"
set +e
"$RADBATCH" predict --model "$M" "$T/truncated.jpeg" "$A" "$T/missing.jpeg" "$T/text.png" "$B" > "$T/bad.out" 2> "$T/bad.err"
rc=$?
set -e
[ $rc = 1 ] || fail "bad files: exit $rc, expected 1"
for f in truncated.jpeg missing.jpeg text.png; do
    grep -q "^error: $T/$f: " "$T/bad.err" || fail "no error line naming $f: $(cat "$T/bad.err")"
done
[ "$(grep -Ec '^/.*: (NORMAL|PNEUMONIA) \(' "$T/bad.out")" = 2 ] || fail "good images not predicted next to bad ones"
set +e
"$RADBATCH" predict --model "$M" "$T/truncated.jpeg" "$A" --json > "$T/badj.out" 2> /dev/null
set -e
grep -q '"file":".*truncated.jpeg","error":"' "$T/badj.out" || fail "--json: no error object for the bad file"
ok "corrupt and missing files"

set +e
"$RADBATCH" predict --model "$M" > /dev/null 2>&1; [ $? = 2 ] || fail "no image: exit 2"
"$RADBATCH" predict "$A" > /dev/null 2>&1; [ $? = 2 ] || fail "no model: exit 2"
"$RADBATCH" predict --model "$M" "$A" --tta 3 > /dev/null 2>&1; [ $? = 2 ] || fail "tta 3: exit 2"
"$RADBATCH" predict --model "$T/nope.h5" "$A" > /dev/null 2>&1; [ $? = 1 ] || fail "missing model: exit 1"
set -e
"$RADBATCH" predict --model "$M" "$A" --tta 2 --json | grep -q '"class":' || fail "tta 2"
ok "exit codes"

# a shell glob of many images (more than the 64 arguments once allowed): one answer each
mkdir -p "$T/many"
for i in $(seq 150); do ln -s "$A" "$T/many/img$i.jpeg"; done
"$RADBATCH" predict --model "$M" "$T/many/"*.jpeg --json > "$T/many.out" || fail "predict of 150 images"
[ "$(grep -c '"class":' "$T/many.out")" = 150 ] || fail "150 images gave $(grep -c '"class":' "$T/many.out") answers"
[ "$(cut -d, -f2- "$T/many.out" | sort -u | wc -l)" = 1 ] || fail "150 copies of one image did not get one answer"
ok "150 images on one command line"
