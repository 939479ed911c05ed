# labels: infer mpi
# radbatch infer --explain N: Grad-CAM heatmaps of the N most probable flagged images in
# explain/ of the run folder as <rank>-<name>.png, the same bytes as predict --explain of the
# same file, shown inline in report.html (data: URIs decoding to those files, nothing
# fetched); the same on 2 ranks, and after a run killed once its outputs were in place (the
# merge makes them again; rows stay exactly once); a later run without explain leaves no
# explain/; a shards folder as input is refused.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/run" --backbone cnn --head_units 16 --epochs 2 \
    --batch_size 16 --learning_rate 1e-3 --quiet > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"
args=(infer --model "$M" --input "$SAMPLE" --chunk 16 --explain 4 --quiet)
"$RADBATCH" "${args[@]}" --out "$T/a" > "$T/a.log" 2>&1 || { cat "$T/a.log"; fail "infer --explain"; }
flagged=$(($(wc -l < "$T/a/flagged.csv") - 1))
[ "$flagged" -ge 4 ] || fail "only $flagged flagged images: the test needs 4"

# the 4 most probable flagged images: highest probability of the positive class, ties by path
pos=$(head -1 "$T/a/flagged.csv" | tr ',' '\n' | grep -n '^prob_PNEUMONIA$' | cut -d: -f1)
tail -n +2 "$T/a/flagged.csv" | awk -F, -v c="$pos" '{ printf "%.4f\t%s\n", $c, $1 }' > "$T/rows"
python3 - "$T/rows" "$T/a/flagged.csv" "$pos" > "$T/top" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[2])))[1:]
c = int(sys.argv[3]) - 1
rows.sort(key=lambda r: (-float(r[c]), r[0]))
for r in rows[:4]:
    print(r[0])
PY
ls "$T/a/explain" > "$T/files"
[ "$(wc -l < "$T/files")" = 4 ] || fail "explain/ holds $(wc -l < "$T/files") files: $(cat "$T/files")"
i=0
while read -r p; do
    i=$((i + 1))
    b=$(basename "$p")
    f="$T/a/explain/$i-${b%.*}.png"
    [ -f "$f" ] || fail "no $f for #$i $p: $(cat "$T/files")"
    "$RADBATCH" predict --model "$M" "$SAMPLE/$p" --explain "$T/p$i.png" > /dev/null || fail "predict --explain $p"
    cmp -s "$f" "$T/p$i.png" || fail "#$i $p: infer's heatmap differs from predict's"
done < "$T/top"
ok "explain/: the 4 most probable flagged images, as predict --explain makes them"

# inline in report.html: 4 data: URIs, each the bytes of one file, and nothing else referred to
H="$T/a/report.html"
grep -q 'Heatmaps of the most probable flagged images' "$H" || fail "no heatmap section"
html_self_contained "$H" || fail "report.html holds a script or refers to something outside itself"
python3 - "$H" "$T/a/explain" <<'PY' || fail "inline images are not the heatmap files"
import base64, os, re, sys
html = open(sys.argv[1]).read()
imgs = [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]*)"', html)]
files = sorted(os.listdir(sys.argv[2]), key=lambda n: int(n.split("-")[0]))
assert len(imgs) == 4, len(imgs)
for data, name in zip(imgs, files):
    assert data == open(os.path.join(sys.argv[2], name), "rb").read(), name
    assert name in html, name
PY
ok "report.html shows them inline"

same() { # dir
    for f in predictions.csv flagged.csv report.html; do cmp -s "$T/a/$f" "$1/$f" || fail "$1: $f differs"; done
    diff -r "$T/a/explain" "$1/explain" > /dev/null || fail "$1: explain/ differs"
    [ -z "$(cut -d, -f1 "$1/predictions.csv" | sort | uniq -d)" ] || fail "$1: duplicate rows"
}
mpirun -n 2 "$RADBATCH" "${args[@]}" --out "$T/r2" > "$T/r2.log" 2>&1 || { cat "$T/r2.log"; fail "2 ranks"; }
same "$T/r2"
ok "2 ranks: the same heatmaps and report"

set +e
RADBATCH_TEST_KILL_MERGE=publish "$RADBATCH" "${args[@]}" --out "$T/k" > "$T/k.log" 2>&1
rc=$?
set -e
[ $rc -ne 0 ] || fail "the killed run exited 0"
[ ! -f "$T/k/summary.json" ] || fail "summary.json written by the killed run"
"$RADBATCH" "${args[@]}" --out "$T/k" > "$T/k2.log" 2>&1 || { cat "$T/k2.log"; fail "rerun"; }
same "$T/k"
grep -q '"images_this_run":[[:space:]]*0,' "$T/k/summary.json" || fail "the rerun predicted images again"
ok "killed after publishing, rerun: the same outputs, no image predicted twice"

# the most probable image deleted between its chunk and the merge: a line instead of its heatmap
cp -r "$SAMPLE" "$T/arch"
set +e
RADBATCH_TEST_KILL_MERGE=publish "$RADBATCH" infer --model "$M" --input "$T/arch" --chunk 16 --explain 4 --quiet \
    --out "$T/v" > "$T/v.log" 2>&1
set -e
first=$(head -1 "$T/top")
rm "$T/arch/$first"
"$RADBATCH" infer --model "$M" --input "$T/arch" --chunk 16 --explain 4 --quiet --out "$T/v" > "$T/v2.log" 2>&1 \
    || { cat "$T/v2.log"; fail "rerun after deleting $first"; }
grep -qF "#1 $first: no heatmap (" "$T/v/report.html" || fail "no line for the deleted image"
[ "$(ls "$T/v/explain" | wc -l)" = 3 ] && [ ! -e "$T/v/explain/1-$(basename "${first%.*}").png" ] \
    && [ -f "$T/v/explain/2-$(basename "$(sed -n 2p "$T/top" | sed 's/\.[^.]*$//')").png" ] || fail "explain/ after the deletion: $(ls "$T/v/explain")"
ok "an image gone before the merge: a line instead of its heatmap"

"$RADBATCH" infer --model "$M" --input "$SAMPLE" --chunk 16 --quiet --out "$T/k" > /dev/null 2>&1 || fail "rerun without explain"
[ ! -e "$T/k/explain" ] || fail "explain/ of the earlier run left behind"
ok "a run without explain leaves no explain/"

set +e
"$RADBATCH" infer --model "$M" --input "$T/s64" --out "$T/sh" --explain 2 --quiet > "$T/sh.log" 2>&1
rc=$?
set -e
[ $rc -ne 0 ] || fail "explain with a shards folder accepted"
grep -q "explain = 2 with a shards folder" "$T/sh.log" || fail "error does not say why: $(cat "$T/sh.log")"
ok "shards input refused ($(head -1 "$T/sh.log"))"
