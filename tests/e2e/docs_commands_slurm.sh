# labels: slurm
# The commands of README.md and docs/slurm.md, run as written, so that a doc that drifts from
# the program turns CI red. Every ```sh block of the two files carries a marker on the line
# before it: "<!-- test: run -->" (this test runs it) or "<!-- test: not run: <reason> -->"
# (e.g. a real cluster's partition and /data paths); an unmarked block fails the test.
#
# The runnable blocks of a file run in file order as one bash script (set -e: any failing
# command fails the test) in a scratch copy of the repository root ($T/repo: links to slurm/,
# jobs/, tests/, docs/ and build/ -> the folder of the binary under test), on the bundled
# sample and on this test's own one-node cluster (slurm/local-cluster, 2 CPUs as on the CI
# machine). The only substitutions, applied to the block text before it runs:
#   README.md      "bash tests/setup.sh"  -> ":"   the build under test already exists (and
#                                                   setup.sh would rebuild build/ itself)
#                  "bash tests/run.sh"    -> ":"   the suite this test is part of
#                  "my_xrays/"            -> tests/data/chest_xray_sample/   (the sample)
#                  "/archive/xrays"       -> tests/data/chest_xray_sample
#                  "image.jpeg"           -> the first image of the sample's NORMAL/ folder
#   docs/slurm.md  "/tmp/mycluster"       -> this test's cluster folder ($C)
# Sizes are the docs' own (the demo job file, the sample's 199 images).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm_lib.sh"

R="$T/repo"
mkdir -p "$R"
for d in slurm jobs tests docs; do ln -s "$RADBATCH_SRC/$d" "$R/$d"; done
ln -s "$(cd "$(dirname "$RADBATCH")" && pwd)" "$R/build"
[ -x "$R/build/radbatch" ] || fail "$R/build/radbatch: the binary under test is not named radbatch"
img=$(find "$SAMPLE/NORMAL" -type f | sort | sed -n 1p)

