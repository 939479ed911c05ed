# labels: mpi
# The shipped job files run as documented: every command of every jobs/examples/*.ini
# (convert, train, evaluate, and infer where the file has an [infer] section) runs on 2 ranks
# from a folder laid out like the repository root, the way tests/demo.sh and the files' own
# comments run them (`mpirun -n 2 radbatch <command> jobs/examples/<file>.ini`), with small
# overrides only: the bundled sample as input when the file's inputs are the full data set,
# 64x64 images, 1 epoch (and 1 fine-tuning epoch where the file fine-tunes). Each file names
# its shards folder once (top-level `shards`): convert writes it, train and evaluate read it.
source "$(dirname "$0")/lib.sh"
W="$T/work"
mkdir -p "$W"
ln -s "$RADBATCH_SRC/tests" "$W/tests"
ln -s "$RADBATCH_SRC/jobs" "$W/jobs"
cd "$W"

# top-level (before any section) value of a key in a job file
top() { awk -v k="$2" '/^[ \t]*\[/ { exit } { sub(/[ \t]*[#;].*$/, "") } index($0, "=") { kk = $0; sub(/[ \t]*=.*/, "", kk); gsub(/^[ \t]+/, "", kk); if (kk == k) { v = $0; sub(/^[^=]*=[ \t]*/, "", v); print v } }' "$1"; }
# value of a key in a section (or top level) of a job file
key() { awk -v s="$2" -v k="$3" '/^[ \t]*\[/ { sec = $0; gsub(/[][ \t]/, "", sec); next } { sub(/[ \t]*[#;].*$/, "") } index($0, "=") && (sec == "" || sec == s) { kk = $0; sub(/[ \t]*=.*/, "", kk); gsub(/^[ \t]+/, "", kk); if (kk == k) { v = $0; sub(/^[^=]*=[ \t]*/, "", v); val = v } } END { print val }' "$1"; }
has_section() { grep -q "^\[$2\]" "$1"; }

# step <log name> <command> <job> [overrides...]
step() {
    local log=$1; shift
    mpirun -n 2 "$RADBATCH" "$@" > "$T/$log.log" 2>&1 || { cat "$T/$log.log"; fail "mpirun -n 2 radbatch $*"; }
}

n=0
for f in jobs/examples/*.ini; do
    name=$(basename "$f" .ini)
    shards=$(top "$f" shards)
    run_dir=$(top "$f" run_dir)
    [ -n "$shards" ] || fail "$f names no top-level shards folder"
    [ -n "$run_dir" ] || fail "$f names no top-level run_dir"
    done_cmds=""

    if has_section "$f" convert; then
        extra=(--height 64 --width 64 --quiet)
        inputs=$(key "$f" convert inputs)
        [ -e "$inputs" ] || extra+=(--inputs tests/data/chest_xray_sample)
        step "$name-convert" convert "$f" "${extra[@]}"
        [ -f "$shards/index.json" ] || fail "$f: convert did not write its shards folder $shards"
        "$RADBATCH" inspect "$shards" --verify > "$T/$name-inspect.log" 2>&1 || { cat "$T/$name-inspect.log"; fail "$f: inspect --verify"; }
        done_cmds+=" convert"
    fi
    if has_section "$f" train; then
        extra=(--epochs 1 --quiet)
        [ -z "$(key "$f" train fine_tune_epochs)" ] || extra+=(--fine_tune_epochs 1)
        step "$name-train" train "$f" "${extra[@]}"
        [ -f "$run_dir/model.h5" ] || fail "$f: train wrote no $run_dir/model.h5"
        card=$("$RADBATCH" inspect "$run_dir/model.h5" | tr -d ' \t')
        [[ "$card" == *"\"shards\":\"$shards\","* ]] || fail "$f: the model was not trained on $shards"
        done_cmds+=" train"
        # evaluate: its own section, or the top-level shards and run_dir (the default out)
        step "$name-evaluate" evaluate "$f" --bootstrap 20
        out=$(key "$f" evaluate out)
        [ -n "$out" ] || out=$run_dir/evaluate
        [ -f "$out/metrics.json" ] || fail "$f: evaluate wrote no $out/metrics.json"
        done_cmds+=" evaluate"
    fi
    if has_section "$f" infer; then
        step "$name-infer" infer "$f"
        out=$(key "$f" infer out)
        [ -f "$out/summary.json" ] || fail "$f: infer wrote no $out/summary.json"
        done_cmds+=" infer"
    fi
    echo "$f:$done_cmds"
    n=$((n + 1))
done
[ $n -ge 4 ] || fail "only $n job files in jobs/examples"
ok "$n shipped job files: every command ran"

# convert's folder when both keys are set: the higher level wins, out on a tie
cd "$T"
printf 'shards = %s/p/top\n[convert]\nheight = 32\nwidth = 32\nquiet = true\n' "$T" > p1.ini
printf 'shards = %s/p/top\n[convert]\nout = %s/p/section\nheight = 32\nwidth = 32\nquiet = true\n' "$T" "$T" > p2.ini
conv() { "$RADBATCH" convert "$@" "$SAMPLE" > /dev/null 2>&1 || fail "convert $*"; }
made() { [ -f "$T/p/$1/index.json" ] || fail "$2: expected $T/p/$1"; for d in "$T"/p/*; do [ "$d" = "$T/p/$1" ] || fail "$2: also wrote $d"; done; rm -rf "$T/p"; }
conv p1.ini; made top "top-level shards only"
conv p1.ini --out "$T/p/cli"; made cli "top-level shards, --out"
conv p2.ini; made section "top-level shards, [convert] out"
conv p2.ini --shards "$T/p/cli"; made cli "[convert] out, --shards"
conv p2.ini --shards "$T/p/cli" --out "$T/p/cli2"; made cli2 "--shards and --out"
ok "convert writes to out or shards, the higher level winning"
