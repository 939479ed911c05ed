# labels: convert mpi fault
# convert on a full disk (small tmpfs mounts): exit 1 within seconds on every rank, one
# error naming the shard or report that did not fit, no crash (HDF5 used to die of SIGSEGV
# in its exit handler after a failed H5Fclose), every file under a final name complete, no
# temp files left; after space is freed the same command keeps the finished shards and ends
# byte-identical to a run that never ran out of space. Needs root for the mounts (else 77).
source "$(dirname "$0")/full_disk.bash"
source "$(dirname "$0")/lib.sh"
M="$T/mnt"
fd_mount "$M" 64k # SKIP early when mounts are not possible
fd_umount "$M"

# pages a folder's files take on tmpfs
pages_kib() { local s=0 f; for f in "$@"; do s=$((s + ($(stat -c %s "$f") + 4095) / 4096 * 4)); done; echo $s; }

# finished files of a failed run are complete: equal to the clean run's
same_as_far_as_written() {
    local out=$1 clean=$2 f
    for f in "$out"/*; do
        [ -f "$f" ] || continue
        case $(basename "$f") in index.json) continue ;; esac # names the output folder
        cmp -s "$f" "$clean/$(basename "$f")" || fail "$f differs from the clean run's (a half-written file?)"
    done
}

for case in "1 32 default" "2 32 0.1"; do
    read -r n size shard <<< "$case"
    args=(convert "$SAMPLE" --height "$size" --width "$size" --group_regex "$GROUPS_RE")
    [ "$shard" = default ] || args+=(--shard_size_mb "$shard")
    clean="$T/clean$n"
    rb_run 1 "${args[@]}" --quiet --out "$clean" > "$T/clean$n.log" 2>&1 || { cat "$T/clean$n.log"; fail "clean run"; }
    shards_kib=$(pages_kib "$clean"/*.h5)
    # too small for the shards; room for the shards but not for the reports
    for kib in $((shards_kib * 2 / 3)) $((shards_kib + 4)); do
        name="n$n-${kib}k"
        fd_mount "$M" "${kib}k"
        FD_MAX_ERRORS=$n fd_expect_full "$name" "$M/out/" "$n" "${args[@]}" --quiet --out "$M/out"
        [ ! -f "$M/out/index.json" ] || fail "$name: index.json written by a failed run"
        same_as_far_as_written "$M/out" "$clean"
        fd_no_temp "$M"
        have=$(find "$M/out" -name "*.h5" 2> /dev/null | wc -l || true)
        fd_grow "$M" 4m
        rb_run "$n" "${args[@]}" --out "$M/out" > "$T/$name.rerun.log" 2>&1 || { cat "$T/$name.rerun.log"; fail "$name: rerun with space"; }
        if [ "$have" -gt 0 ]; then
            kept=$(grep -o '([0-9]* kept' "$T/$name.rerun.log" | tr -dc 0-9)
            [ "${kept:-0}" -ge "$have" ] || fail "$name: $have shards were finished, the rerun kept ${kept:-0}"
        fi
        same_shards "$clean" "$M/out"
        fd_no_temp "$M"
        fd_umount "$M"
        echo "$n rank(s), ${kib} KiB: rerun with more space identical to the clean run"
    done
done
ok "convert on a full disk fails cleanly and resumes"
