# labels: infer mpi invariance
# Exactly-once rows: runs killed with SIGKILL after some committed chunks (on rank 0 or on
# another rank), in the middle of the listing, twice in a row, and in the middle of the
# merge, then rerun with the same command, end byte-identical to an uninterrupted run, with
# no duplicate and no missing row. SIGTERM stops after the current chunk with exit 75 and
# the rerun finishes the same way. A listing that did not finish is redone against an
# archive that changed meanwhile: parts of chunks whose contents moved are redone.
source "$(dirname "$0")/lib.sh"
W=work # the name of a run folder's subfolder of chunk and part files
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
"$RADBATCH" train --shards "$T/s32" --run_dir "$T/m" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet > /dev/null
cp -r "$SAMPLE" "$T/arch"
args=(infer --model "$T/m/model.h5" --input "$T/arch" --chunk 8 --batch 4 --quiet)
OUTS="predictions.csv flagged.csv errors.csv index.csv index.idx report.html"

"$RADBATCH" "${args[@]}" --out "$T/clean" > "$T/clean.log" 2>&1 || { cat "$T/clean.log"; fail "clean run"; }
[ "$(wc -l < "$T/clean/predictions.csv")" = 200 ] || fail "clean run: expected 199 rows"

same_as_clean() {
    local d=$1 f
    for f in $OUTS; do cmp -s "$T/clean/$f" "$d/$f" || fail "$f of $d differs from the uninterrupted run"; done
    [ -z "$(cut -d, -f1 "$d/predictions.csv" | sort | uniq -d)" ] || fail "$d: duplicate rows"
    [ "$(wc -l < "$d/predictions.csv")" = 200 ] || fail "$d: missing rows"
}
# killed RUN_NAME RANKS ENV...: a run that must die
killed() {
    local name=$1 n=$2; shift 2
    set +e
    if [ "$n" = 1 ]; then (env "$@" "$RADBATCH" "${args[@]}" --out "$T/$name" > "$T/$name.k.log" 2>&1)
    else env "$@" mpirun -n "$n" "$RADBATCH" "${args[@]}" --out "$T/$name" > "$T/$name.k.log" 2>&1; fi
    local rc=$?
    set -e
    [ $rc -ne 0 ] || fail "$name: the killed run exited 0"
}
rerun() {
    local name=$1 n=$2
    rb_run "$n" "${args[@]}" --out "$T/$name" > "$T/$name.r.log" 2>&1 || { cat "$T/$name.r.log"; fail "$name: rerun"; }
}

for n in 1 2; do
    # after 3 committed chunks on rank 0; on 2 ranks, on rank 1
    # (the other rank pauses 200 ms after each chunk, so rank 1 surely commits 3 chunks first,
    # whatever the machine's speed)
    killed "k3-$n" $n RADBATCH_TEST_KILL_AFTER_CHUNKS=3 RADBATCH_TEST_KILL_RANK=$((n - 1)) RADBATCH_TEST_OTHERS_CHUNK_MS=200
    [ ! -f "$T/k3-$n/predictions.csv" ] || fail "a killed run wrote predictions.csv"
    parts=$(ls "$T/k3-$n/work" | grep -c '^part-' || true)
    # (on 2 ranks rank 0 may have done every other chunk before rank 1 died)
    [ "$parts" -ge 3 ] && { [ $n = 2 ] || [ "$parts" -lt 25 ]; } || fail "k3-$n: $parts part files after the kill"
    rerun "k3-$n" $n
    same_as_clean "$T/k3-$n"
    echo "$n rank(s): killed after 3 chunks with $parts parts done: rerun identical"

    # killed twice, then finished
    killed "kk-$n" $n RADBATCH_TEST_KILL_AFTER_CHUNKS=2
    killed "kk-$n" $n RADBATCH_TEST_KILL_AFTER_CHUNKS=4
    rerun "kk-$n" $n
    same_as_clean "$T/kk-$n"

    # in the middle of the listing (after 5 chunk files)
    killed "kl-$n" $n RADBATCH_TEST_KILL_IN_LISTING=5
    [ ! -f "$T/kl-$n/$W/listing.json" ] || grep -q '"complete":[[:space:]]*false' "$T/kl-$n/$W/listing.json" || fail "kl-$n: listing complete after the kill"
    rerun "kl-$n" $n
    same_as_clean "$T/kl-$n"

    # in the middle of the merge (after 100 rows), then again after the merge had finished
    killed "km-$n" $n RADBATCH_TEST_KILL_IN_MERGE=100
    [ ! -f "$T/km-$n/summary.json" ] || fail "km-$n: summary.json written by a run killed in the merge"
    for f in $OUTS; do [ ! -e "$T/km-$n/$f" ] || fail "km-$n: a run killed in the merge left a final-named $f"; done
    rerun "km-$n" $n
    same_as_clean "$T/km-$n"
    grep -q '"images_this_run":[[:space:]]*0,' "$T/km-$n/summary.json" || fail "km-$n: the rerun after a merge kill predicted images again"
    rerun "km-$n" $n
    same_as_clean "$T/km-$n"
    # a finished folder rerun and killed in the merge is unfinished again: no marker, no outputs
    killed "km-$n" $n RADBATCH_TEST_KILL_IN_MERGE=100
    [ ! -f "$T/km-$n/summary.json" ] || fail "km-$n: the marker of the earlier run survived a killed rerun"
    for f in $OUTS; do [ ! -e "$T/km-$n/$f" ] || fail "km-$n: a killed rerun left the final-named $f of the earlier run"; done
    # killed after the outputs are renamed into place, before the marker
    killed "kp-$n" $n RADBATCH_TEST_KILL_MERGE=publish
    [ ! -f "$T/kp-$n/summary.json" ] || fail "kp-$n: summary.json written by a run killed before it"
    rerun "kp-$n" $n
    same_as_clean "$T/kp-$n"
    grep -q '"complete":[[:space:]]*true' "$T/kp-$n/summary.json" || fail "kp-$n: no complete summary.json after the rerun"

    # SIGTERM after 2 chunks: exit 75, then the rerun finishes
    set +e
    RADBATCH_TEST_TERM_AFTER_CHUNKS=2 rb_run $n "${args[@]}" --out "$T/term-$n" > "$T/term-$n.log" 2>&1
    rc=$?
    set -e
    [ $rc = 75 ] || { cat "$T/term-$n.log"; fail "SIGTERM: exit $rc, expected 75"; }
    [ ! -f "$T/term-$n/predictions.csv" ] || fail "SIGTERM run wrote predictions.csv"
    rerun "term-$n" $n
    same_as_clean "$T/term-$n"
    echo "$n rank(s): kill in listing, twice, in merge and SIGTERM: reruns identical"
done

# a listing that did not finish, and the archive changed before the rerun: a file that
# sorts first shifts every chunk, so every part done before is stale and must be redone
killed "shift" 1 RADBATCH_TEST_KILL_AFTER_CHUNKS=6
rm -f "$T/shift/$W/listing.json"
cp "$SAMPLE/NORMAL/IM-0115-0001.jpeg" "$T/arch/NORMAL/AAA-first.jpeg"
rerun "shift" 2
"$RADBATCH" "${args[@]}" --out "$T/clean2" > /dev/null 2>&1 || fail "clean run of the changed archive"
for f in $OUTS; do cmp -s "$T/clean2/$f" "$T/shift/$f" || fail "relisting a changed archive: $f differs"; done
[ "$(wc -l < "$T/shift/predictions.csv")" = 201 ] || fail "relisting: expected 200 rows"
ok "kill -9 and SIGTERM at any point resume to identical outputs"
