# labels: evaluate mpi fault
# evaluate and predict on a full disk (small tmpfs mounts). evaluate, on 1 and 2 ranks:
# exit 1 within seconds on every rank with one error naming the report file that did not
# fit, no crash, no temp files; the reports of an earlier evaluation in the same folder stay
# as they were (each is replaced only by a complete new file); after space is freed the
# same command writes reports byte-identical to a clean run. predict --json redirected to a
# full disk: exit 1 naming the file instead of a silently short result. Needs root (else 77).
source "$(dirname "$0")/full_disk.bash"
source "$(dirname "$0")/lib.sh"
M="$T/mnt"
fd_mount "$M" 64k # SKIP early when mounts are not possible
fd_umount "$M"

"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s32" --run_dir "$T/m" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet > /dev/null
args=(evaluate --model "$T/m/model.h5" --data "$T/s32" --batch_size 8 --quiet)
REPORTS="metrics.json predictions.csv classification_report.txt confusion_matrix.csv roc.csv errors.csv report.html"
"$RADBATCH" "${args[@]}" --out "$T/clean" > "$T/clean.log" 2>&1 || { cat "$T/clean.log"; fail "clean run"; }
same_as_clean() {
    local f
    for f in $REPORTS; do cmp -s "$T/clean/$f" "$1/$f" || fail "$2: $f differs from the clean run's"; done
}

# ranks, KiB: 8 KiB holds two of the small reports, 28 KiB all but report.html
for case in "1 8" "1 28" "2 8" "2 28"; do
    read -r n kib <<< "$case"
    name="n$n-${kib}k"
    fd_mount "$M" "${kib}k"
    fd_expect_full "$name" "$M/ev/" "$n" "${args[@]}" --out "$M/ev"
    for f in $REPORTS; do [ ! -f "$M/ev/$f" ] || cmp -s "$T/clean/$f" "$M/ev/$f" || fail "$name: $f is not whole"; done
    fd_no_temp "$M"
    fd_grow "$M" 1m
    rb_run "$n" "${args[@]}" --out "$M/ev" > "$T/$name.rerun.log" 2>&1 || { cat "$T/$name.rerun.log"; fail "$name: rerun"; }
    same_as_clean "$M/ev" "$name"
    fd_no_temp "$M"

    # an earlier evaluation in the folder, then the disk fills up: its reports stay whole
    dd if=/dev/zero of="$M/filler" bs=4k 2> /dev/null || true
    fd_expect_full "$name-again" "$M/ev/" "$n" "${args[@]}" --out "$M/ev"
    same_as_clean "$M/ev" "$name-again"
    fd_no_temp "$M"
    rm "$M/filler"
    rb_run "$n" "${args[@]}" --out "$M/ev" > "$T/$name.rerun2.log" 2>&1 || { cat "$T/$name.rerun2.log"; fail "$name: rerun 2"; }
    same_as_clean "$M/ev" "$name-again"
    fd_umount "$M"
    echo "$n rank(s), $kib KiB: failed cleanly, earlier reports intact, rerun identical to the clean run"
done

# predict --json into a file on a full disk
images=$(find "$SAMPLE" -name '*.jpeg' | sort | sed -n 1,40p) # sed reads all: no SIGPIPE under pipefail
# shellcheck disable=SC2086
"$RADBATCH" predict --model "$T/m/model.h5" --json true $images > "$T/clean.json" 2> "$T/clean-predict.log" ||
    { cat "$T/clean-predict.log"; fail "predict clean run"; }
fd_mount "$M" 4k
set +e
# shellcheck disable=SC2086
timeout -k 5 "$FD_BOUND" "$RADBATCH" predict --model "$T/m/model.h5" --json true $images > "$M/out.json" 2> "$T/predict.log"
rc=$?
set -e
[ $rc -eq 1 ] || { cat "$T/predict.log"; fail "predict to a full disk: exit code $rc, expected 1"; }
grep -q "^error: predict (standard output): $M/out.json: cannot write: No space left on device" "$T/predict.log" ||
    { cat "$T/predict.log"; fail "predict: the error does not name the output file"; }
fd_umount "$M"
echo "predict --json to a full disk: exit 1 naming the file"
ok "evaluate and predict on a full disk fail cleanly"
