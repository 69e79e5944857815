#!/usr/bin/env bash
# Benchmark of `wsprobe load` (run by hand, never in CI). Needs jq.
#
# In one invocation, against the same minimal tokio-tungstenite echo server
# (examples/bench_echo_server.rs), it measures:
#   1. closed model, 1 / 10 / 100 connections: echoes per second, as a ratio of a minimal
#      tokio-tungstenite ping loop (examples/bench_ping_loop.rs) with as many connections:
#      the ceiling (median of paired runs). Goal: >= 0.9 at 100 connections.
#   2. open model at 20,000 pings/s over 100 connections: achieved / target. Goal: within 1%.
#   3. 10,000 idle connections in one process: peak RSS per connection, over a run with
#      one connection, beside the same for a minimal tokio-tungstenite client holding idle
#      connections with the same buffers (examples/bench_client.rs `idle`). Goal: <= 7 KiB
#      per connection.
# and then 1. again against `wsprobe serve` (the reference backend, `--echo body`).
#
# Figures are ratios against baselines measured in the same run; absolute numbers depend
# on the machine (and on whatever else runs on it: say so when you report them).
#
# Usage: [REPEAT=3] [PARTS=closed,open,memory,serve] scripts/bench-load.sh [SECONDS]
#   SECONDS: each throughput run (default 4). PARTS: which parts to run, comma-separated
#   (default all): `closed` (1.), `open` (2.), `memory` (3.), `serve` (1. against serve);
#   e.g. PARTS=memory for the memory figures alone.

set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN="${1:-4}"
# Throughput runs come in pairs (the ceiling, then wsprobe, back to back); the figure is
# the median of the pairs' ratios, and the best rate of each is shown. On a shared
# machine interference swings single runs by 2x; pairs see about the same interference.
REPEAT="${REPEAT:-3}"
PARTS="${PARTS:-closed,open,memory,serve}"
SIZE=64
IDLE_CONNECTIONS=10000

cargo build --release -p wsprobe --features bench --bin wsprobe \
    --example bench_echo_server --example bench_ping_loop --example bench_client
BIN=target/release/wsprobe
ECHO_SERVER=target/release/examples/bench_echo_server
PING_LOOP=target/release/examples/bench_ping_loop
MINIMAL_CLIENT=target/release/examples/bench_client

# Whether PARTS names part $1.
part() { [[ ",$PARTS," == *",$1,"* ]]; }

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# Runs `wsprobe load` and prints the path of its JSON report.
run_load() {
    local json="$WORK/load.$RANDOM.json"
    "$BIN" load "$@" --no-progress --report-json "$json" >/dev/null
    echo "$json"
}

ratio() { echo "scale=3; $1 / $2" | bc -l; }
best() { if (( $(echo "$2 > $1" | bc -l) )); then echo "$2"; else echo "$1"; fi; }
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

closed_model_against() {
    local url="$1" echo_policy="$2" label="$3"
    echo "== closed model against $label ($REPEAT pairs of $SECONDS_PER_RUN s runs, $SIZE-byte pings)"
    printf '%-12s %16s %16s %14s\n' connections "ping loop /s" "wsprobe /s" "median ratio"
    for connections in 1 10 100; do
        local ceiling=0 ours=0 rate ours_now json echoed sending ratios=()
        for _ in $(seq "$REPEAT"); do
            rate="$("$PING_LOOP" "$url" "$connections" "$SECONDS_PER_RUN" "$SIZE" | awk '{print $2}')"
            ceiling="$(best "$ceiling" "$rate")"
            json="$(run_load "$url" -c "$connections" -d "${SECONDS_PER_RUN}s" --size "$SIZE" \
                --echo "$echo_policy" --connect-rate 1000/s)"
            echoed="$(jq '.messages.echoed' "$json")"
            sending="$(jq '.sending_s' "$json")"
            ours_now="$(echo "scale=1; $echoed / $sending" | bc -l)"
            ours="$(best "$ours" "$ours_now")"
            ratios+=("$(ratio "$ours_now" "$rate")")
            if [[ "$(jq '.messages.errors' "$json")" != 0 ]]; then
                echo "   errors: $(jq -c '.messages' "$json")"
            fi
        done
        printf '%-12s %16s %16s %14s\n' "$connections" "$ceiling" "$ours" "$(median "${ratios[@]}")"
    done
}

