# labels: mpi
# One error, once: a failure that every rank detects (a bad option, a missing file or
# folder, a weight file that cannot be opened) prints one message on 2 ranks, not one per
# rank, for every command, and the exit code is non-zero (2 for bad flags, 1 otherwise); a
# failure that only some ranks hit is printed once with their numbers.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --val_fraction 0.2 --quiet > /dev/null
N="$T/nonexistent"

# expect_once <exit code> <what> <radbatch args...>
expect_once() {
    local want=$1 what=$2; shift 2
    set +e
    mpirun -n 2 "$RADBATCH" "$@" > "$T/out" 2> "$T/err"
    local rc=$?
    set -e
    local n
    n=$(grep -c '^error: ' "$T/err" || true)
    [ "$rc" = "$want" ] || { cat "$T/err"; fail "$what: exit $rc, expected $want"; }
    [ "$n" = 1 ] || { cat "$T/err"; fail "$what: $n error messages on 2 ranks, expected 1"; }
    echo "$what: one message, exit $rc: $(grep -m1 '^error: ' "$T/err" | cut -c1-100)"
}

expect_once 2 "train, unknown option" train --shards "$T/s32" --run_dir "$T/r" --bogus 1
expect_once 2 "train, bad value" train --shards "$T/s32" --run_dir "$T/r" --epochs many
expect_once 1 "train, missing shards" train --shards "$N" --run_dir "$T/r"
expect_once 1 "train, missing weights" train --shards "$T/s32" --run_dir "$T/r" --epochs 0 --weights "$N.h5"
expect_once 2 "train, missing job file" train "$N.ini"
expect_once 1 "convert, missing input" convert "$N" --out "$T/c"
expect_once 2 "convert, unknown option" convert "$SAMPLE" --out "$T/c" --bogus 1
expect_once 1 "evaluate, missing model" evaluate --model "$N.h5" --data "$T/s32" --out "$T/e"
expect_once 1 "infer, missing model and input" infer --model "$N.h5" --input "$N" --out "$T/i"
expect_once 1 "infer, no model" infer --input "$SAMPLE" --out "$T/i"
expect_once 1 "predict, missing model" predict --model "$N.h5" "$SAMPLE/NORMAL"
expect_once 1 "inspect, missing file" inspect "$N"
ok "every command: one message for a failure all ranks detect"

# a warning every rank would give is given once too
mpirun -n 2 "$RADBATCH" train --shards "$T/s32" --run_dir "$T/nw" --epochs 0 --quiet > "$T/out" 2> "$T/err" || { cat "$T/err"; fail "train without weights"; }
[ "$(grep -c 'no pretrained weights' "$T/err")" = 1 ] || { cat "$T/err"; fail "the missing-weights warning is not given once on 2 ranks"; }
ok "train without weights on 2 ranks: one warning"

# A failure only some ranks hit (a folder that one node does not see; here the ranks of an
# MPMD launch get different paths) is printed once by rank 0, naming those ranks.
good=(train --shards "$T/s32" --run_dir "$T/mp" --epochs 0 --quiet)
bad=(train --shards "$N" --run_dir "$T/mp" --epochs 0 --quiet)
for spec in "1 1 [rank 1]" "1 2 [ranks 1,2]"; do
    read -r ng nb tag <<<"$spec"
    set +e
    mpirun -n "$ng" "$RADBATCH" "${good[@]}" : -n "$nb" "$RADBATCH" "${bad[@]}" > "$T/out" 2> "$T/err"
    rc=$?
    set -e
    [ $rc = 1 ] || { cat "$T/err"; fail "rank-local failure: exit $rc"; }
    [ "$(grep -c '^error: ' "$T/err")" = 1 ] || { cat "$T/err"; fail "rank-local failure: not one message"; }
    grep -qF "error: $tag shards folder: $N/index.json: cannot open" "$T/err" || { cat "$T/err"; fail "rank-local failure: the ranks are not named as $tag"; }
    echo "$((ng + nb)) ranks, $nb failing: $(grep '^error: ' "$T/err" | cut -c1-60)"
done
ok "a failure of some ranks: one message naming them"
