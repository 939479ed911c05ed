# Integrity: a changed byte in a model file, a checkpoint, a shard or index.json is never
# used silently. Each damaged file makes every command that reads it exit 1 with a message
# naming the file and what is wrong (the tensor, the model card, the record, the field);
# inspect --diff lists checksum mismatches and NaN counts per tensor; infer, which reports
# bad inputs and goes on, lists a damaged shard record in errors.csv.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s32" --run_dir "$T/run" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 \
    --checkpoint_every_steps 4 --quiet > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"
IMG="$SAMPLE/NORMAL/$(ls "$SAMPLE/NORMAL" | sort | head -1)"

# expect <exit code> <text the output must contain> <command...>
expect() {
    local code=$1 text=$2; shift 2
    set +e
    "$@" > "$T/out" 2>&1
    local rc=$?
    set -e
    [ $rc -eq "$code" ] || { cat "$T/out"; fail "$*: exit $rc, expected $code"; }
    grep -qF -- "$text" "$T/out" || { cat "$T/out"; fail "$*: the output lacks: $text"; }
}
# byte offset of a contiguous dataset's data in an HDF5 file
data_offset() { h5dump -p -H -d "$2" "$1" | awk '/OFFSET/ { print $2; exit }'; }
# byte offset of the first occurrence of a text in a file
text_offset() { LC_ALL=C grep -obUaF -- "$2" "$1" | head -1 | cut -d: -f1; }
# overwrite bytes at an offset with a printf-style string
poke() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

# ---- the intact files pass every check
"$RADBATCH" inspect "$M" > "$T/inspect.out" || fail "inspect of the intact model"
grep -q "integrity: every checksum matches" "$T/inspect.out" || fail "inspect does not report the checksums"
"$RADBATCH" inspect "$T/s32" --verify > "$T/verify.out" || fail "inspect --verify of the intact shards"
grep -q "^verified: every record checksum matches; so do index.json's own checksum and its agreement with every shard" \
    "$T/verify.out" || fail "inspect --verify summary"
ok "intact model and shards verify"

# ---- a model whose block_15_project/kernel got one NaN (4 bytes overwritten)
B="$T/nan.h5"
cp "$M" "$B"
off=$(data_offset "$B" /weights/block_15_project/kernel)
[ -n "$off" ] || fail "no offset for block_15_project/kernel"
poke "$B" $((off + 400)) '\x00\x00\xc0\x7f'
msg="$B: checksum mismatch in tensor 'block_15_project/kernel' (/weights/block_15_project/kernel)"
expect 1 "$msg" "$RADBATCH" predict --model "$B" "$IMG"
expect 1 "$msg" "$RADBATCH" evaluate --model "$B" --data "$T/s32" --out "$T/ev-nan" --quiet
expect 1 "$msg" "$RADBATCH" infer --model "$B" --input "$SAMPLE" --out "$T/inf-nan" --quiet
expect 1 "$msg" "$RADBATCH" inspect "$B"
expect 1 "$msg" "$RADBATCH" train --shards "$T/s32" --run_dir "$T/init-nan" --backbone mobilenetv2 --init_model "$B" \
    --epochs 1 --quiet
[ ! -e "$T/ev-nan/metrics.json" ] || fail "evaluate wrote metrics from a damaged model"
# inspect --diff: the mismatch and the NaN count, per tensor; exit 1
expect 1 "diff: the models cannot be compared value for value; tensors failing their checksum: $M 0, $B 1; non-finite values: $M 0 in 0 tensor(s), $B 1 in 1 tensor(s)" \
    "$RADBATCH" inspect "$M" --diff "$B"
grep -qF "checksum mismatch: block_15_project/kernel in $B" "$T/out" || fail "diff does not list the tensor"
grep -qF "non-finite: block_15_project/kernel: a 0 NaN 0 Inf, b 1 NaN 0 Inf (of 153600 values)" "$T/out" \
    || fail "diff does not count the NaN"
