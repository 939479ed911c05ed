# labels: convert
# Convert the bundled sample end to end and check the files with h5ls/h5dump and inspect.
source "$(dirname "$0")/lib.sh"
out="$T/shards"
"$RADBATCH" convert "$SAMPLE" --out "$out" --height 96 --width 96 --group_regex "$GROUPS_RE" \
    --shard_size_mb 1 > "$T/log" 2>&1 || { cat "$T/log"; fail "convert exited non-zero"; }
cat "$T/log"
grep -q "wrote 199 records" "$T/log" || fail "expected 199 records"
ls "$out"/train-000*-of-000*.h5 "$out"/val-000*-of-000*.h5 >/dev/null || fail "missing shards"

shard=$(ls "$out"/train-*.h5 | head -1)
h5ls "$shard" > "$T/h5ls"
for ds in images labels paths checksums source_hash source_size; do
    grep -q "^$ds " "$T/h5ls" || fail "h5ls: no /$ds in $shard"
done
grep -E '^images +Dataset \{[0-9]+, 96, 96, 3\}' "$T/h5ls" >/dev/null || fail "images shape: $(grep images "$T/h5ls")"
h5dump -a format "$shard" | grep -q '"radbatch-shard"' || fail "format attribute"
h5dump -a class_names "$shard" | grep -q '"PNEUMONIA"' || fail "class_names attribute"
h5dump -p -H -d images "$shard" | grep -q 'CHUNKED' || fail "images not chunked"
# chunks hold whole images, about 1 MiB: floor(1 MiB / 96*96*3) = 37 rows
h5dump -p -H -d images "$shard" | grep -q 'CHUNKED ( 37, 96, 96, 3 )' || \
    [ "$(h5dump -H -d images "$shard" | grep -o '( [0-9]*,' | head -1 | tr -dc 0-9)" -lt 37 ] || fail "chunk size"

"$RADBATCH" inspect "$out" --verify --list > "$T/inspect" || fail "inspect --verify"
grep -q "verified: every record checksum matches" "$T/inspect" || fail "verify line"
[ "$(grep -c '^record' "$T/inspect")" = 199 ] || fail "inspect --list count"
# no patient on both sides of the split
awk -F'\t' '$1=="record" { n=split($6, p, "/"); f=p[n]; if (match(f, /^(person[0-9]+|NORMAL2-IM-[0-9]+|IM-[0-9]+)/)) { k=substr(f, 1, RLENGTH); s[k]=s[k] " " $2 } }
    END { bad=0; for (k in s) if (s[k] ~ /train/ && s[k] ~ /val/) { print "patient on both sides: " k; bad=1 } exit bad }' "$T/inspect" \
    || fail "grouped split leaks patients"
# the byte-identical pair is listed and kept together
[ "$(grep -c 'NORMAL2-IM-0587-0001-000' "$out/duplicates.csv")" = 2 ] || fail "duplicates.csv"
[ "$(grep 'NORMAL2-IM-0587-0001-000' "$out/duplicates.csv" | cut -d, -f4 | sort -u | wc -l)" = 1 ] || fail "copies split"
# dedupe drops the second copy
copies=$(($(tail -n +2 "$out/duplicates.csv" | wc -l) - $(tail -n +2 "$out/duplicates.csv" | cut -d, -f1 | sort -u | wc -l)))
[ "$copies" -ge 1 ] || fail "no extra copies counted"
"$RADBATCH" convert "$SAMPLE" --out "$T/dedup" --height 32 --width 32 --dedupe true > "$T/log2" 2>&1 || fail "dedupe run"
grep -q "wrote $((199 - copies)) records" "$T/log2" || fail "dedupe count: $(cat "$T/log2")"
# export a record as PNG
"$RADBATCH" inspect "$shard" --export_image 0 --image_out "$T/r0.png" > /dev/null || fail "export_image"
[ "$(head -c 4 "$T/r0.png" | od -An -c | tr -d ' ')" = '211PNG' ] || fail "export is not a PNG"
# job file + flag precedence; unknown keys are named
printf '[convert]\nheight = 40\nwidth = 40\nval_fraction = 0\n' > "$T/job.ini"
"$RADBATCH" convert "$T/job.ini" "$SAMPLE" --out "$T/job" --width 48 --quiet > /dev/null 2>&1 || fail "job file run"
h5dump -H -d images "$T/job/train-00000-of-00001.h5" | grep -q '( 199, 40, 48, 3 )' || fail "job file values"
printf '[convert]\nhieght = 40\n' > "$T/bad.ini"
if "$RADBATCH" convert "$T/bad.ini" "$SAMPLE" --out "$T/bad" 2> "$T/err"; then fail "unknown key accepted"; fi
grep -q "unknown key 'hieght'" "$T/err" && grep -q "height" "$T/err" || fail "unknown key message: $(cat "$T/err")"
ok "sample converted, checked with h5ls/h5dump/inspect"
