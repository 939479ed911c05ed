# train's log describes the model in one line by default (layers, layers with weights and
# trainable ones, params); the full per-layer table comes only with --model_summary full
# (or from radbatch inspect model.h5).
source "$(dirname "$0")/lib.sh"
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
args=(train --shards "$T/s32" --backbone mobilenetv2 --weights "$W" --epochs 1 --max_steps 2 --batch_size 16)
"$RADBATCH" "${args[@]}" --run_dir "$T/short" > "$T/short.log" 2>&1 || { cat "$T/short.log"; fail "train"; }
grep -Eq '^Model "mobilenetv2_1.00_224": 159 layers \(106 with weights, 2 of them trainable\); params 2,422,210 \(9.24 MB\), trainable 164,226, non-trainable 2,257,984$' \
    "$T/short.log" || { cat "$T/short.log"; fail "no one-line model summary"; }
grep -q "Layer (type)" "$T/short.log" && fail "the full table is printed by default"
[ "$(wc -l < "$T/short.log")" -lt 30 ] || { cat "$T/short.log"; fail "the default log has $(wc -l < "$T/short.log") lines"; }
"$RADBATCH" "${args[@]}" --run_dir "$T/full" --model_summary full > "$T/full.log" 2>&1 || { cat "$T/full.log"; fail "train --model_summary full"; }
grep -q "Layer (type)" "$T/full.log" || fail "--model_summary full prints no table"
[ "$(wc -l < "$T/full.log")" -gt 160 ] || fail "--model_summary full: the table is not whole"
"$RADBATCH" inspect "$T/short/model.h5" > "$T/inspect.log" 2>&1 || { cat "$T/inspect.log"; fail "inspect"; }
grep -q "Layer (type)" "$T/inspect.log" || fail "inspect model.h5 prints no table"
ok "one-line model summary by default, the table with --model_summary full or inspect"