"$RADBATCH" inspect "$M" --diff "$M" | grep -q "^diff: 0 of" || fail "diff of a model with itself"
ok "a NaN written into a weight: every reader refuses it, diff counts it"

# ---- a changed byte in the model card (its threshold)
B="$T/card.h5"
cp "$M" "$B"
off=$(text_offset "$B" '"applies_to"')
[ -n "$off" ] || fail "model card text not found in the file"
poke "$B" $((off + 2)) 'q'
expect 1 "$B: checksum mismatch in the model card" "$RADBATCH" predict --model "$B" "$IMG"
expect 1 "$B: checksum mismatch in the model card" "$RADBATCH" inspect "$B"
ok "a changed byte in the model card is refused"

# ---- a truncated model file
B="$T/short.h5"
head -c $(( $(stat -c %s "$M") - 1000 )) "$M" > "$B"
expect 1 "$B: cannot open as HDF5 (truncated or damaged?)" "$RADBATCH" evaluate --model "$B" --data "$T/s32" --out "$T/ev-short"
ok "a truncated model file is refused"

# ---- a damaged newest checkpoint: resume names the file and the tensor, sets it aside and
# continues from the one before it, ending bit-identical to the uninterrupted run; when no
# complete checkpoint is usable, resume stops (one message on 2 ranks)
targs=(--shards "$T/s32" --backbone mobilenetv2 --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
       --epochs 1 --batch_size 16 --checkpoint_every_steps 4 --resume true --quiet)
mkdir -p "$T/resume/checkpoints"
cp "$T/run/checkpoints/"ckpt-* "$T/resume/checkpoints/"
[ "$(ls "$T/resume/checkpoints/"*.DONE | wc -l)" = 2 ] || fail "the run kept $(ls "$T/resume/checkpoints/"*.DONE | wc -l) complete checkpoints, expected 2"
C=$(ls "$T/resume/checkpoints/"ckpt-*.h5 | sort | tail -1)
OLDER=$(ls "$T/resume/checkpoints/"ckpt-*.h5 | sort | head -1)
off=$(data_offset "$C" /weights/dense/kernel)
poke "$C" $((off + 8)) '\x01\x02'
expect 0 "$C: checksum mismatch in tensor 'dense/kernel' (/weights/dense/kernel)" "$RADBATCH" train --run_dir "$T/resume" "${targs[@]}"
grep -qF "trying the checkpoint before it" "$T/out" || { cat "$T/out"; fail "resume does not say it tries the older checkpoint"; }
grep -qF "kept as ${C%.h5}.damaged.h5" "$T/out" || { cat "$T/out"; fail "resume does not say where the damaged checkpoint went"; }
# (the resumed run writes a new checkpoint of that step: cmp tells it from the damaged one)
[ -f "${C%.h5}.damaged.h5" ] && ! cmp -s "$C" "${C%.h5}.damaged.h5" || fail "the damaged checkpoint was not set aside: $(ls "$T/resume/checkpoints")"
case "$(train_log_summary "$T/resume")" in
    "start $(basename "$OLDER" .h5 | sed 's/ckpt-0*//')@$(basename "$OLDER") end finished "*) ;;
    *) fail "the resumed run did not start from the older checkpoint: $(train_log_summary "$T/resume")" ;;
esac
"$RADBATCH" inspect "$M" --diff "$T/resume/model.h5" > "$T/diff" 2>&1
grep -q "^diff: 0 of" "$T/diff" || fail "resumed from the older checkpoint, the model differs from the uninterrupted run: $(cat "$T/diff")"
# the only complete checkpoint damaged, on 2 ranks: one message, exit 1
mkdir -p "$T/resume3/checkpoints"
cp "$OLDER" "${OLDER%.h5}.DONE" "$T/resume3/checkpoints/"
C3="$T/resume3/checkpoints/$(basename "$OLDER")"
off=$(data_offset "$C3" /weights/dense/kernel)
poke "$C3" $((off + 8)) '\x01\x02'
expect 1 "$T/resume3: none of the 1 complete checkpoint is usable; the newest: $C3: checksum mismatch in tensor 'dense/kernel'" \
    rb_run 2 train --run_dir "$T/resume3" "${targs[@]}"
