#!/bin/sh
# Fails unless every object file of every library given carries libFuzzer's coverage
# instrumentation (a reference to a __sanitizer_cov_* hook). A library built without
# -fsanitize=fuzzer-no-link leaves the fuzzers blind to its code.
#   check_instrumented.sh NM STAMP LIB.a...
set -eu
nm_prog=$1
stamp=$2
shift 2
status=0
for lib in "$@"; do
    # nm -A prints "archive:member: symbol" on every line
    members=$("$nm_prog" -A "$lib" 2>/dev/null | sed -n 's/^[^:]*:\([^:]*\):.*/\1/p' | sort -u)
    covered=$("$nm_prog" -A "$lib" 2>/dev/null | grep '__sanitizer_cov' |
        sed -n 's/^[^:]*:\([^:]*\):.*/\1/p' | sort -u)
    if [ -z "$members" ]; then
        echo "check_instrumented: $lib: no symbols (nm failed?)" >&2
        status=1
        continue
    fi
    missing=$(printf '%s\n' "$members" | while read -r m; do
        printf '%s\n' "$covered" | grep -qxF "$m" || printf '%s ' "${m##*/}"
    done)
    if [ -n "$missing" ]; then
        echo "check_instrumented: $lib: no __sanitizer_cov symbols in: $missing" >&2
        echo "check_instrumented: compile it with -fsanitize=fuzzer-no-link in a fuzz build" >&2
        status=1
    else
        echo "check_instrumented: $lib: $(printf '%s\n' "$members" | wc -l) objects instrumented"
    fi
done
[ $status -eq 0 ] && [ "$stamp" != - ] && : >"$stamp"
exit $status