# blocks FILE: every ```sh block of FILE as "<marker>\t<first line number>" on stdout, and the
# runnable ones appended to $T/<name>.sh; fails on an unmarked block
blocks() {
    local f=$1 out=$2
    awk -v out="$out" -v file="$f" '
        /^<!-- test: run -->$/ { mark = "run"; mline = NR; next }
        /^<!-- test: not run: .+ -->$/ { mark = "not run"; mline = NR; next }
        inb && /^```/ { inb = 0; if (m == "run") printf "\n" >> out; next }
        inb { if (m == "run") print >> out; next }
        /^```(sh|bash)[ \t]*$/ {
            inb = 1; m = (mline == NR - 1) ? mark : ""
            if (m == "") { printf "%s:%d: a ```sh block without a <!-- test: run --> or <!-- test: not run: reason --> line before it\n", file, NR; bad = 1 }
            if (m == "run") printf "echo \"== %s:%d\"\n", file, NR >> out
            print m "\t" NR
            next
        }
        /^```/ { other = !other }
        END { exit bad }' "$f"
}
: > "$T/readme.sh"; : > "$T/slurm.sh"
blocks "$RADBATCH_SRC/README.md" "$T/readme.sh" > "$T/readme-blocks.txt" || { cat "$T/readme-blocks.txt"; fail "README.md has unmarked sh blocks"; }
blocks "$RADBATCH_SRC/docs/slurm.md" "$T/slurm.sh" > "$T/slurm-blocks.txt" || { cat "$T/slurm-blocks.txt"; fail "docs/slurm.md has unmarked sh blocks"; }
[ "$(head -n 1 "$T/readme-blocks.txt" | cut -f1)" = run ] || fail "README.md's first block is not marked <!-- test: run -->"
nr=$(grep -c '^run' "$T/readme-blocks.txt"); ns=$(grep -c '^run' "$T/slurm-blocks.txt")
[ "$ns" -ge 4 ] || fail "docs/slurm.md has only $ns runnable blocks"

sed -i -e 's#bash tests/setup\.sh#:#g' -e 's#bash tests/run\.sh#:#g' -e 's#my_xrays/#tests/data/chest_xray_sample/#g' \
    -e 's#/archive/xrays#tests/data/chest_xray_sample#g' -e "s#image\\.jpeg#$img#g" "$T/readme.sh"
sed -i "s#/tmp/mycluster#$C#g" "$T/slurm.sh"
grep -q "my_xrays\|/archive/\|image\.jpeg" "$T/readme.sh" && fail "a README path was not substituted"

t0=$(date +%s)
(cd "$R" && bash -e -o pipefail "$T/readme.sh") > "$T/readme.out" 2>&1 || { tail -n 40 "$T/readme.out"; fail "a README.md command failed (whole output: $T/readme.out)"; }
[ -s "$R/runs/demo/evaluate/report.html" ] && [ -s "$R/runs/demo/infer/report.html" ] || fail "tests/demo.sh wrote no reports"
[ -s "$R/run/eval-val/report.html" ] && [ -s "$R/run/eval-test/report.html" ] && [ -s "$R/run/model-sens95.h5" ] && [ -s "$R/screen/predictions.csv" ] || fail "README's first run wrote no evaluate report or predictions"
grep -q "PNEUMONIA\|NORMAL" "$T/readme.out" || fail "no prediction line from README's predict command"
ok "README.md: $nr block(s) as written ($(( $(date +%s) - t0 )) s)"

# docs/slurm.md: a job asking for more CPUs than the node has is rejected at submission
ncpu=$(sinfo -h -o %c | sed -n 1p)
if out=$(sbatch --parsable -n 1 -c $((ncpu + 1)) --wrap true 2>&1); then fail "a job of $((ncpu + 1)) CPUs on a $ncpu-CPU node was accepted: $out"; fi
grep -q "More processors requested than permitted" <<<"$out" || fail "unexpected sbatch message: $out"

# a fresh runs/ for docs/slurm.md (the README blocks wrote runs/demo)
rm -rf "$R/runs" "$R"/rb-*.out
t0=$(date +%s)
(cd "$R" && bash -e -o pipefail "$T/slurm.sh") > "$T/slurm.out" 2>&1 || { tail -n 60 "$T/slurm.out"; logs "$R"/rb-*.out; fail "a docs/slurm.md command failed (whole output: $T/slurm.out)"; }
for s in convert train evaluate infer; do
    ls "$R"/rb-$s-*.out > /dev/null 2>&1 || fail "no log of the $s job in the submit folder"
done
[ -s "$R/runs/demo/evaluate/report.html" ] && [ -s "$R/runs/demo/infer/report.html" ] || fail "the sbatch jobs wrote no reports"
# the journey: the operating point chosen on val (sensitivity >= 0.95), reported on test
jq -e '.screening.threshold.chosen_on_reported_split == true' "$R/runs/demo/evaluate/metrics.json" > /dev/null ||
    fail "evaluate on val does not say that its threshold was chosen there"
jq -e '(.screening.threshold.source | test("sensitivity:0.95 on val")) and .screening.threshold.chosen_on_reported_split == false' \
    "$R/runs/demo/evaluate-test/metrics.json" > /dev/null || fail "the test-split report does not use the operating point chosen on val"
jq -e '.screening.sensitivity >= 0.95' "$R/runs/demo/evaluate/metrics.json" > /dev/null ||
    { jq '.screening' "$R/runs/demo/evaluate/metrics.json"; fail "the stored operating point does not reach sensitivity 0.95 on val"; }
grep -q "threshold 0\.[0-9]* on PNEUMONIA (model card: sensitivity:0.95 on val" "$T/slurm.out" "$R"/rb-infer-*.out ||
    fail "infer did not screen at the stored operating point"
P=$(ls -d "$R"/runs/pipelines/demo-*)
[ "$(wc -l < "$P/jobs.txt")" = 4 ] || fail "the pipeline has $(wc -l < "$P/jobs.txt") jobs, expected 4"
# (the doc's last block stopped the cluster: its job records are gone, the folders tell)
while IFS=$'\t' read -r step id dep dir; do
    grep -Eq '"complete":[[:space:]]*true' "$dir/summary.json" 2> /dev/null || { logs "$P/logs/$step-$id.out"; fail "pipeline $step: $dir is not finished"; }
done < "$P/jobs.txt"
[ "$(readlink "$R/runs/screens/latest")" = screen-2026-01-03 ] || fail "screens/latest is $(readlink "$R/runs/screens/latest")"
grep -q "nothing new" "$T/slurm.out" || fail "the third screening did not say 'nothing new'"
base=$(grep -E -- "command: .* --out [^ ]*/screen-2026-01-02( |$)" "$T/slurm.out") || fail "no infer command of the new baseline"
grep -q -- "--since" <<<"$base" && fail "the new baseline ran with --since: $base"
W=$(ls -d "$R"/runs/sweeps/demo-sweep-*)
[ "$(awk -F, 'NR > 1 && $2 == "ok"' "$W/comparison.csv" | wc -l)" = 2 ] || { cat "$W/comparison.csv"; fail "the sweep's comparison.csv has not 2 ok rows"; }
[ ! -e "$C" ] || fail "the doc's last block did not stop the cluster"
ok "docs/slurm.md: $ns block(s) as written on a local cluster ($(( $(date +%s) - t0 )) s)"
