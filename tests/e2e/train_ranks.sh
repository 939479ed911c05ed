# labels: train mpi invariance
# Rank-count invariance: the same job on 1, 2 and 4 ranks (same global batch) ends with the
# same weights and history, within float summation order. Two cases: MobileNetV2 with a
# frozen base (pretrained weights, dropout in the head), and the seed-001 CNN trained in
# full with sync_bn (BatchNorm statistics of the global batch).
# Tolerance: relative 1e-4 of the largest weight, 1e-4 absolute on history values. After
# one step ranks differ by float rounding only (~1e-8). Training amplifies rounding: in the
# frozen-base case hardly at all (1e-10 after two epochs), in full training of the CNN
# quickly, because a rounding-level change can flip a MaxPool argmax or a ReLU and send a
# whole gradient elsewhere (7e-6 after 3 SGD steps, 1e-4 after 5, 1e-3 after an epoch at
# lr 1e-3; the same growth appears between 1 and 2 threads of a single process, and Adam's
# first steps amplify more since m/sqrt(v) turns a rounding-level gradient into a full-size
# step). So the CNN case compares after 3 SGD steps. A real rank dependence (per-rank
# dropout masks or BN statistics, a dropped sample) shows up as 1e-2 and more.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"

check_same() { # run_a run_b
    "$RADBATCH" inspect "$1/model.h5" --diff "$2/model.h5" > "$T/diff" || fail "inspect --diff"
    rel=$(sed -n 's/.*relative \([0-9.e+-]*\).*/\1/p' "$T/diff")
    awk -v r="$rel" 'BEGIN { exit !(r <= 1e-4) }' || fail "$1 vs $2: weights differ: $(cat "$T/diff")"
    paste -d, "$1/history.csv" "$2/history.csv" | tail -n +2 | awk -F, '{ n = NF / 2; for (i = 3; i < n; i++) { d = $i - $(i + n); if (d < 0) d = -d; if (d > 1e-4) { print "history column " i ": " $i " vs " $(i + n); bad = 1 } } } END { exit bad }' \
        || fail "$1 vs $2: history differs"
    echo "$(basename "$1") vs $(basename "$2"): $(cat "$T/diff")"
}

for n in 1 2 4; do
    rb_run $n train --shards "$T/s96" --run_dir "$T/mnv2-$n" --backbone mobilenetv2 --weights "$W" \
        --epochs 2 --batch_size 16 --quiet > "$T/mnv2-$n.log" 2>&1 || { cat "$T/mnv2-$n.log"; fail "mobilenetv2 on $n ranks"; }
    rb_run $n train --shards "$T/s64" --run_dir "$T/cnn-$n" --backbone cnn --sync_bn true --epochs 1 \
        --batch_size 16 --head_dropout 0.2 --horizontal_flip true --rotation 10 --optimizer sgd --learning_rate 1e-3 --max_steps 3 --quiet \
        > "$T/cnn-$n.log" 2>&1 || { cat "$T/cnn-$n.log"; fail "cnn on $n ranks"; }
done
# without sync_bn, per-rank BN statistics: the run must still finish with one model on
# every rank (the moving statistics are averaged at each epoch end)
rb_run 2 train --shards "$T/s64" --run_dir "$T/cnn-local" --backbone cnn --epochs 2 --batch_size 16 --quiet \
    > "$T/cnn-local.log" 2>&1 || { cat "$T/cnn-local.log"; fail "per-rank BatchNorm run"; }
for n in 2 4; do
    check_same "$T/mnv2-1" "$T/mnv2-$n"
    check_same "$T/cnn-1" "$T/cnn-$n"
done
ok "1, 2 and 4 ranks train the same model"
