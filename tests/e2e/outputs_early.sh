# Output folders before any compute: a run whose inputs are missing leaves no output folder
# behind (also not the parents it would have created); an output folder that cannot be
# written (immutable for root, read-only for others) fails every command at once, with a
# message naming the folder, instead of after the compute.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
"$RADBATCH" train --shards "$T/s32" --run_dir "$T/m" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --max_steps 2 --batch_size 16 --quiet > /dev/null
M="$T/m/model.h5"

# fails_clean NAME COMMAND ARGS...: exit 1 and no $T/NAME left
fails_clean() {
    local name=$1 rc; shift
    set +e
    "$RADBATCH" "$@" > "$T/$name.log" 2>&1
    rc=$?
    set -e
    [ $rc = 1 ] || { cat "$T/$name.log"; fail "$name: exit $rc, expected 1"; }
    [ ! -e "$T/$name" ] || { ls -R "$T/$name"; fail "$name: a failed run left its output folder"; }
}
fails_clean infer-nomodel infer --model "$T/missing.h5" --input "$SAMPLE" --out "$T/infer-nomodel/nightly"
fails_clean infer-noinput infer --model "$M" --input "$T/missing-archive" --out "$T/infer-noinput"
fails_clean train-noshards train --shards "$T/missing-shards" --run_dir "$T/train-noshards"
fails_clean train-noweights train --shards "$T/s32" --weights "$T/missing.h5" --run_dir "$T/train-noweights" --quiet
fails_clean eval-nomodel evaluate --model "$T/missing.h5" --data "$T/s32" --out "$T/eval-nomodel"
fails_clean eval-nodata evaluate --model "$M" --data "$T/missing-shards" --out "$T/eval-nodata"
fails_clean convert-noinput convert "$T/missing-images" --out "$T/convert-noinput"
# 2 ranks
set +e
mpirun -n 2 "$RADBATCH" infer --model "$T/missing.h5" --input "$SAMPLE" --out "$T/infer-nomodel2" > "$T/n2.log" 2>&1
rc=$?
set -e
[ $rc = 1 ] && [ ! -e "$T/infer-nomodel2" ] || { cat "$T/n2.log"; fail "infer on 2 ranks with a missing model: exit $rc or folder left"; }
ok "missing inputs: exit 1, no output folder left"

# evaluate --run_dir takes only a finished training run (its summary.json)
cp -r "$T/m" "$T/unfinished"
rm "$T/unfinished/summary.json"
fails_clean unfinished/evaluate evaluate --run_dir "$T/unfinished" --data "$T/s32"
grep -q "not a finished training run" "$T/unfinished/evaluate.log" || { cat "$T/unfinished/evaluate.log"; fail "evaluate of an unfinished run: no clear message"; }
"$RADBATCH" evaluate --run_dir "$T/m" --data "$T/s32" --bootstrap 0 --quiet > /dev/null || fail "evaluate --run_dir of a finished run"
grep -q '"complete":[[:space:]]*true' "$T/m/evaluate/summary.json" || fail "evaluate wrote no summary.json"
ok "evaluate --run_dir: an unfinished training run is refused"

# an output folder that exists but cannot be written
lock() { mkdir -p "$1"; if [ "$(id -u)" = 0 ]; then chattr +i "$1"; else chmod 555 "$1"; fi; }
unlock() { if [ "$(id -u)" = 0 ]; then chattr -i "$1" 2>/dev/null || true; else chmod 755 "$1"; fi; }
if [ "$(id -u)" = 0 ] && ! { mkdir -p "$T/probe" && chattr +i "$T/probe" 2>/dev/null; }; then
    echo "SKIP: running as root where chattr +i is not allowed: cannot make a folder unwritable"; exit 77
fi
unlock "$T/probe"
trap 'unlock "$T/ro"' EXIT
lock "$T/ro"
# fast_fail NAME COMMAND ARGS...: exit 1 within 5 s naming the folder
fast_fail() {
    local name=$1 rc t0 t1; shift
    t0=$(date +%s.%N)
    set +e
    "$RADBATCH" "$@" > "$T/$name.log" 2>&1
    rc=$?
    set -e
    t1=$(date +%s.%N)
    [ $rc = 1 ] || { cat "$T/$name.log"; fail "$name: exit $rc, expected 1"; }
    grep -q "$T/ro.*not writable" "$T/$name.log" || { cat "$T/$name.log"; fail "$name: the message does not name the folder"; }
    awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 5) }' || fail "$name: took $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') s to fail"
    echo "$name: failed in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
}
fast_fail train-ro train --shards "$T/s32" --run_dir "$T/ro" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 50 --batch_size 16 --quiet
fast_fail eval-ro evaluate --model "$M" --data "$T/s32" --out "$T/ro" --bootstrap 100000 --tta 2 --quiet
fast_fail infer-ro infer --model "$M" --input "$SAMPLE" --out "$T/ro" --tta 2 --quiet
fast_fail convert-ro convert "$SAMPLE" --out "$T/ro" --quiet
fast_fail convert-ro-sub convert "$SAMPLE" --out "$T/ro/sub/dir" --quiet
[ -z "$(ls -A "$T/ro")" ] || fail "something was written into the locked folder"
ok "unwritable output folder: every command fails before computing"
