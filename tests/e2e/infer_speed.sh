# labels: mpi
# infer's speed line and summary.json's seconds are the run's time, not one rank's: on 2
# ranks the sample's 199 images make one chunk, so one rank predicts them all while the
# other finds no work and ends its loop at once. Five runs (either rank may get the chunk):
# seconds in summary.json must be at least 30 % of the process's measured wall time
# (prediction dominates it at 96x96; the time of the idle rank was 0.004 s of ~2 s).
source "$(dirname "$0")/lib.sh"
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --quiet > /dev/null
"$RADBATCH" train --shards "$T/s96" --run_dir "$T/m" --backbone mobilenetv2 --weights "$W" --epochs 0 --quiet > /dev/null
for i in 1 2 3 4 5; do
    t0=$(date +%s%N)
    mpirun -n 2 "$RADBATCH" infer --model "$T/m/model.h5" --input "$SAMPLE" --out "$T/i$i" --threads 1 > "$T/i$i.log" 2>&1 ||
        { cat "$T/i$i.log"; fail "infer run $i"; }
    wall=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    secs=$(tr -d ' \t\n' < "$T/i$i/summary.json" | grep -o '"seconds":[0-9.e+-]*' | cut -d: -f2)
    line=$(grep "decoded and predicted in" "$T/i$i.log")
    echo "run $i: wall $wall s, summary.json seconds $secs; $line"
    awk -v s="$secs" -v w="$wall" 'BEGIN { exit !(s >= 0.3 * w) }' ||
        fail "run $i: summary.json seconds $secs < 30 % of the wall time $wall s"
    # the line says the same seconds and the images/s that follow from them
    echo "$line" | awk -v s="$secs" '{ for (i = 1; i <= NF; i++) if ($i == "in") t = $(i + 1); r = substr($0, index($0, "(") + 1) + 0
        exit !(t + 0.05 >= s && t - 0.05 <= s && r <= 199 / s * 1.01 + 0.1 && r >= 199 / s * 0.99 - 0.1) }' ||
        fail "run $i: the speed line disagrees with summary.json's $secs s"
done
ok "infer's seconds are the slowest rank's: five runs on 2 ranks"
