#!/usr/bin/env bash
# CI: runs the example scripts (scripts/*.wsp) against `wsprobe serve`.
#
# Starts `wsprobe serve` on a free loopback port with what the examples need (a bearer
# token, an API key, a broadcast route `sendmessage`, the `whoami` route), reads the URL it
# prints, runs `wsprobe run scripts/*.wsp` against it (JUnit report in
# target/ci-examples.xml), stops the server, and fails if any example failed.
#
# WSPROBE=path/to/wsprobe uses that binary instead of building one (debug).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${WSPROBE:-}" ]; then
    cargo build --quiet --locked --bin wsprobe
    WSPROBE=target/debug/wsprobe
fi

# Credentials of the throwaway server; the examples get them with --var.
TOKEN=ci-example-token
API_KEY=ci-example-key

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$WSPROBE" serve --listen 127.0.0.1:0 \
    --token "$TOKEN" --api-key "$API_KEY" \
    --route sendmessage=broadcast --route whoami=whoami \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!

URL=
for _ in $(seq 100); do
    URL=$(head -n1 "$WORK/serve.out" 2>/dev/null || true)
    [ -n "$URL" ] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ -z "$URL" ]; then
    echo "wsprobe serve did not print its URL:" >&2
    cat "$WORK/serve.err" >&2
    exit 1
fi

mkdir -p target
status=0
"$WSPROBE" run scripts/*.wsp --url "$URL" \
    --var "TOKEN=$TOKEN" --var "API_KEY=$API_KEY" \
    --report junit=target/ci-examples.xml || status=$?

if [ "$status" -ne 0 ]; then
    echo "example scripts failed (exit $status); server log:" >&2
    cat "$WORK/serve.err" >&2
fi
exit "$status"
