#!/usr/bin/env bash
# Benchmark of `wsprobe serve` (run by hand, not in CI).
#
# In one run, with the same client (examples/bench_client.rs) against each server:
#   1. echo round trips per second through `wsprobe serve` (route `send`), against a
#      minimal tokio-tungstenite echo server (examples/bench_echo_server.rs) as the
#      baseline. Goal: serve >= 0.8 x baseline.
#   2. resident memory per idle connection at IDLE connections (VmRSS of the server before
#      and after they connect). Goal: serve < 32 KiB per connection.
# Figures are reported as ratios against the baseline measured in the same run: the
# machine may be shared and noisy, so absolute numbers vary from run to run.
#
# Settings (environment): CONNECTIONS (echo clients, default 32), BENCH_SECONDS (per echo run,
# default 5), ROUNDS (echo runs per server, best kept, default 3), IDLE (idle connections,
# default 10000).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-32}
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-10000}

# Each idle connection costs a descriptor in the client and one in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE + 512)) ]; then
    echo "ulimit -n is $(ulimit -n); IDLE=$IDLE needs more (raise the hard limit or lower IDLE)" >&2
    exit 1
fi

cargo build --release --quiet -p wsprobe --features bench --bin wsprobe --example bench_echo_server --example bench_client
WSPROBE=target/release/wsprobe
BASELINE=target/release/examples/bench_echo_server
CLIENT=target/release/examples/bench_client

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

max() { if [ "$2" -gt "$1" ]; then echo "$2"; else echo "$1"; fi; }

# one_rate URL MESSAGE: round trips per second of one run.
one_rate() {
    "$CLIENT" echo "$1" "$CONNECTIONS" "$SECONDS_PER_RUN" "$2" | sed -n 's/^round_trips_per_second=//p'
}

# idle_kib PID URL: KiB of server RSS per idle connection at IDLE connections.
idle_kib() {
    local pid=$1 url=$2 before after ready
    before=$(rss_kib "$pid")
    "$CLIENT" idle "$url" "$IDLE" 30 >"$WORK/idle.out" &
    local client=$!
    for _ in $(seq 600); do
        ready=$(sed -n 's/^ready //p' "$WORK/idle.out")
        [ -n "$ready" ] && break
        sleep 0.1
    done
    if [ -z "${ready:-}" ]; then echo "idle client never got ready" >&2; exit 1; fi
    # Let the server finish its side of the last handshakes.
    sleep 1
    after=$(rss_kib "$pid")
    kill "$client" 2>/dev/null || true
    wait "$client" 2>/dev/null || true
    if [ "$ready" -lt "$IDLE" ]; then echo "only $ready of $IDLE idle connections opened" >&2; fi
    awk -v b="$before" -v a="$after" -v n="$ready" 'BEGIN { printf "%.1f", (a - b) / n }'
}

SEND='{"action":"send","body":"Hello World!"}'

start_server baseline "$BASELINE" 127.0.0.1:0
BASELINE_URL=$URL BASELINE_PID=$PID
start_server serve "$WSPROBE" serve --listen 127.0.0.1:0 --quiet
SERVE_URL=$URL SERVE_PID=$PID
start_server serve-log "$WSPROBE" serve --listen 127.0.0.1:0
SERVE_LOG_URL=$URL SERVE_LOG_PID=$PID
# The logging server writes its lines to a file like a real access log would.

echo "echo round trips: $CONNECTIONS connections, best of $ROUNDS interleaved rounds of ${SECONDS_PER_RUN}s (machine: $(nproc) cores, shared)"
# Rounds interleave the servers, so a burst of load from elsewhere on the machine hits
# them alike; the best round of each is kept (noise only ever slows a run down).
BASELINE_RATE=0 SERVE_RATE=0 SERVE_LOG_RATE=0
for _ in $(seq "$ROUNDS"); do
    BASELINE_RATE=$(max "$BASELINE_RATE" "$(one_rate "$BASELINE_URL" "$SEND")")
    SERVE_RATE=$(max "$SERVE_RATE" "$(one_rate "$SERVE_URL" "$SEND")")
    SERVE_LOG_RATE=$(max "$SERVE_LOG_RATE" "$(one_rate "$SERVE_LOG_URL" "$SEND")")
done
printf '  %-34s %8s/s\n' "minimal tokio-tungstenite echo" "$BASELINE_RATE"
printf '  %-34s %8s/s  ratio %s (goal >= 0.8)\n' "wsprobe serve --quiet (send)" "$SERVE_RATE" \
    "$(awk -v s="$SERVE_RATE" -v b="$BASELINE_RATE" 'BEGIN { printf "%.2f", s / b }')"
printf '  %-34s %8s/s  ratio %s\n' "wsprobe serve, logging (send)" "$SERVE_LOG_RATE" \
    "$(awk -v s="$SERVE_LOG_RATE" -v b="$BASELINE_RATE" 'BEGIN { printf "%.2f", s / b }')"
kill "$SERVE_LOG_PID" 2>/dev/null || true

echo "resident memory per idle connection at $IDLE connections"
BASELINE_KIB=$(idle_kib "$BASELINE_PID" "$BASELINE_URL")
SERVE_KIB=$(idle_kib "$SERVE_PID" "$SERVE_URL")
printf '  %-34s %8s KiB\n' "minimal tokio-tungstenite echo" "$BASELINE_KIB"
printf '  %-34s %8s KiB  (goal < 32 KiB; ratio %s)\n' "wsprobe serve" "$SERVE_KIB" \
    "$(awk -v s="$SERVE_KIB" -v b="$BASELINE_KIB" 'BEGIN { printf "%.2f", s / b }')"
