# labels: train mpi fault
# train on a full disk (small tmpfs mounts for the run folder) on 1 and 2 ranks: exit 1
# within seconds on every rank, one error naming the checkpoint or best.h5 that did not
# fit, no crash (HDF5 used to die of SIGSEGV in its exit handler after a failed H5Fclose).
# The checkpoints finished before are complete and load, no model.h5 is written, no temp
# files stay; after space is freed, --resume true continues from the last good checkpoint
# and ends bit-identical to a run that never ran out of space. Needs root (else 77).
source "$(dirname "$0")/full_disk.bash"
source "$(dirname "$0")/lib.sh"
M="$T/mnt"
fd_mount "$M" 64k # SKIP early when mounts are not possible
fd_umount "$M"

"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
# a small CNN: model files of about 1 MiB, checkpoints (with Adam's moments) of about 3 MiB
args=(train --shards "$T/s64" --backbone cnn --head_units 16 --epochs 2 --batch_size 16 --learning_rate 1e-3 --quiet)
same_as_clean() {
    local clean=$1 run=$2 name=$3
    "$RADBATCH" inspect "$clean/model.h5" --diff "$run/model.h5" > "$T/$name.diff" 2>&1 || true
    grep -q "^diff: 0 of" "$T/$name.diff" || fail "$name: the resumed model differs from the clean run's: $(cat "$T/$name.diff")"
    cmp -s <(cut -d, -f1-10 "$clean/history.csv") <(cut -d, -f1-10 "$run/history.csv") || fail "$name: history differs"
}

# ranks, MiB, checkpoint_every_steps: 5 MiB holds one checkpoint (step 3) but not the next;
# 0.75 MiB does not hold best.h5 at the end of the first epoch; 6 MiB holds best.h5 and the
# checkpoint of epoch 1 but not those of epoch 2
for case in "1 5 3" "2 5 3" "1 0.75 0" "1 6 0"; do
    read -r n mib every <<< "$case"
    name="n$n-${mib}m-every$every"
    clean="$T/clean-$n-$every"
    [ -d "$clean" ] || rb_run "$n" "${args[@]}" --checkpoint_every_steps "$every" --run_dir "$clean" > "$T/$name.clean.log" 2>&1 ||
        { cat "$T/$name.clean.log"; fail "$name: clean run"; }
    fd_mount "$M" "$(awk "BEGIN { print int($mib * 1024) }")k"
    fd_expect_full "$name" "$M/run/" "$n" "${args[@]}" --checkpoint_every_steps "$every" --run_dir "$M/run"
    grep -q "hint: .*then rerun with --resume true" "$T/$name.log" || fail "$name: the hint does not say --resume true"
    [ ! -e "$M/run/model.h5" ] || fail "$name: model.h5 written by a failed run"
    fd_no_temp "$M"
    if [ "$every" -gt 0 ]; then
        grep -q "ckpt-0000000006.h5: cannot write" "$T/$name.log" || fail "$name: expected the step-6 checkpoint to fail"
        [ -f "$M/run/checkpoints/ckpt-0000000003.DONE" ] || fail "$name: the step-3 checkpoint is not complete"
        [ ! -e "$M/run/checkpoints/ckpt-0000000006.DONE" ] || fail "$name: the failed checkpoint is marked complete"
    elif [ "$mib" = 0.75 ]; then
        grep -q "best.h5: cannot write" "$T/$name.log" || fail "$name: expected best.h5 to fail"
    else
        [ -f "$M/run/checkpoints/ckpt-0000000010.DONE" ] || fail "$name: the epoch-1 checkpoint is not complete"
        [ -f "$M/run/best.h5" ] || fail "$name: no best.h5 from the first epoch"
    fi
    # what is there loads: the files under their final names are whole
    for f in "$M"/run/best.h5 "$M"/run/checkpoints/*.h5; do
        [ -f "$f" ] || continue
        "$RADBATCH" inspect "$f" > "$T/$name.inspect" 2>&1 || { cat "$T/$name.inspect"; fail "$name: $f does not load"; }
    done
    fd_grow "$M" 32m
    rb_run "$n" "${args[@]}" --checkpoint_every_steps "$every" --run_dir "$M/run" --resume true > "$T/$name.resume.log" 2>&1 ||
        { cat "$T/$name.resume.log"; fail "$name: resume with space"; }
    same_as_clean "$clean" "$M/run" "$name"
    fd_no_temp "$M"
    fd_umount "$M"
    echo "$n rank(s), $mib MiB: resumed run bit-identical to the clean run"
done
ok "train on a full disk fails cleanly and resumes"