# Peak resident set of a command, in KiB (sampled from /proc every 50 ms); its stdout goes
# to $WORK/last.out.
peak_rss_kib() {
    "$@" >"$WORK/last.out" 2>/dev/null &
    local pid=$! peak=0 rss
    while kill -0 "$pid" 2>/dev/null; do
        rss="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
        if [[ -n "$rss" && "$rss" -gt "$peak" ]]; then peak="$rss"; fi
        sleep 0.05
    done
    wait "$pid" || true
    echo "$peak"
}

echo "machine: $(nproc) cores; shared with other builds: figures are indicative"
start_server echo "$ECHO_SERVER"
ECHO_URL="$URL"
echo "echo server: $ECHO_URL"
echo

if part closed; then
    closed_model_against "$ECHO_URL" full "the minimal echo server"
    echo
fi

if part open; then
    echo "== open model: 20000/s over 100 connections for ${SECONDS_PER_RUN}s"
    json="$(run_load "$ECHO_URL" -c 100 --rate 20000/s -d "${SECONDS_PER_RUN}s" --size "$SIZE" \
        --echo full --connect-rate 1000/s)"
    achieved="$(jq '.achieved_rate' "$json")"
    printf 'achieved %.1f/s of 20000/s: ratio %s; p50 %s ms, p99 %s ms, errors %s\n' \
        "$achieved" "$(ratio "$achieved" 20000)" \
        "$(jq '.round_trip_ms.p50' "$json")" "$(jq '.round_trip_ms.p99' "$json")" \
        "$(jq '.messages.errors' "$json")"
    echo
fi

if part memory; then
    echo "== memory: $IDLE_CONNECTIONS idle connections (1 ping/s in all, 5 s after opening)"
    ulimit -n "$(ulimit -Hn)"
    # The minimal client first: it holds its connections idle for 5 s once they are open.
    minimal_one="$(peak_rss_kib "$MINIMAL_CLIENT" idle "$ECHO_URL" 1 5)"
    minimal_many="$(peak_rss_kib "$MINIMAL_CLIENT" idle "$ECHO_URL" "$IDLE_CONNECTIONS" 5)"
    minimal_opened="$(awk '/^ready/ {print $2}' "$WORK/last.out")"
    minimal="$(echo "scale=2; ($minimal_many - $minimal_one) / ($minimal_opened - 1)" | bc -l)"
    one="$(peak_rss_kib "$BIN" load "$ECHO_URL" -c 1 --rate 1/s -d 5s --echo full --no-progress)"
    many="$(peak_rss_kib "$BIN" load "$ECHO_URL" -c "$IDLE_CONNECTIONS" --connect-rate 5000/s \
        --rate 1/s -d 5s --echo full --no-progress --report-json "$WORK/idle.json")"
    opened="$(jq '.connections.opened' "$WORK/idle.json")"
    per_connection="$(echo "scale=2; ($many - $one) / ($opened - 1)" | bc -l)"
    echo "minimal client peak RSS: 1 connection $minimal_one KiB;" \
        "$minimal_opened of $IDLE_CONNECTIONS connections $minimal_many KiB"
    echo "wsprobe peak RSS: 1 connection $one KiB; $opened of $IDLE_CONNECTIONS connections $many KiB"
    echo "per connection: wsprobe $per_connection KiB, minimal client $minimal KiB:" \
        "ratio $(ratio "$per_connection" "$minimal") (goal <= 7 KiB)"
    echo "failures: $(jq -c '.connections.failures' "$WORK/idle.json")"
    echo
fi

if part serve; then
    start_server serve "$BIN" serve --listen 127.0.0.1:0 --quiet --idle-timeout 10m
    SERVE_URL="$URL"
    echo "wsprobe serve: $SERVE_URL"
    closed_model_against "$SERVE_URL" body "wsprobe serve"
fi
