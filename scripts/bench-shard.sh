#!/usr/bin/env bash
# Benchmark of sharded load (run by hand, never in CI). Needs jq.
#
# Against one `wsprobe serve` on this machine:
#   1. 4 shards (--shard I/4, one --start-at) vs one process with the same totals: the
#      merged achieved rate and p99 beside the single run's.
#   2. the time `wsprobe load merge` takes for the 4 shard reports of a DURATION-long run
#      (goal: under 1 s for 60 s).
#   3. with BIG=1: 4 shards holding 18,000 connections together at a low rate (each
#      process under 20,000 descriptors), every ping echoed.
#
# All shards run on one machine here, so they share its CPU with the server: the figures
# say what the merge costs and that it is exact, not how far several machines scale.
#
# Usage: [BIG=1] scripts/bench-shard.sh [DURATION]   (default 60s)

set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-60s}"
CONNECTIONS=400
RATE=8000
SHARDS=4

# NO_BUILD=1: use the release binary as it is.
[ -n "${NO_BUILD:-}" ] || cargo build --release -p wsprobe --bin wsprobe
BIN=target/release/wsprobe

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
start_server serve "$BIN" serve --listen 127.0.0.1:0 --quiet --idle-timeout 10m
SERVE_URL="$URL"

# shards LABEL LEAD LOAD-ARGS...: runs SHARDS shards of the command from one --start-at
# LEAD seconds from now (time enough to open every connection), reports in
# $WORK/LABEL-I.json.
shards() {
    local label=$1 lead=$2
    shift 2
    local start_at pids=()
    start_at=$(date -u -d "+$lead seconds" +%s.%N)
    for i in $(seq 0 $((SHARDS - 1))); do
        "$BIN" load "$SERVE_URL" "$@" --shard "$i/$SHARDS" --start-at "$start_at" \
            --no-progress --report-json "$WORK/$label-$i.json" >/dev/null 2>"$WORK/$label-$i.err" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
}

summary() {
    jq -r '"\(.messages.sent) sent, \(.messages.echoed) echoed, \(.messages.errors) errors, " +
        "\(.achieved_rate * 10 | round / 10)/s, p99 \(.round_trip_ms.p99) ms, " +
        "\(.connections.opened) connections"' "$1"
}

echo "== 1. one process vs $SHARDS shards: -c $CONNECTIONS --rate $RATE/s -d $DURATION"
"$BIN" load "$SERVE_URL" -c "$CONNECTIONS" --rate "$RATE/s" -d "$DURATION" --no-progress \
    --report-json "$WORK/single.json" >/dev/null
printf '%-8s %s\n' single "$(summary "$WORK/single.json")"
shards run 5 -c "$CONNECTIONS" --rate "$RATE/s" -d "$DURATION"
"$BIN" load merge "$WORK"/run-*.json --report-json "$WORK/merged.json" >/dev/null
printf '%-8s %s\n' merged "$(summary "$WORK/merged.json")"

echo "== 2. merge time for $SHARDS reports of a $DURATION run ($(du -ch "$WORK"/run-*.json | tail -1 | cut -f1) in all)"
for _ in 1 2 3; do
    /usr/bin/time -f '%e s elapsed, %M KiB peak RSS' "$BIN" load merge "$WORK"/run-*.json >/dev/null
done

if [ "${BIG:-0}" = 1 ]; then
    echo "== 3. $SHARDS shards holding 18000 connections together, 500 pings/s, 30s"
    shards big 60 -c 18000 --rate 500/s -d 30s --connect-rate 500/s
    "$BIN" load merge "$WORK"/big-*.json --report-json "$WORK/big.json" >/dev/null
    printf '%-8s %s\n' merged "$(summary "$WORK/big.json")"
fi
