# labels: infer mpi nosan
# (nosan: peak RSS under AddressSanitizer measures its shadow memory and quarantine, not ours.)
# An archive of 20,000 tiny files (8x8 PNG and JPEG copies in 100 nested folders) runs in
# bounded memory: the listing streams into chunk files and the parts are merged in passes,
# so the peak RSS of every rank (getrusage, reported in summary.json as the max over the
# ranks) stays what it is for 2,000 files, within a small allowance, and under an absolute
# bound made of what the model and its buffers take.
source "$(dirname "$0")/lib.sh"
W=work # the name of a run folder's subfolder of chunk and part files
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
"$RADBATCH" train --shards "$T/s32" --run_dir "$T/m" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet > /dev/null
MODEL="$T/m/model.h5"

# seeds: an 8x8 gray PNG and an 8x8 JPEG
echo 'iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAAF0lEQVR4nGNkYIEARgUog4UUBuMDKAMAR1gCmJsliJIAAAAASUVORK5CYII=' | base64 -d > "$T/seed.png"
echo '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCj/wAARCAAIAAgDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwBmm/Arp/ov/jtFFFAH/9k=' | base64 -d > "$T/seed.jpg"

# make_archive DIR FOLDERS: 200 copies of a seed per folder made by split(1) from a blob of
# 200 seeds (made once per kind), one process per folder
for kind in png jpg; do
    cat "$T/seed.$kind" "$T/seed.$kind" "$T/seed.$kind" "$T/seed.$kind" "$T/seed.$kind" > "$T/x5.$kind"
    cat "$T/x5.$kind" "$T/x5.$kind" "$T/x5.$kind" "$T/x5.$kind" "$T/x5.$kind" > "$T/x25.$kind"
    cat "$T/x25.$kind" "$T/x25.$kind" "$T/x25.$kind" "$T/x25.$kind" "$T/x25.$kind" "$T/x25.$kind" "$T/x25.$kind" "$T/x25.$kind" > "$T/blob.$kind"
done
make_archive() {
    local root=$1 folders=$2 d kind dir
    for d in $(seq -w 0 $((folders - 1))); do
        if [ $((10#$d % 2)) = 0 ]; then kind=png; else kind=jpg; fi
        dir="$root/site$((10#$d % 10))/day$d"
        mkdir -p "$dir"
        split -b "$(stat -c %s "$T/seed.$kind")" -a 4 -d --additional-suffix=".$kind" "$T/blob.$kind" "$dir/img"
    done
}
make_archive "$T/small" 10
make_archive "$T/big" 100
[ "$(find "$T/big" -type f | wc -l)" = 20000 ] || fail "the archive does not hold 20000 files"

rss() { sed -n 's/.*"peak_rss_mb":[[:space:]]*\([0-9.]*\).*/\1/p' "$1/summary.json"; }
for n in 1 2; do
    rb_run $n infer --model "$MODEL" --input "$T/small" --out "$T/small$n" --chunk 64 --quiet > "$T/small$n.log" 2>&1 || { cat "$T/small$n.log"; fail "small archive on $n rank(s)"; }
    rb_run $n infer --model "$MODEL" --input "$T/big" --out "$T/big$n" --chunk 64 --quiet > "$T/big$n.log" 2>&1 || { cat "$T/big$n.log"; fail "big archive on $n rank(s)"; }
    [ "$(wc -l < "$T/big$n/predictions.csv")" = 20001 ] || fail "big archive: $(wc -l < "$T/big$n/predictions.csv") lines in predictions.csv"
    [ "$(wc -l < "$T/big$n/errors.csv")" = 1 ] || fail "big archive: errors: $(head -3 "$T/big$n/errors.csv")"
    [ "$(ls "$T/big$n/$W/" | grep -c '^part-')" = 313 ] || fail "expected 313 part files"
    small=$(rss "$T/small$n"); big=$(rss "$T/big$n")
    echo "$n rank(s): peak RSS $small MiB for 2,000 files, $big MiB for 20,000 files"
    # bounds: 10x the files may add at most 12 MiB (allocator noise, the folder guard of
    # 100 folders, page cache of nothing); and the whole stays under 200 MiB: the model
    # (MobileNetV2 at 32x32: ~10 MB of weights per compute thread), its workspace, OpenMPI
    # and the libraries (~60 MiB), with room to spare. A listing or merge held in memory
    # would cost ~100 bytes per file plus malloc overhead: 2+ MiB per 20,000 files per copy,
    # and a per-file leak of a decode buffer (8x8) or of a row, several MiB.
    awk -v s="$small" -v b="$big" 'BEGIN { exit !(b <= s + 12 && b < 200) }' || fail "peak RSS grows with the archive: $small -> $big MiB"
done
cmp -s "$T/big1/predictions.csv" "$T/big2/predictions.csv" || fail "1 and 2 ranks differ on the big archive"
ok "20,000 files in bounded memory"
