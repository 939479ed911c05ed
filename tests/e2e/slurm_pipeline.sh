# labels: slurm
# The pipeline as Slurm jobs on a real local cluster (slurm/local-cluster): submit-pipeline
# chains convert -> train -> evaluate -> infer with afterok on the bundled sample, 2 MPI
# tasks per job through srun; every job ends COMPLETED with its report. Then the nightly
# screening: three runs over a growing archive (everything, 3 new files, nothing new), each
# a Slurm job, the latest link moving each time, and the self-resubmitting job queueing the
# next night's run. Steps whose command this radbatch does not have yet are left out.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm_lib.sh"

steps=convert,train
have_cmd evaluate && steps=$steps,evaluate
have_cmd infer && steps=$steps,infer
# the archive to screen: 24 sample images in dated subfolders, as an archive grows
arch="$T/archive"
mkdir -p "$arch/2026-01-01"
for c in NORMAL PNEUMONIA; do
    mapfile -t files < <(find "$SAMPLE/$c" -type f | sort)
    for f in "${files[@]:0:12}"; do cp "$f" "$arch/2026-01-01/${c}_$(basename "$f")"; done
done
{
    echo "[convert]"
    echo "inputs = $SAMPLE"
    echo "height = 96"
    echo "width = 96"
    echo "group_regex = $GROUPS_RE"
    echo "[train]"
    echo "backbone = mobilenetv2"
    echo "weights = $RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
    echo "epochs = 2"
    echo "batch_size = 16"
    echo "quiet = true"
    if have_cmd infer; then printf '[infer]\ninput = %s\n' "$arch"; fi
    printf '[slurm]\nntasks = 2\ncpus_per_task = 1\ntime = 10\n'
} > "$T/demo.ini"

t0=$(date +%s)
"$SL/submit-pipeline" "$T/demo.ini" --runs "$T/runs" --steps "$steps" > "$T/submit.txt" 2>&1 || { cat "$T/submit.txt"; fail "submit-pipeline"; }
cat "$T/submit.txt"
P=$(sed -n 's/^pipeline demo: //p' "$T/submit.txt")
[ -d "$P" ] || fail "no pipeline folder in the submit-pipeline output"
last=$(tail -n 1 "$P/jobs.txt" | cut -f2)
swait "$last" 600 > /dev/null || true
while IFS=$'\t' read -r step id dep dir; do
    st=$(jstate "$id")
    [ "$st" = "COMPLETED 0:0" ] || { logs "$P"/logs/*.out; fail "$step job $id ended $st"; }
    grep -q "launcher: srun --mpi=pmix" "$P/logs/$step-$id.out" || { logs "$P/logs/$step-$id.out"; fail "$step did not run through srun --mpi=pmix"; }
    echo "$step job $id: $st ($dep)"
done < "$P/jobs.txt"
[ "$(wc -l < "$P/jobs.txt")" = "$(echo "$steps" | tr ',' '\n' | wc -l)" ] || fail "jobs.txt does not list every step"
[ -f "$P/shards/index.json" ] || fail "no shards"
"$RADBATCH" inspect "$P/train/model.h5" | grep -Eq '"ranks":[[:space:]]*2' || fail "the model was not trained on 2 ranks"
if have_cmd evaluate; then
    [ -s "$P/evaluate/report.html" ] && [ -s "$P/evaluate/metrics.json" ] || fail "evaluate wrote no report.html/metrics.json"
fi
if have_cmd infer; then
    [ -s "$P/infer/report.html" ] || fail "infer wrote no report.html"
    [ "$(($(wc -l < "$P/infer/predictions.csv") - 1))" = 24 ] || fail "infer: $(wc -l < "$P/infer/predictions.csv") lines in predictions.csv, expected 24 + header"
fi
ok "pipeline $steps: every job COMPLETED, reports written ($(( $(date +%s) - t0 )) s)"

if ! have_cmd infer; then
    skip "this radbatch has no infer command; nightly screening not tested"
fi
# ---- nightly screening ----
S="$T/screens"
screen() {  # date [--once]: one nightly run as a Slurm job, now; prints the job id
    local out
    out=$("$SL/nightly-screen" submit --model "$P/train/model.h5" --archive "$arch" --runs "$S" --name rbtest-screen \
        --now --date "$@" -- --ntasks=2 --time=10) || fail "nightly-screen submit: $out"
    out=$(sed -n 's/^submitted rbtest-screen job \([0-9]*\).*/\1/p' <<<"$out")
    swait "$out" 300 > /dev/null || { logs "$S"/logs/*.out; fail "nightly run $1 (job $out): $(jstate "$out")"; }
    echo "$out"
}
summary() { grep -Eo "\"$2\":[[:space:]]*[0-9]+" "$S/screen-$1/summary.json" | grep -Eo '[0-9]+$'; }
j1=$(screen 2026-01-01 --once)
[ "$(readlink "$S/latest")" = screen-2026-01-01 ] || fail "latest is $(readlink "$S/latest"), expected screen-2026-01-01"
[ "$(summary 2026-01-01 new)" = 24 ] || fail "first run: $(summary 2026-01-01 new) new files, expected 24"
mkdir -p "$arch/2026-01-02"
mapfile -t files < <(find "$SAMPLE/PNEUMONIA" -type f | sort)
for f in "${files[@]: -3}"; do cp "$f" "$arch/2026-01-02/"; done
j2=$(screen 2026-01-02 --once)
[ "$(readlink "$S/latest")" = screen-2026-01-02 ] || fail "latest did not move to screen-2026-01-02"
[ "$(summary 2026-01-02 new)" = 3 ] || fail "second run: $(summary 2026-01-02 new) new files, expected 3"
grep -q -- "--since $S/screen-2026-01-01" "$S/logs/rbtest-screen-$j2.out" || fail "second run did not use --since the first"
# the third run finds nothing new, says so, exits 0 and queues tomorrow's run
j3=$(screen 2026-01-03)
grep -q "nothing new" "$S/logs/rbtest-screen-$j3.out" || { logs "$S/logs/rbtest-screen-$j3.out"; fail "no 'nothing new' line"; }
[ "$(readlink "$S/latest")" = screen-2026-01-03 ] || fail "latest did not move to screen-2026-01-03"
next=$(squeue -h -n rbtest-screen -t PENDING -o %i)
[ -n "$next" ] || fail "the nightly job did not queue the next night's run"
[ "$(jfield "$next" StartTime)" = "$(date -d "tomorrow 02:00" +%Y-%m-%dT%H:%M:%S)" ] || fail "next run starts $(jfield "$next" StartTime), expected tomorrow 02:00"
"$SL/nightly-screen" stop --name rbtest-screen > /dev/null
[ -z "$(squeue -h -n rbtest-screen -t PENDING -o %i)" ] || fail "nightly-screen stop left a pending job"
ok "nightly screening: 24, 3, then nothing new (exit 0); latest moved each time; next night queued at 02:00 ($(( $(date +%s) - t0 )) s)"
