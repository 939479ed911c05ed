# Bad option values end every command with exit 2 and one line naming the key, the value and
# what is accepted, before anything is read or written: numbers out of range, non-numbers,
# booleans other than true/false/yes/no/1/0 (a word after a switch is never taken as an
# input path), on the command line and in a job file; good booleans in any case are taken.
source "$(dirname "$0")/lib.sh"
# expect2 KEY VALUE COMMAND ARGS...: exit 2, a message naming KEY and VALUE, no output folder
expect2() {
    local key=$1 value=$2 rc; shift 2
    set +e
    "$RADBATCH" "$@" > "$T/out.log" 2>&1
    rc=$?
    set -e
    [ $rc = 2 ] || { cat "$T/out.log"; fail "$*: exit $rc, expected 2"; }
    grep -q "'$key'" "$T/out.log" && grep -qF -- "'$value'" "$T/out.log" && grep -q "accepted" "$T/out.log" ||
        { cat "$T/out.log"; fail "$*: the message does not name key '$key', value '$value' and what is accepted"; }
    [ ! -e "$T/o" ] || fail "$*: created its output folder"
}
M="$T/none.h5" # never read: the options fail first
for v in -3 0 abc 1.5; do expect2 batch_size "$v" train --shards "$T/s" --run_dir "$T/o" --batch_size "$v"; done
expect2 epochs -1 train --shards "$T/s" --run_dir "$T/o" --epochs -1
expect2 learning_rate 0 train --shards "$T/s" --run_dir "$T/o" --learning_rate 0
expect2 crop 0.01 train --shards "$T/s" --run_dir "$T/o" --crop 0.01
expect2 momentum nan train --shards "$T/s" --run_dir "$T/o" --momentum nan
expect2 height 0 convert "$SAMPLE" --out "$T/o" --height 0
expect2 width 9000 convert "$SAMPLE" --out "$T/o" --width 9000
expect2 channels 2 convert "$SAMPLE" --out "$T/o" --channels 2
expect2 val_fraction 1 convert "$SAMPLE" --out "$T/o" --val_fraction 1
expect2 max_error_fraction 2 convert "$SAMPLE" --out "$T/o" --max_error_fraction 2
expect2 chunk 0 infer --model "$M" --input "$SAMPLE" --out "$T/o" --chunk 0
expect2 batch 5000 infer --model "$M" --input "$SAMPLE" --out "$T/o" --batch 5000
expect2 tta 3 evaluate --model "$M" --data "$SAMPLE" --out "$T/o" --tta 3
expect2 threshold sensitivity:1.5 evaluate --model "$M" --data "$SAMPLE" --out "$T/o" --threshold sensitivity:1.5
expect2 tta -1 predict --model "$M" "$SAMPLE/NORMAL/x.jpeg" --tta -1
expect2 threads -1 predict --model "$M" "$SAMPLE/NORMAL/x.jpeg" --threads -1
expect2 export_image -2 inspect "$T/s" --export_image -2
ok "numbers out of range or not numbers: exit 2"

# booleans: a word after a switch is its value, never an input path
expect2 dedupe maybe convert "$SAMPLE" --out "$T/o" --dedupe maybe
expect2 dedupe on convert --dedupe on "$SAMPLE" --out "$T/o"
expect2 quiet "$SAMPLE" convert --out "$T/o" --quiet "$SAMPLE"
expect2 resume sometimes train --shards "$T/s" --run_dir "$T/o" --resume sometimes
expect2 quiet 2 infer --model "$M" --input "$SAMPLE" --out "$T/o" --quiet 2
expect2 quiet x evaluate --model "$M" --data "$SAMPLE" --out "$T/o" --quiet=x
expect2 json yes-please predict --model "$M" --json yes-please "$SAMPLE/NORMAL/x.jpeg"
expect2 verify nope inspect "$T/s" --verify nope
ok "booleans other than true/false/yes/no/1/0: exit 2"

# no output folder at all: a bad configuration too
nout() {
    local key=$1 rc; shift
    set +e
    "$RADBATCH" "$@" > "$T/out.log" 2>&1
    rc=$?
    set -e
    [ $rc = 2 ] && grep -q "key '$key' is empty" "$T/out.log" || { cat "$T/out.log"; fail "$* without $key: exit $rc, expected 2 naming $key"; }
}
nout out convert "$SAMPLE"
nout run_dir train --shards "$T/s"
nout out infer --model "$M" --input "$SAMPLE"
ok "no output folder: exit 2"

# the same in a job file, top level and in the command's section
printf 'height = -5\n' > "$T/top.ini"
expect2 height -5 convert "$T/top.ini" "$SAMPLE" --out "$T/o"
printf '[train]\nshuffle = sure\n' > "$T/sec.ini"
expect2 shuffle sure train "$T/sec.ini" --shards "$T/s" --run_dir "$T/o"

# good booleans in any case, bare switches before another option or at the end
"$RADBATCH" convert "$SAMPLE" --out "$T/ok" --height 16 --width 16 --dedupe YES --quiet > /dev/null ||
    fail "--dedupe YES rejected"
"$RADBATCH" inspect "$T/ok" --verify --list False > "$T/ok.log" || fail "inspect --verify --list False"
! grep -q '^record' "$T/ok.log" || fail "--list False listed the records"
"$RADBATCH" inspect "$T/ok" --list 1 --verify > "$T/ok.log" || fail "inspect --list 1 --verify"
grep -q '^record' "$T/ok.log" || fail "--list 1 did not list the records"
ok "true/false/yes/no/1/0 in any case accepted"
