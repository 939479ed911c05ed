# labels: convert
# Hostile inputs are reported in errors.csv with a reason and never stop the job: zero-byte,
# truncated, non-image, unsupported, absurd header sizes, a PNG bomb header, broken TIFF,
# broken and looping symbolic links, a FIFO, an unreadable folder (when it can be made so).
source "$(dirname "$0")/lib.sh"
in="$T/in"
mkdir -p "$in/NORMAL" "$in/PNEUMONIA"
ls "$SAMPLE/NORMAL" | head -20 | while read -r f; do cp "$SAMPLE/NORMAL/$f" "$in/NORMAL/"; done
ls "$SAMPLE/PNEUMONIA" | head -20 | while read -r f; do cp "$SAMPLE/PNEUMONIA/$f" "$in/PNEUMONIA/"; done
good=$(ls "$SAMPLE/NORMAL" | head -1)
src="$SAMPLE/NORMAL/$good"
: > "$in/NORMAL/zero.jpeg"
head -c 3000 "$src" > "$in/NORMAL/truncated.jpeg"
head -c 400 "$src" > "$in/NORMAL/header-only.jpeg"
echo "patient notes, not an image" > "$in/NORMAL/notes.jpeg"
printf 'GIF89a\x01\x00\x01\x00\x00\x00\x00;' > "$in/NORMAL/anim.gif"
printf 'BM\x00\x00\x00\x00\x00\x00\x00\x00' > "$in/NORMAL/scan.bmp"
# JPEG whose SOF header claims 65535x65535
cp "$src" "$in/PNEUMONIA/huge.jpeg"
off=$(LC_ALL=C grep -obUaP '\xff\xc0' "$src" | head -1 | cut -d: -f1)
printf '\xff\xff\xff\xff' | dd of="$in/PNEUMONIA/huge.jpeg" bs=1 seek=$((off + 5)) conv=notrunc 2>/dev/null
# PNG declaring 20000x20000 RGB (1.2 GB decoded) in 65 bytes: a decompression bomb header
printf '\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x4e\x20\x00\x00\x4e\x20\x08\x02\x00\x00\x00\x6c\x12\xd1\x6e\x00\x00\x00\x11\x49\x44\x41\x54\x78\x9c\x63\x60\x18\x05\xa3\x60\x14\x0c\x77\x00\x00\x03\xe8\x00\x01\xb3\xa6\xd3\x46' > "$in/PNEUMONIA/bomb.png"
# TIFF with one IFD entry (ImageWidth) and nothing else: required tags missing
printf 'II*\x00\x08\x00\x00\x00\x01\x00\x00\x01\x04\x00\x01\x00\x00\x00\xff\xff\xff\x7f\x00\x00\x00\x00' > "$in/PNEUMONIA/broken.tif"
# TIFF whose IFD offset points past the end of the file
printf 'II*\x00\xff\xff\xff\x00' > "$in/PNEUMONIA/badoffset.tiff"
ln -s "$in/NORMAL/does-not-exist.jpeg" "$in/NORMAL/dangling.jpeg"
ln -s "$in/PNEUMONIA" "$in/PNEUMONIA/loop"
mkfifo "$in/NORMAL/pipe.jpeg"
mkdir -p "$in/NORMAL/locked" && cp "$src" "$in/NORMAL/locked/x.jpeg" && chmod 000 "$in/NORMAL/locked"
hostile=13

run_as=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    # root reads any folder: run as nobody so the locked folder really is unreadable
    chmod -R a+rX "$in" 2>/dev/null || true; chmod 000 "$in/NORMAL/locked"
    chmod a+rwx "$T"
    run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    hostile=14
elif [ "$(id -u)" != 0 ]; then
    hostile=14
else
    skip_part "root without setpriv (util-linux) reads any folder: the unreadable-folder case is not checked"
fi

"${run_as[@]}" "$RADBATCH" convert "$in" --out "$T/out" --height 64 --width 64 --val_fraction 0.25 --max_error_fraction 0.5 > "$T/log" 2>&1 \
    || { cat "$T/log"; fail "convert stopped on hostile input"; }
cat "$T/out/errors.csv"
rows=$(($(wc -l < "$T/out/errors.csv") - 1))
[ "$rows" = "$hostile" ] || fail "errors.csv has $rows rows, expected $hostile"
grep -q "wrote 40 records" "$T/log" || fail "the 40 good images were not all converted"
check() { grep -F "$1" "$T/out/errors.csv" | grep -qiE "$2" || fail "errors.csv: $1 should say /$2/"; }
check zero.jpeg 'empty|zero|no data|too short|truncated'
check truncated.jpeg 'truncat|premature|corrupt'
check header-only.jpeg 'truncat|premature|corrupt'
check notes.jpeg 'not an image|unknown|unsupported|format'
check anim.gif 'gif'
check scan.bmp 'bmp|unsupported|format'
check huge.jpeg 'large|limit|65535|dimension'
check bomb.png 'large|limit|20000'
check broken.tif 'tiff|tag|missing|invalid|broken'
check badoffset.tiff 'tiff|offset|invalid|broken|read'
check dangling.jpeg 'broken symbolic link'
check loop 'already visited'
check pipe.jpeg 'not a regular file'
[ "$hostile" = 14 ] && check locked 'permission denied'
# every error also reached the log
grep -q 'bomb.png' "$T/log" || fail "log does not name bomb.png"

# more failures than max_error_fraction allows: the shards are still written, exit non-zero
if "$RADBATCH" convert "$in" --out "$T/strict" --height 64 --width 64 --max_error_fraction 0.05 > "$T/log2" 2>&1; then
    fail "max_error_fraction not enforced"
fi
grep -q "max_error_fraction" "$T/log2" || fail "no max_error_fraction message"
[ -f "$T/strict/index.json" ] || fail "strict run did not finish its outputs"
# nothing usable: non-zero exit with a clear line
mkdir -p "$T/bad/X" && cp "$in/NORMAL/notes.jpeg" "$in/PNEUMONIA/bomb.png" "$T/bad/X/"
if "$RADBATCH" convert "$T/bad" --out "$T/badout" > "$T/log3" 2>&1; then fail "nothing usable but exit 0"; fi
grep -q "no usable images" "$T/log3" || fail "no 'no usable images' message"
chmod 755 "$in/NORMAL/locked"
ok "hostile inputs reported, job went on"
