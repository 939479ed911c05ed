# labels: docs
# Every key a command accepts is documented in docs/.
source "$(dirname "$0")/lib.sh"
# help texts are captured whole first: an early-exiting reader in a pipe could SIGPIPE the
# writer and fail the pipeline under pipefail
top=$("$RADBATCH" --help)
for cmd in $(printf '%s\n' "$top" | awk '/^commands:/{f=1; next} f && NF {print $1} f && !NF {f=0}'); do
    help=$("$RADBATCH" "$cmd" --help)
    keys=$(printf '%s\n' "$help" | awk '/^  [a-z_0-9]+ /{print $1}')
    for k in $keys; do
        grep -rqF "\`$k\`" "$RADBATCH_SRC/docs" || fail "key '$k' of '$cmd' is not documented in docs/"
    done
    echo "$cmd: $(echo $keys | wc -w) keys documented"
done
ok "all keys documented"
