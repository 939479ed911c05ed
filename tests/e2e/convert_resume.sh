# labels: convert mpi
# A convert killed with SIGKILL mid-run resumes: finished shards are kept (verified), the
# rest are written, and the result equals an uninterrupted run.
source "$(dirname "$0")/lib.sh"
args=(convert "$SAMPLE" --height 64 --width 64 --group_regex "$GROUPS_RE" --test_fraction 0.15 --shard_size_mb 0.1 --quiet)
rb_run 1 "${args[@]}" --out "$T/clean" > /dev/null 2>&1 || fail "clean run"
for n in 1 2; do
    out="$T/killed$n"
    set +e
    RADBATCH_TEST_KILL_AFTER_SHARDS=2 rb_run $n "${args[@]}" --out "$out" > "$T/kill$n.log" 2>&1
    rc=$?
    set -e
    [ $rc -ne 0 ] || fail "the killed run exited 0"
    [ ! -f "$out/index.json" ] || fail "index.json written by a killed run"
    have=$(ls "$out"/*.h5 2>/dev/null | wc -l)
    [ "$have" -ge 2 ] || fail "expected finished shards after the kill, found $have"
    # a half-written temp file as a crash would leave it
    head -c 1000 "$(ls "$out"/*.h5 | head -1)" > "$out/val-00000-of-00001.h5.tmp.999999"
    rb_run $n convert "$SAMPLE" --height 64 --width 64 --group_regex "$GROUPS_RE" --test_fraction 0.15 --shard_size_mb 0.1 \
        --out "$out" > "$T/resume$n.log" 2>&1 || { cat "$T/resume$n.log"; fail "resume on $n ranks"; }
    grep -q "kept from an earlier run" "$T/resume$n.log" || fail "resume did not report kept shards"
    kept=$(grep -o '([0-9]* kept' "$T/resume$n.log" | tr -dc 0-9)
    [ "$kept" -ge 2 ] || fail "resume kept $kept shards"
    [ ! -e "$out/val-00000-of-00001.h5.tmp.999999" ] || fail "stale temp file left"
    same_shards "$T/clean" "$out"
done
# a damaged finished shard is detected and rebuilt
f=$(ls "$T/killed1"/train-*.h5 | head -1)
size=$(stat -c %s "$f")
printf '\x55\x55\x55\x55' | dd of="$f" bs=1 seek=$((size - 5000)) conv=notrunc 2>/dev/null
"$RADBATCH" "${args[@]}" --out "$T/killed1" > "$T/repair.log" 2>&1 || fail "repair run"
same_shards "$T/clean" "$T/killed1"
ls "$T/clean"/test-*.h5 > /dev/null || fail "no test shards (test_fraction)"
ok "kill -9 and resume give the uninterrupted result"