[ "$(grep -c "none of the 1 complete checkpoint" "$T/out")" = 1 ] || { cat "$T/out"; fail "2 ranks: the error is not printed once"; }
[ "$(grep -c "checksum mismatch" "$T/out")" = 2 ] || { cat "$T/out"; fail "2 ranks: expected one warning and the error to name the damaged tensor"; }
# the checkpoint intact, but best.h5 (restore_best's weights) damaged
mkdir -p "$T/resume2/checkpoints"
cp "$(ls "$T/run/checkpoints/"ckpt-*.h5 | sort | tail -1)" "$T/resume2/checkpoints/"
cp "$(ls "$T/run/checkpoints/"ckpt-*.DONE | sort | tail -1)" "$T/resume2/checkpoints/"
cp "$T/run/best.h5" "$T/resume2/best.h5"
off=$(data_offset "$T/resume2/best.h5" /weights/dense/kernel)
poke "$T/resume2/best.h5" $((off + 8)) '\x01\x02'
expect 1 "$T/resume2/best.h5: checksum mismatch in tensor 'dense/kernel' (/weights/dense/kernel)" \
    "$RADBATCH" train --shards "$T/s32" --run_dir "$T/resume2" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 \
    --checkpoint_every_steps 4 --resume true --quiet
ok "a damaged newest checkpoint is set aside and resume continues from the one before; no usable checkpoint, or a damaged best.h5, stops resume"

# ---- shards: 8 overwritten bytes in record 5 of the train shard
D="$T/bad-record"
cp -r "$T/s32" "$D"
S="$D/train-00000-of-00001.h5"
h5dump -d /images -s "5,0,0,0" -c "1,32,32,3" -b LE -o "$T/rec5.bin" "$S" > /dev/null
pat=$(head -c 24 "$T/rec5.bin" | od -An -tx1 -v | tr -d ' \n' | sed 's/\(..\)/\\x\1/g')
off=$(LC_ALL=C grep -obUaP "$pat" "$S" | head -1 | cut -d: -f1)
[ -n "$off" ] || fail "record 5 not found in the shard"
poke "$S" $((off + 100)) '\xde\xad\xbe\xef\xde\xad\xbe\xef'
rec="$S: record 5 fails its CRC-32 check (stored "
for cache in 4096 0; do
    expect 1 "$rec" "$RADBATCH" train --shards "$D" --run_dir "$T/bad-train-$cache" --backbone mobilenetv2 --epochs 1 \
        --batch_size 16 --cache_mb $cache --quiet
done
[ ! -e "$T/bad-train-0/model.h5" ] || fail "train wrote a model from a damaged shard"
expect 1 "$rec" "$RADBATCH" evaluate --model "$M" --data "$D" --split train --out "$T/ev-rec" --quiet
[ ! -e "$T/ev-rec/metrics.json" ] || fail "evaluate wrote metrics from a damaged shard"
expect 1 "$rec" "$RADBATCH" inspect "$S" --export_image 5 --image_out "$T/rec5.png"
expect 1 "$D: verification found 1 problem(s)" "$RADBATCH" inspect "$D" --verify
grep -qF "$S: record 5 fails its CRC-32 check" "$T/out" || fail "inspect --verify does not name the record"
# infer goes on and lists the record in errors.csv
"$RADBATCH" infer --model "$M" --input "$D" --out "$T/inf-rec" --quiet > "$T/inf.log" 2>&1 || true
grep -F "record 5 fails its CRC-32 check" "$T/inf-rec/errors.csv" > /dev/null \
    || { cat "$T/inf.log" "$T/inf-rec/errors.csv"; fail "infer does not report the damaged record"; }
ok "a damaged shard record stops train and evaluate, is named by inspect, is an error row in infer"

