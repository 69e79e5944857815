#!/usr/bin/env bash
# Benchmark of `wsprobe connect` start-up (run by hand, not in CI).
#
# Measures the time from process start to the first echo on loopback:
#     wsprobe connect URL -x '/send send "x"' -w 0
# against a `wsprobe serve` started here (the process connects, sends, waits for the
# echo check to pass, closes with 1000 and exits). Goal: median under 20 ms.
# For scale, the same loop times `wsprobe --version` (process start-up alone) in the same
# run; the difference is what connect adds: runtime, handshake, send, echo, close.
#
# Settings (environment): RUNS (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}

cargo build --release --quiet --bin wsprobe
WSPROBE=target/release/wsprobe

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
start_server serve "$WSPROBE" serve --listen 127.0.0.1:0 --quiet

# median_ms COMMAND...: runs COMMAND RUNS times (output discarded, exit code checked) and
# prints the median wall time in milliseconds.
median_ms() {
    local times=() start end
    for _ in $(seq "$RUNS"); do
        start=$(date +%s%N)
        if ! "$@" >/dev/null 2>"$WORK/run.err"; then
            echo "failed: $*" >&2
            cat "$WORK/run.err" >&2
            exit 1
        fi
        end=$(date +%s%N)
        times+=($(((end - start) / 1000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '
        { t[NR] = $1 }
        END {
            m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
            printf "%.2f\n", m / 1000
        }'
}

# Warm the page cache and the server before measuring.
"$WSPROBE" connect "$URL" -x '/send send "x"' -w 0 >/dev/null 2>&1

baseline=$(median_ms "$WSPROBE" --version)
connect=$(median_ms "$WSPROBE" connect "$URL" -x '/send send "x"' -w 0 --no-color)

echo "runs:                                    $RUNS"
echo "wsprobe --version (baseline), median:    ${baseline} ms"
echo "connect, send, echo, close, median:      ${connect} ms"
awk -v c="$connect" -v b="$baseline" 'BEGIN {
    printf "ratio to the baseline:                   %.1fx\n", c / b
    printf "goal (median < 20 ms):                   %s\n", (c < 20 ? "met" : "NOT met")
}'
