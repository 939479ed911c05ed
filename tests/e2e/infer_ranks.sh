# labels: infer mpi invariance
# 1, 2 and 3 ranks (and 1 or 2 threads per rank) give byte-identical predictions.csv,
# flagged.csv, errors.csv and index.csv; the same images given as a .txt list, a .csv list
# or as the shards they were converted to get the same probabilities.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
"$RADBATCH" train --shards "$T/s32" --run_dir "$T/m" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet > /dev/null
args=(infer --model "$T/m/model.h5" --chunk 16 --batch 8 --quiet)
same() {
    local f
    for f in predictions.csv flagged.csv errors.csv index.csv; do
        cmp -s "$1/$f" "$2/$f" || fail "$f differs between $1 and $2"
    done
}
for n in 1 2 3; do
    rb_run $n "${args[@]}" --input "$SAMPLE" --out "$T/r$n" > "$T/r$n.log" 2>&1 || { cat "$T/r$n.log"; fail "$n rank(s)"; }
done
[ "$(wc -l < "$T/r1/predictions.csv")" = 200 ] || fail "expected 199 predictions"
head -1 "$T/r1/predictions.csv" | grep -qx 'path,size,mtime,predicted_label,prob_NORMAL,prob_PNEUMONIA,flagged' || fail "header: $(head -1 "$T/r1/predictions.csv")"
same "$T/r1" "$T/r2"
same "$T/r1" "$T/r3"
OPENBLAS_NUM_THREADS=2 rb_run 1 "${args[@]}" --input "$SAMPLE" --out "$T/t2" --threads 2 > /dev/null 2>&1 || fail "2 threads"
same "$T/r1" "$T/t2"
[ "$(tail -n +2 "$T/r1/predictions.csv" | cut -d, -f1 | LC_ALL=C sort -c && echo sorted)" = sorted ] || fail "predictions.csv is not sorted by path"
grep -q '"ranks":[[:space:]]*3' "$T/r3/summary.json" || fail "summary.json of 3 ranks"
echo "1, 2, 3 ranks and 2 threads: identical"

# lists: absolute paths in a .txt, relative paths in a .csv with a header
find "$SAMPLE" -type f | LC_ALL=C sort -r > "$T/list.txt"
ln -s "$SAMPLE" "$T/imgs"   # the .csv list names paths relative to its own folder
{ echo path; (cd "$SAMPLE" && find . -type f | sed 's|^\./|imgs/|'); } > "$T/sample-list.csv"
rb_run 2 "${args[@]}" --input "$T/list.txt" --out "$T/txt" > "$T/txt.log" 2>&1 || { cat "$T/txt.log"; fail "txt list"; }
rb_run 1 "${args[@]}" --input "$T/sample-list.csv" --out "$T/csv" > "$T/csv.log" 2>&1 || { cat "$T/csv.log"; fail "csv list"; }
cmp -s <(cut -d, -f2- "$T/r1/predictions.csv") <(cut -d, -f2- "$T/txt/predictions.csv") || fail "a .txt list gives other predictions"
cmp -s <(cut -d, -f2- "$T/r1/predictions.csv") <(cut -d, -f2- "$T/csv/predictions.csv") || fail "a .csv list gives other predictions"
grep -q "^imgs/NORMAL/" "$T/csv/predictions.csv" || fail "csv list paths are reported as given"
grep -q "^$SAMPLE/NORMAL/" "$T/txt/predictions.csv" || fail "list paths are reported as given"

# shards: records predicted as they are stored; paths from /paths
rb_run 2 "${args[@]}" --input "$T/s32" --out "$T/sh" > "$T/sh.log" 2>&1 || { cat "$T/sh.log"; fail "shards input"; }
[ "$(wc -l < "$T/sh/predictions.csv")" = 200 ] || fail "shards: expected 199 rows"
cmp -s <(cut -d, -f1,4- "$T/r1/predictions.csv") <(cut -d, -f1,4- "$T/sh/predictions.csv") || fail "shards give other probabilities than the files"
grep -q '"input_kind":[[:space:]]*"shards"' "$T/sh/summary.json" || fail "shards not detected"
ok "rank-count invariance, lists and shards"
