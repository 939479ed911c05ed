# labels: infer mpi fault
# infer on a full disk (small tmpfs mounts) on 1 and 2 ranks: exit 1 within seconds on every
# rank with one error naming the chunk, part, listing or output file that did not fit, no
# crash. At 32 KiB the listing itself fails and its listing.json cannot be written either;
# the workers used to wait for it forever. Committed part files and outputs under their
# final names are complete (equal to a clean run's), and after space is freed the same
# command resumes from the committed chunks and ends byte-identical to a clean run.
# Needs root for the mounts (else 77).
source "$(dirname "$0")/full_disk.bash"
WORK_DIR=work # infer keeps its part files in <out>/work
source "$(dirname "$0")/lib.sh"
M="$T/mnt"
fd_mount "$M" 64k # SKIP early when mounts are not possible
fd_umount "$M"

"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
"$RADBATCH" train --shards "$T/s32" --run_dir "$T/m" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet > /dev/null
args=(infer --model "$T/m/model.h5" --input "$SAMPLE" --batch 8 --quiet)
OUTS="predictions.csv flagged.csv errors.csv index.csv index.idx report.html"
for chunk in 16 256; do
    "$RADBATCH" "${args[@]}" --chunk $chunk --out "$T/clean$chunk" > "$T/clean$chunk.log" 2>&1 ||
        { cat "$T/clean$chunk.log"; fail "clean run"; }
done

# ranks, KiB, chunk: at 32 KiB with chunks of 256 the one chunk file fits, listing.json not
for case in "1 32 256" "2 32 256" "1 32 16" "1 64 16" "1 128 16" "1 176 16" "2 96 16" "2 128 16"; do
    read -r n kib chunk <<< "$case"
    name="n$n-${kib}k-c$chunk"
    clean="$T/clean$chunk"
    fd_mount "$M" "${kib}k"
    FD_MAX_ERRORS=$n fd_expect_full "$name" "$M/run/" "$n" "${args[@]}" --chunk $chunk --out "$M/run"
    # what was committed is whole: part files and outputs equal to the clean run's
    for f in "$M/run/$WORK_DIR"/part-*.csv; do
        [ -f "$f" ] || continue
        cmp -s "$f" "$clean/$WORK_DIR/$(basename "$f")" || fail "$name: $(basename "$f") differs from the clean run's"
    done
    for f in $OUTS; do
        [ ! -f "$M/run/$f" ] || cmp -s "$M/run/$f" "$clean/$f" || fail "$name: $f differs from the clean run's"
    done
    fd_no_temp "$M"
    parts=$(find "$M/run/work" -name 'part-*.csv' 2> /dev/null | wc -l || true)
    fd_grow "$M" 4m
    rb_run "$n" "${args[@]}" --chunk $chunk --out "$M/run" > "$T/$name.rerun.log" 2>&1 ||
        { cat "$T/$name.rerun.log"; fail "$name: rerun with space"; }
    for f in $OUTS; do cmp -s "$clean/$f" "$M/run/$f" || fail "$name: $f of the rerun differs from the clean run"; done
    fd_no_temp "$M"
    fd_umount "$M"
    echo "$n rank(s), ${kib} KiB, chunk $chunk: failed with $parts chunks committed; rerun identical to the clean run"
done
ok "infer on a full disk fails cleanly and resumes"
