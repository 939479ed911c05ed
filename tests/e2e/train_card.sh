# labels: train
# What train says and writes when little or nothing is trained: the banner's thread count is
# the one --threads asks for; --epochs 0 (no fine-tuning) leaves an untrained head whose val
# scores do not separate the classes, and the model card then holds no decision threshold
# (never an infinite one, which JSON writes as null) and no best epoch; --epochs 0 with one
# fine-tuning epoch stores a finite threshold and the fine-tuning epoch as the best one.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
args=(train --shards "$T/s64" --weights "$W" --batch_size 16)

# the card as inspect prints it (JSON) without the job text, whitespace removed; a
# non-finite number shows as a value ":null", ":inf" or ":nan" (paths may contain those words)
card() { "$RADBATCH" inspect "$1" | sed -n '/^model card:/,$p' | tail -n +2 | grep -v '^\s*"job":' | tr -d ' \t\n'; }

for t in 1 3; do
    "$RADBATCH" "${args[@]}" --run_dir "$T/e0t$t" --epochs 0 --threads $t > "$T/e0t$t.log" 2>&1 || { cat "$T/e0t$t.log"; fail "--epochs 0 --threads $t"; }
    grep -q "1 rank(s) x $t thread(s)" "$T/e0t$t.log" || fail "--threads $t: banner says $(grep 'rank(s) x' "$T/e0t$t.log")"
done
echo "banner: 1 and 3 threads as asked"

c=$(card "$T/e0t1/model.h5")
case "$c" in *'"epochs_run":0'*) ;; *) fail "--epochs 0: card does not say epochs_run 0";; esac
case "$c" in *:null* | *:inf* | *:-inf* | *:nan* | *:-nan*) fail "--epochs 0: the card holds a non-finite number: $c";; esac
case "$c" in *'"threshold":'*) fail "--epochs 0: a threshold was stored although J = 0: $c";; esac
case "$c" in *'"best":'*) fail "--epochs 0: the card names a best epoch although none ran";; esac
grep -q "no decision threshold" "$T/e0t1.log" || fail "--epochs 0: the log does not say that no threshold was chosen"
ok "--epochs 0: no threshold, no best epoch, nothing non-finite in the card"

"$RADBATCH" "${args[@]}" --run_dir "$T/ft" --epochs 0 --fine_tune_epochs 1 --threads 1 > "$T/ft.log" 2>&1 || { cat "$T/ft.log"; fail "--epochs 0 --fine_tune_epochs 1"; }
c=$(card "$T/ft/model.h5")
case "$c" in *:null* | *:inf* | *:-inf* | *:nan* | *:-nan*) fail "fine-tuning only: the card holds a non-finite number: $c";; esac
case "$c" in *'"epochs_run":1'*) ;; *) fail "fine-tuning only: card does not say epochs_run 1";; esac
case "$c" in *'"best":{"metric":"val_loss","epoch":1'*) ;; *) fail "fine-tuning only: best epoch is not 1: $c";; esac
if grep -q "no decision threshold" "$T/ft.log"; then
    case "$c" in *'"threshold":'*) fail "fine-tuning only: log says no threshold but the card has one";; esac
else
    th=$(printf '%s' "$c" | sed -n 's/.*"threshold":{"value":\([-0-9.eE+]*\),.*/\1/p')
    awk -v t="$th" 'BEGIN { exit !(t != "" && t >= 0 && t <= 1) }' || fail "fine-tuning only: threshold '$th' is not a probability"
fi
ok "--epochs 0 --fine_tune_epochs 1: finite card"
