#!/usr/bin/env bash
# CI: runs the example scripts (scripts/*.wsp) against `wsprobe serve`.
#
# Starts `wsprobe serve` on a free loopback port with what the examples need (a bearer
# token, an API key, a broadcast route `sendmessage`, the `whoami` route), reads the URL it
# prints, runs `wsprobe run scripts/*.wsp` against it (JUnit report in
# target/ci-examples.xml), stops the server, and fails if any example failed.
#
# The `wsp` examples of README.md and docs/ run against a server with the same routes, in
# `cargo test` (crates/wsprobe/tests/it/docs.rs; the rules are in docs/README.md).
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

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
start_server serve "$WSPROBE" serve --listen 127.0.0.1:0 \
    --token "$TOKEN" --api-key "$API_KEY" \
    --route sendmessage=broadcast --route whoami=whoami

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