# ---- two labels swapped in /labels (every class count stays the same, the pixels' CRC-32s
# still match), then one byte of a record's path: the shard's metadata_checksum catches both
D="$T/swapped-labels"
cp -r "$T/s32" "$D"
S="$D/train-00000-of-00001.h5"
mapfile -t L < <(h5dump -d /labels -y -w 0 "$S" | awk '/DATA {/ { getline; print; exit }' | tr -cs '0-9-' '\n' | grep -v '^$')
[ "${#L[@]}" = 158 ] || fail "expected 158 labels, read ${#L[@]}"
i=0; while [ "${L[$i]}" = "${L[0]}" ]; do i=$((i + 1)); done  # record 0 and record i have different labels
off=$(data_offset "$S" /labels)
poke "$S" "$off" "\\x0${L[$i]}"
poke "$S" $((off + 4 * i)) "\\x0${L[0]}"
h5dump -d /labels -s 0 -c 1 "$S" | grep -q "(0): ${L[$i]}\$" || fail "label 0 was not changed"
meta="$S: metadata_checksum mismatch: the records' labels, paths or source hashes were changed (stored "
for cache in 4096 0; do
    expect 1 "$meta" "$RADBATCH" train --shards "$D" --run_dir "$T/lab-train-$cache" --backbone mobilenetv2 --epochs 1 \
        --batch_size 16 --cache_mb $cache --quiet
    [ ! -e "$T/lab-train-$cache/model.h5" ] || fail "train wrote a model from swapped labels"
