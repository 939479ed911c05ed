# labels: docs
# docs/train.md "What a run does" names the steps of a training run with their functions:
# train_main in jobs/job_train.c calls exactly these, in this order, and every jobs/ file
# the section names exists.
source "$(dirname "$0")/lib.sh"
doc="$RADBATCH_SRC/docs/train.md"
src="$RADBATCH_SRC/jobs/job_train.c"
section=$(awk '/^## What a run does/{f=1; next} f && /^## /{exit} f' "$doc")
[ -n "$section" ] || fail "docs/train.md has no section 'What a run does'"
# the function of each numbered step, in the docs' order
doc_steps=$(printf '%s\n' "$section" | grep -E '^[0-9]+\. ' | grep -oE '\(`train_[a-z_]+`' | tr -d '(`')
[ "$(printf '%s\n' "$doc_steps" | wc -l)" -eq 8 ] || fail "expected 8 numbered steps with their functions, got: $doc_steps"
# the step functions train_main calls, in its order (calls of train_ functions that the
# docs name as steps; helpers such as train_log or train_cache_end are not steps)
body=$(awk '/^static int train_main\(/{f=1} f{print} f && /^}/{exit}' "$src")
[ -n "$body" ] || fail "jobs/job_train.c has no train_main"
code_steps=$(printf '%s\n' "$body" | grep -oE '\btrain_[a-z_]+\(' | tr -d '(' | grep -vx 'train_main' |
             grep -xF -f <(printf '%s\n' "$doc_steps") | awk '!seen[$0]++')
[ "$code_steps" = "$doc_steps" ] || fail "train_main calls the steps as
$code_steps
but docs/train.md lists
$doc_steps"
for s in $doc_steps; do
    grep -qE "^(static )?(int|void) $s\(" "$RADBATCH_SRC"/jobs/*.c || fail "step $s is not defined in jobs/"
done
for f in $(printf '%s\n' "$section" | grep -oE 'jobs/[a-z_]+\.[ch]' | sort -u); do
    [ -f "$RADBATCH_SRC/$f" ] || fail "docs/train.md names $f, which does not exist"
done
ok "train_main runs the $(printf '%s\n' "$doc_steps" | wc -l) steps of docs/train.md in order"
