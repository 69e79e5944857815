#!/usr/bin/env bash
# Benchmark of `wsprobe run` (run by hand, not in CI).
#
# A generated script of PAIRS `send`/`expect echo` pairs on one connection, run against
# `wsprobe serve --quiet` on loopback (release builds). Goal: 1,000 pairs in under 1 s.
# Baselines measured in the same run, on the same server:
#   - `wsprobe run` of a script that only connects (process start, parse, connect, close);
#   - the same number of sequential echo round trips by the bench client of
#     scripts/bench-serve.sh (examples/bench_client.rs, one connection): the cost of the
#     round trips themselves, without the runner.
# Each figure is the best of ROUNDS runs (noise on a shared machine only slows a run down).
#
# Settings (environment): PAIRS (default 1000), ROUNDS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-1000}
ROUNDS=${ROUNDS:-5}

cargo build --release --quiet -p wsprobe --features bench --bin wsprobe --example bench_client
WSPROBE=target/release/wsprobe
CLIENT=target/release/examples/bench_client

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
start_server serve "$WSPROBE" serve --listen 127.0.0.1:0 --quiet

{
    echo "connect"
    for i in $(seq "$PAIRS"); do
        echo "send send \"Hello World! $i\""
        echo "expect echo within 2s"
    done
} >"$WORK/pairs.wsp"
echo "connect" >"$WORK/connect-only.wsp"

now() { date +%s.%N; }

# best_seconds SCRIPT: the shortest wall time of ROUNDS runs of `wsprobe run SCRIPT`.
best_seconds() {
    local best=999999 start end
    for _ in $(seq "$ROUNDS"); do
        start=$(now)
        "$WSPROBE" run "$1" --url "$URL" >"$WORK/run.out" || { cat "$WORK/run.out" >&2; exit 1; }
        end=$(now)
        best=$(awk -v b="$best" -v s="$start" -v e="$end" 'BEGIN { d = e - s; print (d < b ? d : b) }')
    done
    echo "$best"
}

# client_seconds: PAIRS sequential round trips by the bench client, from its best rate
# over a 2 s run on one connection.
client_seconds() {
    local best=0 rate
    for _ in $(seq "$ROUNDS"); do
        rate=$("$CLIENT" echo "$URL" 1 2 '{"action":"send","body":"Hello World!"}' \
            | sed -n 's/^round_trips_per_second=//p')
        best=$(awk -v b="$best" -v r="$rate" 'BEGIN { print (r > b ? r : b) }')
    done
    awk -v n="$PAIRS" -v r="$best" 'BEGIN { printf "%.4f", n / r }'
}

PAIRS_S=$(best_seconds "$WORK/pairs.wsp")
CONNECT_S=$(best_seconds "$WORK/connect-only.wsp")
CLIENT_S=$(client_seconds)

echo "wsprobe run: $PAIRS send/expect-echo pairs on loopback, best of $ROUNDS (machine: $(nproc) cores, shared)"
printf '  %-46s %8.3f s  (goal < 1 s)\n' "wsprobe run, $PAIRS pairs" "$PAIRS_S"
printf '  %-46s %8.3f s\n' "baseline: wsprobe run, connect only" "$CONNECT_S"
printf '  %-46s %8.3f s\n' "baseline: bench client, $PAIRS round trips" "$CLIENT_S"
printf '  %-46s %8.3f s  (%.1f us per pair; %.2f x the bench client)\n' \
    "runner cost (pairs - connect only)" \
    "$(awk -v p="$PAIRS_S" -v c="$CONNECT_S" 'BEGIN { print p - c }')" \
    "$(awk -v p="$PAIRS_S" -v c="$CONNECT_S" -v n="$PAIRS" 'BEGIN { print (p - c) * 1e6 / n }')" \
    "$(awk -v p="$PAIRS_S" -v c="$CONNECT_S" -v b="$CLIENT_S" 'BEGIN { print (p - c) / b }')"
awk -v p="$PAIRS_S" 'BEGIN { exit !(p < 1.0) }' || { echo "goal missed: $PAIRS_S s >= 1 s" >&2; exit 1; }