done
expect 1 "$meta" "$RADBATCH" evaluate --model "$M" --data "$D" --split train --out "$T/lab-ev" --quiet
[ ! -e "$T/lab-ev/metrics.json" ] || fail "evaluate wrote metrics from swapped labels"
expect 1 "problem: $meta" "$RADBATCH" inspect "$D" --verify
grep -q "^  val-00000-of-00001.h5 " "$T/out" || fail "inspect --verify stopped at the damaged shard instead of going on"
grep -qF "$D: verification found 1 problem(s)" "$T/out" || fail "inspect --verify summary of the swapped labels"
# infer goes on: every record of the shard is an errors.csv row, counted by max_error_fraction
expect 1 "158 of 199 files are errors" "$RADBATCH" infer --model "$M" --input "$D" --out "$T/lab-inf" --quiet
[ "$(grep -cF "train-00000-of-00001.h5#" "$T/lab-inf/errors.csv")" = 158 ] || fail "infer: not one error row per record"
[ "$(tail -n +2 "$T/lab-inf/predictions.csv" | wc -l)" = 41 ] || fail "infer: the val shard's 41 records are not predicted"
cp "$T/s32/train-00000-of-00001.h5" "$S"
p=$(h5dump -d /paths -s 3 -c 1 "$S" | sed -n 's/.*(3): "\(.*\)".*/\1/p')
[ -n "$p" ] || fail "cannot read the path of record 3"
poke "$S" "$(text_offset "$S" "$p")" 'X'
expect 1 "$meta" "$RADBATCH" evaluate --model "$M" --data "$D" --split train --out "$T/path-ev" --quiet
ok "swapped labels or a changed path in a shard are refused by train and evaluate, named by inspect, error rows in infer"

# ---- a truncated shard
D="$T/short-shard"
cp -r "$T/s32" "$D"
S="$D/val-00000-of-00001.h5"
head -c $(( $(stat -c %s "$S") / 2 )) "$S" > "$S.part" && mv "$S.part" "$S"
expect 1 "$S: not a readable HDF5 file (truncated or corrupt?)" \
    "$RADBATCH" train --shards "$D" --run_dir "$T/short-train" --backbone mobilenetv2 --epochs 1 --quiet
expect 1 "$S: not a readable HDF5 file (truncated or corrupt?)" "$RADBATCH" inspect "$D"
ok "a truncated shard is refused"

# ---- index.json: class names swapped, counts edited
D="$T/swapped"
cp -r "$T/s32" "$D"
sed -i 's/"class_names":\t\["NORMAL", "PNEUMONIA"\]/"class_names":\t["PNEUMONIA", "NORMAL"]/' "$D/index.json"
grep -q '"class_names":.*\["PNEUMONIA", "NORMAL"\]' "$D/index.json" || fail "the class names were not swapped"
idx="$D/index.json: checksum mismatch: index_checksum says "
expect 1 "$idx" "$RADBATCH" train --shards "$D" --run_dir "$T/swapped-train" --backbone mobilenetv2 --epochs 1 --quiet
expect 1 "$idx" "$RADBATCH" evaluate --model "$M" --data "$D" --out "$T/swapped-ev" --quiet
expect 1 "$idx" "$RADBATCH" infer --model "$M" --input "$D" --out "$T/swapped-inf" --quiet
expect 1 "$idx" "$RADBATCH" inspect "$D" --verify
[ ! -e "$T/swapped-train/model.h5" ] || fail "train wrote a model with swapped labels"
# the same edit in an index.json without a checksum (format_version 1): the shards disagree
sed -i -e 's/"format_version":\t2/"format_version":\t1/' -e '/"index_checksum"/d' "$D/index.json"
sed -i -e 's/\("config":.*\),$/\1/' "$D/index.json"
expect 1 "$D/train-00000-of-00001.h5: class_names [NORMAL, PNEUMONIA], $D/index.json says [PNEUMONIA, NORMAL]" \
    "$RADBATCH" train --shards "$D" --run_dir "$T/swapped-train1" --backbone mobilenetv2 --epochs 1 --quiet
grep -qF "warning: $D/index.json: a format_version 1 index.json carries no checksum" "$T/out" \
    || fail "no warning for an index.json without checksum"
expect 1 "problem: $D/train-00000-of-00001.h5: class_names [NORMAL, PNEUMONIA]" "$RADBATCH" inspect "$D" --verify
expect 1 "$D: the check of the shards against index.json found 2 problem(s)" "$RADBATCH" inspect "$D"
# infer goes on: each disagreeing shard is an errors.csv row, none of its records is used
"$RADBATCH" infer --model "$M" --input "$D" --out "$T/swapped-inf1" --quiet > /dev/null 2>&1 || true
for f in train-00000-of-00001.h5 val-00000-of-00001.h5; do
    # one grep, no pipe: under pipefail, grep -q closing the pipe early fails the first grep
    grep -qF "/$f: class_names [NORMAL, PNEUMONIA]" "$T/swapped-inf1/errors.csv" \
        || { cat "$T/swapped-inf1/errors.csv"; fail "infer does not report $f"; }
done
[ "$(tail -n +2 "$T/swapped-inf1/predictions.csv" 2>/dev/null | wc -l)" = 0 ] || fail "infer used records of disagreeing shards"
ok "swapped class names in index.json are refused"

D="$T/count"
cp -r "$T/s32" "$D"
n=$(grep -cP '"records":\t158' "$D/index.json")
[ "$n" = 2 ] || fail "expected the train split and its shard to say 158 records"
sed -i '0,/"records":\t158/s//"records":\t157/' "$D/index.json"
expect 1 "$D/index.json: checksum mismatch" "$RADBATCH" train --shards "$D" --run_dir "$T/count-train" --backbone mobilenetv2 \
    --epochs 1 --quiet
sed -i -e 's/"format_version":\t2/"format_version":\t1/' -e '/"index_checksum"/d' -e 's/\("config":.*\),$/\1/' "$D/index.json"
expect 1 "$D/index.json: splits.train.records says 157, its shards' records add up to 158" \
    "$RADBATCH" evaluate --model "$M" --data "$D" --out "$T/count-ev" --quiet
sed -i 's/"records":\t158/"records":\t157/' "$D/index.json"
expect 1 "$D/train-00000-of-00001.h5: 158 records, $D/index.json says 157" \
    "$RADBATCH" train --shards "$D" --run_dir "$T/count-train1" --backbone mobilenetv2 --epochs 1 --quiet
ok "an edited record count in index.json is refused"
