# radbatch evaluate's error galleries in report.html: the false positives (most probable
# first) and false negatives (least probable first) at the operating point, at most
# `gallery` each, every one with the thumbnail the model saw (a PNG at the model's input
# size), its Grad-CAM heatmap (the same bytes as predict --explain of the file), the
# probability and the path; inline data: URIs only; from image folders and from shards;
# gallery = 0 draws none; headless Chromium renders the page.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/run" --backbone cnn --head_units 16 --epochs 2 \
    --batch_size 16 --learning_rate 1e-3 --quiet > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"
IMG="$T/img"
for c in NORMAL PNEUMONIA; do
    mkdir -p "$IMG/$c"
    ls "$SAMPLE/$c" | sort | head -20 | while read -r f; do cp "$SAMPLE/$c/$f" "$IMG/$c/"; done
done
"$RADBATCH" evaluate --model "$M" --data "$IMG" --out "$T/ev" --bootstrap 0 --gallery 3 --quiet > "$T/ev.log" 2>&1 \
    || { cat "$T/ev.log"; fail "evaluate"; }
H="$T/ev/report.html"

# what the galleries must show, from predictions.csv (path,true,predicted,prob_NORMAL,prob_PNEUMONIA)
python3 - "$T/ev/predictions.csv" "$H" "$T/figs" <<'PY' || fail "galleries do not match predictions.csv"
import base64, csv, re, struct, sys, os
rows = list(csv.DictReader(open(sys.argv[1])))
html = open(sys.argv[2]).read()
out = sys.argv[3]
os.makedirs(out, exist_ok=True)
fp = [(float(r["prob_PNEUMONIA"]), i, r["path"]) for i, r in enumerate(rows)
      if r["true_label"] == "NORMAL" and r["predicted_label"] == "PNEUMONIA"]
fn = [(float(r["prob_PNEUMONIA"]), i, r["path"]) for i, r in enumerate(rows)
      if r["true_label"] == "PNEUMONIA" and r["predicted_label"] == "NORMAL"]
fp.sort(key=lambda t: (-t[0], t[1]))
fn.sort(key=lambda t: (t[0], t[1]))
sec = re.split(r"<h2>", html)
def section(title):
    s = [x for x in sec if x.startswith(title)]
    assert len(s) == 1, title
    return s[0]
n = 0
for title, want, total in (("False positives at the operating point", fp[:3], len(fp)),
                           ("False negatives at the operating point", fn[:3], len(fn))):
    s = section(title)
    figs = re.findall(r'<figure class="img">(.*?)</figure>', s)
    assert len(figs) == len(want), (title, len(figs), len(want))
    if total == 0:
        assert "None: no " in s, title
    else:
        assert f"{total} false " in s, (title, total)
    for fig, (p, _, path) in zip(figs, want):
        imgs = re.findall(r'src="data:image/png;base64,([^"]*)"', fig)
        assert len(imgs) == 2, fig[:200]
        assert f"p(PNEUMONIA) = {p:.4f}" in fig and f"<br>{path}</figcaption>" in fig, (fig[-200:], p, path)
        thumb, heat = (base64.b64decode(x) for x in imgs)
        w, h, depth, ctype = struct.unpack(">IIBB", thumb[16:26])
        assert (w, h, depth, ctype) == (64, 64, 8, 2), (w, h, depth, ctype)  # the model's input: 64x64 RGB
        n += 1
        open(os.path.join(out, f"{n}.png"), "wb").write(heat)
        open(os.path.join(out, f"{n}.path"), "w").write(path)
print(f"{len(fp)} false positives, {len(fn)} false negatives, {n} figures checked")
PY
ls "$T/figs"/*.png > /dev/null 2>&1 || fail "the test needs at least one error at this operating point"
for f in "$T/figs"/*.png; do
    p=$(cat "${f%.png}.path")
    "$RADBATCH" predict --model "$M" "$IMG/$p" --explain "$T/pred.png" > /dev/null || fail "predict --explain $p"
    cmp -s "$f" "$T/pred.png" || fail "$p: the gallery's heatmap differs from predict --explain"
done
html_self_contained "$H" || fail "report.html holds a script or refers to something outside itself"
ok "image folders: galleries as predictions.csv says, heatmaps as predict --explain makes them"

"$RADBATCH" evaluate --model "$M" --data "$T/s64" --out "$T/sh" --bootstrap 0 --gallery 2 --quiet > /dev/null || fail "evaluate shards"
for t in "False positives at the operating point" "False negatives at the operating point"; do
    grep -q "<h2>$t</h2>" "$T/sh/report.html" || fail "shards: no '$t'"
done
[ "$(grep -o '<figure class="img">' "$T/sh/report.html" | wc -l)" -ge 1 ] || fail "shards: no gallery image"
[ "$(grep -o '<figure class="img">' "$T/sh/report.html" | wc -l)" -le 4 ] || fail "shards: more than 2 per gallery"
ok "shards: galleries of at most 2"

"$RADBATCH" evaluate --model "$M" --data "$IMG" --out "$T/none" --bootstrap 0 --gallery 0 --quiet > /dev/null || fail "gallery 0"
grep -q 'False positives\|<img' "$T/none/report.html" && fail "gallery = 0 still draws galleries"
ok "gallery = 0: none"

need_chromium
render "$H" "$T/with.png" 1200,8000
render "$T/none/report.html" "$T/without.png" 1200,8000
# the galleries' images make the page's screenshot larger than the same report without them
a=$(wc -c < "$T/with.png") b=$(wc -c < "$T/without.png")
[ "$a" -gt $((b + 20000)) ] || fail "the galleries do not show in Chromium: $a vs $b bytes without them"
ok "chromium renders the galleries ($a bytes, $b without)"
