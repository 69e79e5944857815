#!/usr/bin/env bash
# Soak benchmark of `wsprobe load --reconnect` (run by hand, never in CI). Needs jq and
# GNU time (/usr/bin/time).
#
# 2,000 connections against `wsprobe serve --max-connection-duration 1m --idle-timeout
# 30s` (API Gateway's 2-hour and 10-minute limits, scaled down) for 10 minutes: every
# connection is closed with 1001 once a minute and reopened, and pings are rarer than the
# idle timeout (at the default 40/s, each connection pings every 50 s), so only the
# --keepalive-message keeps the connections alive between them. Prints the reconnects,
# the pings lost to them, the achieved / target rate, the errors, and wsprobe's peak RSS.
# Goal: no error, the rate within 1% of its target, ~10 reconnects per connection.
#
# Usage: [CONNECTIONS=2000] [RATE=40/s] scripts/bench-soak.sh [DURATION]
#   DURATION: how long the load runs (default 10m), e.g. 2m for a shorter check.

set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-10m}"
CONNECTIONS="${CONNECTIONS:-2000}"
RATE="${RATE:-40/s}"
KEEPALIVE=20s
KEEPALIVE_MESSAGE='{"action":"send","body":"keepalive"}'

if (( $(ulimit -n) < CONNECTIONS * 2 + 100 )); then
    echo "the open-file limit ($(ulimit -n)) is too low for $CONNECTIONS connections and" \
        "the server's in one machine: raise it (ulimit -n)" >&2
    exit 1
fi

cargo build --release -p wsprobe --bin wsprobe
BIN=target/release/wsprobe

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

start_server serve "$BIN" serve --listen 127.0.0.1:0 --max-connection-duration 1m \
    --idle-timeout 30s
SERVE_URL=$URL
JSON="$WORK/soak.json"
COMMAND=("$BIN" load "$SERVE_URL" -c "$CONNECTIONS" --rate "$RATE" -d "$DURATION"
    --connect-rate 500/s --reconnect --keepalive "$KEEPALIVE"
    --keepalive-message "$KEEPALIVE_MESSAGE" --no-progress --report-json "$JSON")
echo "running: ${COMMAND[*]}" >&2
status=0
/usr/bin/time -f '%M' -o "$WORK/rss" "${COMMAND[@]}" >"$WORK/table" || status=$?
cat "$WORK/table"
echo
jq -r --arg rss "$(tail -n1 "$WORK/rss")" --arg status "$status" '
    "exit status:        \($status)",
    "connections:        \(.connections.opened) of \(.connections.requested) opened, \(.connections.failed) failed, \(.connections.dropped) dropped",
    "reconnects:         \(.connections.reconnects) (by code: \(.connections.reconnects_by_code | tojson); not reopened: \(.connections.reconnect_failures | tojson))",
    "reconnect latency:  p50 \(.reconnect_ms.p50) ms, p99 \(.reconnect_ms.p99) ms, max \(.reconnect_ms.max) ms",
    "disconnected:       \(.connections.disconnected_s) s in all",
    "pings:              \(.messages.sent) sent, \(.messages.echoed) echoed, \(.messages.lost_to_reconnect) lost to reconnects",
    "keepalives:         \(.messages.keepalives) sent, \(.messages.keepalive_answers) answered",
    "rate:               \(.achieved_rate) / \(.target_rate) per s achieved (\(.achieved_rate / .target_rate * 100 | . * 100 | round / 100) %)",
    "errors:             \(.messages.errors)",
    "peak RSS:           \($rss) KiB"' "$JSON"
exit "$status"
