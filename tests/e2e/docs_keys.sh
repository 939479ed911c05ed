# labels: docs
# Every key a command accepts is documented in docs/.
source "$(dirname "$0")/lib.sh"
for cmd in $("$RADBATCH" --help | awk '/^commands:/{f=1; next} f && NF {print $1} f && !NF {exit}'); do
    keys=$("$RADBATCH" "$cmd" --help | awk '/^  [a-z_0-9]+ /{print $1}')
    for k in $keys; do
        grep -rqF "\`$k\`" "$RADBATCH_SRC/docs" || fail "key '$k' of '$cmd' is not documented in docs/"
    done
    echo "$cmd: $(echo $keys | wc -w) keys documented"
done
ok "all keys documented"
