# labels: convert mpi
# The same inputs give byte-identical shards on 1, 2 and 3 ranks: with many small shards
# in three splits (train, val and a test_fraction test split),
# with one large shard that every rank decodes a part of (sent to its writer), and with
# more ranks than records.
source "$(dirname "$0")/lib.sh"
for n in 1 2 3; do
    rb_run $n convert "$SAMPLE" --out "$T/r$n" --height 64 --width 64 --group_regex "$GROUPS_RE" \
        --test_fraction 0.15 --shard_size_mb 0.1 --quiet > "$T/log$n" 2>&1 || { cat "$T/log$n"; fail "convert on $n ranks"; }
    rb_run $n convert "$SAMPLE" --out "$T/big$n" --height 64 --width 64 --val_fraction 0 \
        --quiet > "$T/logbig$n" 2>&1 || { cat "$T/logbig$n"; fail "one-shard convert on $n ranks"; }
done
[ "$(ls "$T/r1"/*.h5 | wc -l)" -ge 6 ] || fail "expected several shards"
ls "$T/r1"/test-*.h5 > /dev/null || fail "expected test shards (test_fraction)"
[ "$(ls "$T/big1"/*.h5 | wc -l)" -eq 1 ] || fail "expected one shard"
same_shards "$T/r1" "$T/r2"
same_shards "$T/r1" "$T/r3"
same_shards "$T/big1" "$T/big2"
same_shards "$T/big1" "$T/big3"
"$RADBATCH" inspect "$T/big3" --verify > "$T/verify.log" 2>&1 || { cat "$T/verify.log"; fail "verify of the one-shard output"; }

# two records, four ranks: two ranks decode nothing
normal=("$SAMPLE"/NORMAL/*)
pneumonia=("$SAMPLE"/PNEUMONIA/*)
printf '%s,NORMAL\n%s,PNEUMONIA\n' "${normal[0]}" "${pneumonia[0]}" > "$T/two.csv"
for n in 1 4; do
    rb_run $n convert "$T/two.csv" --out "$T/two$n" --height 32 --width 32 --val_fraction 0 \
        --quiet > "$T/logtwo$n" 2>&1 || { cat "$T/logtwo$n"; fail "two-record convert on $n ranks"; }
done
same_shards "$T/two1" "$T/two4"
ok "1, 2, 3 (and 4) ranks give identical shards"
