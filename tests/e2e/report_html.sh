# report.html of radbatch evaluate: self-contained (no script, no URL, no external
# resource), holds the metrics table, the confusion-matrix heatmap, the ROC curve with its
# operating point, the training curves of history.csv, the model card and the errors list
# (first 200 of more, with the count); text is escaped. Headless Chromium renders it and
# the screenshot must not be blank: its PNG must be several times larger than a render
# of an empty page of the same size (a white page compresses to almost nothing).
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s96" --run_dir "$T/run" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 2 --learning_rate 1e-3 \
    --batch_size 16 --quiet > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"

# image folder: 8 images per class and 205 broken files (more than the 200 listed)
IMG="$T/images"
for c in NORMAL PNEUMONIA; do
    mkdir -p "$IMG/$c"
    ls "$SAMPLE/$c" | sort | head -8 | while read -r f; do cp "$SAMPLE/$c/$f" "$IMG/$c/"; done
done
for i in $(seq 1 205); do echo "not an image" > "$IMG/PNEUMONIA/broken-$i.png"; done
echo "x" > "$IMG/NORMAL/<b>odd&name.png"

"$RADBATCH" evaluate --model "$M" --data "$IMG" --out "$T/ev" --quiet > "$T/ev.log" 2>&1 || { cat "$T/ev.log"; fail "evaluate"; }
H="$T/ev/report.html"
[ -s "$H" ] || fail "no report.html"
# inline images (the error galleries' data: URIs) are part of the page; nothing else may be referred to
html_self_contained "$H" || fail "report.html holds a script or refers to something outside itself"
[ "$(grep -c '<svg' "$H")" -ge 4 ] || fail "expected at least 4 SVG plots (confusion, ROC, loss, accuracy)"
for s in 'Confusion matrix' 'ROC curve' 'Training curves' 'Model card' 'Errors' 'sensitivity' 'specificity' \
    'macro avg' 'weighted avg' '"positive_class"' 'AUC = '; do
    grep -qF "$s" "$H" || grep -qF "$(printf '%s' "$s" | sed 's/"/\&quot;/g')" "$H" || fail "report.html lacks '$s'"
done
grep -q '<circle' "$H" || fail "no ROC operating point"
[ "$(grep -o "broken-[0-9]*\.png" "$H" | wc -l)" = 199 ] \
    || fail "errors list: expected the first 200 errors, found $(grep -o 'broken-[0-9]*\.png' "$H" | wc -l)"
grep -q '206 file(s)' "$H" || fail "errors count 206 not shown"
[ "$(tail -n +2 "$T/ev/errors.csv" | wc -l)" = 206 ] || fail "errors.csv: expected 206 rows"
grep -qF '&lt;b&gt;odd&amp;name.png' "$H" || fail "file name not escaped"
grep -qF '<b>odd' "$H" && fail "raw markup from a file name"
ok "report.html content ($(wc -c < "$H") bytes)"

# no history: no training curves section
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/nohist" --history none --bootstrap 0 --quiet > /dev/null
grep -q 'Training curves' "$T/nohist/report.html" && fail "--history none still draws training curves"
grep -q '<svg' "$T/nohist/report.html" || fail "no plots without history"
ok "history none"

# render with headless Chromium
need_chromium
blank=$(empty_page_png)
render "$H" "$T/report.png"
render "$T/nohist/report.html" "$T/nohist.png"
for p in report nohist; do
    size=$(wc -c < "$T/$p.png")
    [ "$size" -gt $((blank * 8)) ] || fail "$p.png looks blank: $size bytes, an empty page is $blank bytes"
    echo "$p.png: $size bytes (empty page: $blank bytes)"
done
ok "chromium renders a non-blank report"
