# labels: docs
# Every group_regex that README.md, docs/*.md, jobs/examples/*.ini and slurm/ give is the
# one regex that groups the Kermany chest X-rays by patient (docs/convert.md); a copy that
# drifts (the README once dropped NORMAL2-IM-, putting 12 patients on both sides of the
# split) fails here. Also the tests' own GROUPS_RE, and the regex really groups the sample:
# it matches every file name.
source "$(dirname "$0")/lib.sh"
RE='^(person[0-9]+|NORMAL2-IM-[0-9]+|IM-[0-9]+)'
cd "$RADBATCH_SRC"
files=(README.md docs/*.md jobs/examples/*.ini slurm/* tests/e2e/lib.sh)
# every mention of group_regex followed by a value: `group_regex = v`, `--group_regex 'v'`,
# "group_regex": "v", GROUPS_RE='v'
# (lines that quote convert's report or warning, "... matched ...", show what a bad regex
# gives and are left out)
grep -nE "(group_regex|GROUPS_RE)[\"'\`]?[[:space:]]*[:=]?[[:space:]]*[\"'\`]?\^" "${files[@]}" | grep -v "matched" > "$T/found" || true
n=0
while IFS= read -r line; do
    v=$(printf '%s\n' "$line" | grep -oE "(group_regex|GROUPS_RE)[\"'\`]?[[:space:]]*[:=]?[[:space:]]*[\"'\`]?\^[^\"'\` ]*" |
        sed -E "s/^[^^]*//")
    [ "$v" = "$RE" ] || fail "${line%%:*}:$(echo "$line" | cut -d: -f2): group_regex '$v' differs from '$RE'"
    n=$((n + 1))
done < "$T/found"
[ "$n" -ge 8 ] || { cat "$T/found"; fail "found only $n group_regex values (README, docs, job examples, slurm)"; }
for f in README.md jobs/examples/demo.ini; do
    grep -qF "$RE" "$f" || fail "$f gives no group_regex"
done
# the regex matches every file name of the sample (ERE, on the base name, as convert does)
total=$(find "$SAMPLE" -type f | wc -l)
matched=$(find "$SAMPLE" -type f -printf '%f\n' | grep -cE "$RE")
[ "$matched" = "$total" ] || fail "the regex matches $matched of $total sample files"
# a regex that differs is caught (the check above can fail)
printf 'group_regex = ^(person[0-9]+|IM-[0-9]+)\n' > "$T/bad.ini"
v=$(grep -oE "(group_regex|GROUPS_RE)[\"'\`]?[[:space:]]*[:=]?[[:space:]]*[\"'\`]?\^[^\"'\` ]*" "$T/bad.ini" | sed -E "s/^[^^]*//")
[ "$v" = '^(person[0-9]+|IM-[0-9]+)' ] || fail "the extraction does not see the README's old regex (got '$v')"
ok "$n group_regex values in README, docs, job examples and slurm/ are all $RE"
