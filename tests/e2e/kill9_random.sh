# labels: mpi
# kill -9 at random points of convert, train, evaluate and infer (2 ranks; the ranks are
# killed after a random 0.1 s up to the uninterrupted run's time (at most 3 s), fixed seed,
# three times per command): a folder with
# summary.json is always complete and identical to an uninterrupted run's, and rerunning the
# same command (train with --resume true) ends identical to the uninterrupted run, with the
# marker.
source "$(dirname "$0")/lib.sh"
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
KILLS=${RADBATCH_KILL9_ROUNDS:-3}

cmd_convert=(convert "$SAMPLE" --height 32 --width 32 --shard_size_mb 0.05 --group_regex "$GROUPS_RE" --quiet)
cmd_train=(train --backbone mobilenetv2 --weights "$W" --epochs 3 --batch_size 16 --checkpoint_every_steps 4 --resume true --quiet)
cmd_evaluate=(evaluate --bootstrap 200 --quiet)
cmd_infer=(infer --input "$SAMPLE" --chunk 8 --batch 4 --quiet)

# the outputs of a finished folder of each command, compared byte for byte
same() {
    local what=$1 a=$2 b=$3 f
    [ -f "$b/summary.json" ] && grep -q '"complete":[[:space:]]*true' "$b/summary.json" || fail "$b: no complete summary.json"
    case $what in
        convert) same_shards "$a" "$b" ;;
        train)
            "$RADBATCH" inspect "$a/model.h5" --diff "$b/model.h5" > "$T/diff.log" 2>&1 || { cat "$T/diff.log"; fail "inspect --diff $b"; }
            grep -q 'diff: 0 of ' "$T/diff.log" || { cat "$T/diff.log"; fail "$b/model.h5 differs from the uninterrupted run's"; } ;;
        evaluate)
            for f in classification_report.txt confusion_matrix.csv predictions.csv roc.csv; do
                cmp -s "$a/$f" "$b/$f" || fail "$b/$f differs from the uninterrupted run's"
            done ;;
        infer)
            for f in predictions.csv flagged.csv errors.csv index.csv index.idx report.html; do
                cmp -s "$a/$f" "$b/$f" || fail "$b/$f differs from the uninterrupted run's"
            done ;;
    esac
}
run() { # COMMAND OUT: the command on 2 ranks
    local what=$1 out=$2 extra=()
    local -n args="cmd_$what"
    case $what in
        convert|evaluate|infer) extra=(--out "$out") ;;
        train) extra=(--run_dir "$out") ;;
    esac
    case $what in
        train) extra+=(--shards "$T/clean-convert") ;;
        evaluate) extra+=(--model "$T/clean-train/model.h5" --data "$T/clean-convert") ;;
        infer) extra+=(--model "$T/clean-train/model.h5") ;;
    esac
    mpirun -n 2 "$RADBATCH" "${args[@]}" "${extra[@]}"
}

RANDOM=2024
for what in convert train evaluate infer; do
    t0=$(date +%s%N)
    run $what "$T/clean-$what" > "$T/clean-$what.log" 2>&1 || { cat "$T/clean-$what.log"; fail "uninterrupted $what"; }
    # kill at a random time in 0.1 s .. the uninterrupted run's time (at most 3 s)
    span=$((($(date +%s%N) - t0) / 1000000))
    [ $span -le 3000 ] || span=3000
    [ $span -ge 200 ] || span=200
    out="$T/killed-$what"
    for round in $(seq "$KILLS"); do
        ms=$((100 + RANDOM % (span - 99)))
        run $what "$out" > "$T/k-$what-$round.log" 2>&1 &
        pid=$!
        sleep "$(awk -v m=$ms 'BEGIN { printf "%.3f", m / 1000 }')"
        kill_tree KILL "$pid" # mpirun and the ranks it started
        set +e
        wait "$pid"
        rc=$?
        set -e
        if [ -e "$out/summary.json" ]; then
            same $what "$T/clean-$what" "$out" # finished before the kill: it must be whole
            echo "$what round $round: killed after $ms ms: already finished (exit $rc), identical"
        else
            echo "$what round $round: killed after $ms ms (exit $rc): no summary.json"
        fi
    done
    run $what "$out" > "$T/r-$what.log" 2>&1 || { cat "$T/r-$what.log"; fail "$what: the rerun after the kills"; }
    same $what "$T/clean-$what" "$out"
    ok "$what: killed $KILLS times at random points, the rerun is identical to an uninterrupted run"
done
