# labels: infer
# Other CPUs, other OpenBLAS kernels: the same model screens the sample under the host's
# kernels and under OPENBLAS_CORETYPE=Haswell (AVX2) and Sandybridge (AVX). Results are
# not bit-identical across kernel families (their GEMMs sum in other orders), but every
# probability agrees within the bound docs/engine.md states (|dp| <= 1e-5), and so does
# every decision but those of images within that bound of the threshold (the threshold is
# itself a validation image's probability, so one such image is expected). Within one family an image's result never
# depends on its batch: that is test_batch_invariance and infer_ranks, which CI runs under
# each family.
source "$(dirname "$0")/lib.sh"
BOUND=1e-5
"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --quiet > /dev/null
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/m" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 \
    --batch_size 16 --quiet > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
args=(infer --model "$T/m/model.h5" --input "$SAMPLE" --chunk 16 --batch 8 --quiet)
"$RADBATCH" "${args[@]}" --out "$T/host" > "$T/host.log" 2>&1 || { cat "$T/host.log"; fail "host kernels"; }
[ "$(wc -l < "$T/host/predictions.csv")" = 200 ] || fail "expected 199 predictions"
thr=$(grep -o '"threshold":[[:space:]]*[0-9.e-]*' "$T/host/summary.json" | head -1 | sed 's/.*:[[:space:]]*//')
[ -n "$thr" ] || fail "no threshold in summary.json"
for core in Haswell Sandybridge; do
    OPENBLAS_CORETYPE=$core "$RADBATCH" "${args[@]}" --out "$T/$core" > "$T/$core.log" 2>&1 \
        || { cat "$T/$core.log"; fail "$core kernels"; }
    # columns: path,size,mtime,predicted_label,prob_NORMAL,prob_PNEUMONIA,flagged
    paste -d, <(tail -n +2 "$T/host/predictions.csv") <(tail -n +2 "$T/$core/predictions.csv") |
        awk -F, -v b=$BOUND -v thr="$thr" -v core=$core '
            $1 != $8 { print "row " NR ": " $1 " vs " $8; bad = 1 }
            { for (c = 5; c <= 6; c++) { d = $c - $(c + 7); d = d < 0 ? -d : d; if (d > max) max = d }
              if ($4 != $11 || $7 != $14) {
                  near = $6 - thr; near = near < 0 ? -near : near
                  print core ": decision differs for " $1 " (p " $6 ", threshold " thr ")"
                  if (near > b) bad = 1 } }
            END { printf "%s: max |dp| %.2g over %d images (bound %s)\n", core, max, NR, b
                  if (max > b) bad = 1
                  exit bad }' || fail "$core kernels: probabilities or decisions differ beyond $BOUND"
done
ok "three kernel families agree within $BOUND"
