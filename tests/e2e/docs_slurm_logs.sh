# labels: docs
# Where Slurm job logs go, as docs/train.md and docs/convert.md say: the sbatch scripts
# write <job name>-<job id>.out (job names rb-convert, rb-train, ...) in the submit folder,
# appended to on requeue, and .gitignore ignores rb-*.out so they never show up in a
# checkout; submit-pipeline and sweep write their steps' logs into their logs/ folder.
source "$(dirname "$0")/lib.sh"
cd "$RADBATCH_SRC"
for cmd in convert train evaluate infer; do
    f=slurm/radbatch-$cmd.sbatch
    grep -qx "#SBATCH --job-name=rb-$cmd" "$f" || fail "$f: job name is not rb-$cmd"
    grep -qx "#SBATCH --output=%x-%j.out" "$f" || fail "$f: log is not %x-%j.out"
    grep -qx "#SBATCH --open-mode=append" "$f" || fail "$f: log is not appended to on requeue"
done
grep -q -- '--output="$P/logs/' slurm/submit-pipeline || fail "submit-pipeline: logs not in \$P/logs"
grep -q -- '--output="$P/logs/' slurm/sweep || fail "sweep: logs not in \$P/logs"
grep -qx 'rb-\*\.out' .gitignore || fail ".gitignore does not ignore rb-*.out"
if git -C "$RADBATCH_SRC" rev-parse --git-dir > /dev/null 2>&1; then
    git -C "$RADBATCH_SRC" check-ignore -q rb-train-123.out || fail "git does not ignore rb-train-123.out"
    git -C "$RADBATCH_SRC" check-ignore -q rb-convert-7.out || fail "git does not ignore rb-convert-7.out"
fi
for d in docs/train.md docs/convert.md; do
    grep -q "rb-\*.out" "$d" || fail "$d does not say where job logs go"
done
ok "job logs: rb-<command>-<job id>.out in the submit folder, ignored by git; pipelines and sweeps in logs/"
