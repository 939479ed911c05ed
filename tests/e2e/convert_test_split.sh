# labels: convert mpi
# test_fraction: convert holds out a test split grouped by patient and stratified like val,
# recorded in index.json and the shards and shown by inspect; the same shards on 1 and 2
# ranks; train never reads it (train_split or val_split = test is refused, exit 2); evaluate
# --split test reports on it. group_regex: convert and inspect say how many files the regex
# matched and how many groups it found, a regex matching under 95 % of the files is warned
# about (stderr and index.json), and an invalid one is an options error (exit 2).
source "$(dirname "$0")/lib.sh"
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
args=(convert "$SAMPLE" --height 32 --width 32 --group_regex "$GROUPS_RE" --test_fraction 0.2 --shard_size_mb 0.02)
for n in 1 2; do
    rb_run $n "${args[@]}" --out "$T/s$n" > "$T/convert$n.log" 2>&1 || { cat "$T/convert$n.log"; fail "convert on $n ranks"; }
done
same_shards "$T/s1" "$T/s2"
log="$T/convert1.log"
grep -Eq "^test *: [0-9]+ records" "$log" || { cat "$log"; fail "no test split announced"; }
grep -qF "groups: group_regex '$GROUPS_RE' matched 199 of 199 files, 127 patient group(s)" "$log" ||
    { cat "$log"; fail "no group statistics line"; }
