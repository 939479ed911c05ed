# labels: convert mpi
# The same inputs give byte-identical shards on 1, 2 and 3 ranks.
source "$(dirname "$0")/lib.sh"
for n in 1 2 3; do
    rb_run $n convert "$SAMPLE" --out "$T/r$n" --height 64 --width 64 --group_regex "$GROUPS_RE" \
        --shard_size_mb 0.1 --quiet > "$T/log$n" 2>&1 || { cat "$T/log$n"; fail "convert on $n ranks"; }
done
[ "$(ls "$T/r1"/*.h5 | wc -l)" -ge 6 ] || fail "expected several shards"
same_shards "$T/r1" "$T/r2"
same_shards "$T/r1" "$T/r3"
ok "1, 2 and 3 ranks give identical shards"
