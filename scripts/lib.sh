# Shared by the scripts in this folder (source it from the repository root): a scratch
# folder removed on exit, and servers that print their URL as the first line of stdout
# (`wsprobe serve`, the benchmark echo server), stopped on exit.

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_server NAME COMMAND...: runs COMMAND in the background (stdout in $WORK/NAME.out,
# stderr in $WORK/NAME.err), waits up to 10 s for its first line, and sets URL and PID.
start_server() {
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PID=$!
    PIDS+=("$PID")
    URL=
    for _ in $(seq 100); do
        URL=$(head -n1 "$WORK/$name.out" 2>/dev/null || true)
        [ -n "$URL" ] && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "$name did not print its URL:" >&2
    cat "$WORK/$name.err" >&2
    exit 1
}