grep -q "^warning" "$log" && { cat "$log"; fail "a warning for a regex that matches every file"; }
# the real size written, not the target size
size=$(du -cb "$T/s1"/*.h5 | tail -1 | cut -f1)
grep -Eq "wrote 199 records in [0-9]+ shards \($(awk -v b="$size" 'BEGIN { if (b >= 1e9) printf "%.1f GB", b / 1e9; else if (b >= 1e6) printf "%.1f MB", b / 1e6; else printf "%.1f kB", b / 1e3 }')\)" "$log" ||
    { grep wrote "$log"; fail "the summary does not give the $size bytes written"; }
ls "$T/s1"/test-*.h5 > /dev/null || fail "no test shards"
"$RADBATCH" inspect "$T/s1" --verify > "$T/inspect.log" || { cat "$T/inspect.log"; fail "inspect --verify"; }
grep -q "test_fraction 0.2" "$T/inspect.log" || fail "inspect does not show test_fraction"
grep -Eq "^  test +[0-9]+" "$T/inspect.log" || { cat "$T/inspect.log"; fail "inspect shows no test split count"; }
grep -q "matched 199 of 199 files" "$T/inspect.log" || { cat "$T/inspect.log"; fail "inspect: files matched"; }
grep -q '"test_fraction":[[:space:]]*0.2' "$T/s1/index.json" || fail "index.json: no test_fraction"
grep -q '"group_regex_matched":[[:space:]]*199,' "$T/s1/index.json" || fail "index.json: no group_regex_matched"
grep -q '"group_files":[[:space:]]*199,' "$T/s1/index.json" || fail "index.json: no group_files"
grep -q '"groups":[[:space:]]*127' "$T/s1/index.json" || fail "index.json: no groups"
grep -q '"group_warning"' "$T/s1/index.json" && fail "index.json: a warning for a regex that matches every file"

# every patient in one split; each class's test share near test_fraction
"$RADBATCH" inspect "$T/s1" --list > "$T/list.tsv"
awk -F'\t' '$1 == "record" {
        n = split($6, p, "/"); f = p[n]
        if (match(f, /^(person[0-9]+|NORMAL2-IM-[0-9]+|IM-[0-9]+)/)) k = substr(f, RSTART, RLENGTH); else k = f
        if ((k in side) && side[k] != $2) { print "patient " k " in " side[k] " and " $2; bad = 1 }
        side[k] = $2; tot[$5]++; if ($2 == "test") test[$5]++
    }
    END {
        for (c in tot) { s = test[c] / tot[c]; if (s < 0.1 || s > 0.3) { print "class " c " test share " s; bad = 1 } }
        exit bad
    }' "$T/list.tsv" || fail "the test split is not grouped or not stratified"

# train never reads the test split
for key in train_split val_split; do
    set +e
    "$RADBATCH" train --shards "$T/s1" --run_dir "$T/bad-$key" --"$key" test > "$T/bad-$key.log" 2>&1
    rc=$?
    set -e
    [ $rc = 2 ] || { cat "$T/bad-$key.log"; fail "train --$key test: exit $rc, expected 2"; }
    grep -q "key '$key' = 'test'" "$T/bad-$key.log" || { cat "$T/bad-$key.log"; fail "the error does not name $key"; }
done
ntrain=$(awk -F'\t' '$1 == "record" && $2 == "train"' "$T/list.tsv" | wc -l)
nval=$(awk -F'\t' '$1 == "record" && $2 == "val"' "$T/list.tsv" | wc -l)
ntest=$(awk -F'\t' '$1 == "record" && $2 == "test"' "$T/list.tsv" | wc -l)
[ "$ntest" -gt 0 ] || fail "no test records listed"
"$RADBATCH" train --shards "$T/s1" --run_dir "$T/run" --backbone mobilenetv2 --weights "$W" --epochs 1 \
    --max_steps 2 --batch_size 16 > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
grep -q "train: $ntrain records, val: $nval records" "$T/train.log" ||
    { grep "records" "$T/train.log"; fail "train does not read exactly the $ntrain train and $nval val records"; }
card=$("$RADBATCH" inspect "$T/run/model.h5" | sed -n '/^model card:/,$p' | tr -d ' \t\n')
echo "$card" | grep -q "\"test_fraction\":0.2," || fail "the model card does not record test_fraction"
echo "$card" | grep -q "\"test_records_held_out\":$ntest," || fail "the model card does not record the $ntest held-out test records"
for split in val test; do
    "$RADBATCH" evaluate --model "$T/run/model.h5" --data "$T/s1" --split "$split" --out "$T/eval-$split" \
        --bootstrap 0 > "$T/eval-$split.log" 2>&1 || { cat "$T/eval-$split.log"; fail "evaluate --split $split"; }
done
grep -q "$ntest records (test)" "$T/eval-test.log" || { cat "$T/eval-test.log"; fail "evaluate --split test: not the $ntest test records"; }
grep -q "$nval records (val)" "$T/eval-val.log" || { cat "$T/eval-val.log"; fail "evaluate --split val: not the $nval val records"; }

# group_regex: a regex that matches nothing is reported, warned about and recorded
"$RADBATCH" convert "$SAMPLE" --out "$T/foo" --height 32 --width 32 --group_regex '^foo' > "$T/foo.log" 2>&1 ||
    { cat "$T/foo.log"; fail "convert with a regex matching nothing"; }
grep -q "matched 0 of 199 files, 199 patient group(s)" "$T/foo.log" || { cat "$T/foo.log"; fail "no match count"; }
grep -q "^warning: group_regex '^foo' matched only 0 of 199 files" "$T/foo.log" || { cat "$T/foo.log"; fail "no warning"; }
grep -q '"group_warning":' "$T/foo/index.json" || fail "the warning is not in index.json"
"$RADBATCH" inspect "$T/foo" > "$T/foo-inspect.log"
grep -q "grouped by" "$T/foo-inspect.log" && fail "inspect says 'grouped by' for a regex that matched nothing"
grep -q "matched 0 of 199 files" "$T/foo-inspect.log" || { cat "$T/foo-inspect.log"; fail "inspect: no match count"; }
grep -q "warning: group_regex" "$T/foo-inspect.log" || fail "inspect: no warning"
# invalid regex, and fractions that leave nothing to train on: options errors naming the key
set +e
"$RADBATCH" convert "$SAMPLE" --out "$T/bad-re" --group_regex '(unclosed' > "$T/bad-re.log" 2>&1
rc=$?
set -e
[ $rc = 2 ] || { cat "$T/bad-re.log"; fail "invalid group_regex: exit $rc, expected 2"; }
grep -q "key 'group_regex'" "$T/bad-re.log" || { cat "$T/bad-re.log"; fail "the error does not name group_regex"; }
set +e
"$RADBATCH" convert "$SAMPLE" --out "$T/bad-frac" --val_fraction 0.5 --test_fraction 0.5 > "$T/bad-frac.log" 2>&1
rc=$?
set -e
[ $rc = 2 ] || { cat "$T/bad-frac.log"; fail "val_fraction + test_fraction = 1: exit $rc, expected 2"; }
# a folder converted without test_fraction has no test split: the hint says how to get one
set +e
"$RADBATCH" evaluate --model "$T/run/model.h5" --data "$T/foo" --split test --out "$T/eval-none" > "$T/eval-none.log" 2>&1
rc=$?
set -e
[ $rc = 1 ] || { cat "$T/eval-none.log"; fail "evaluate --split test without a test split: exit $rc"; }
grep -q "no 'test' split in index.json" "$T/eval-none.log" && grep -q "hint: convert with test_fraction > 0" "$T/eval-none.log" ||
    { cat "$T/eval-none.log"; fail "evaluate --split test without a test split: no clear error"; }
ok "test split: grouped, stratified, rank-invariant, never trained on, evaluated with --split test; group_regex reported"
