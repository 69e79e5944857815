#!/usr/bin/env bash
# Renders a `wsprobe load --report-html` page in headless Chromium (Debian's `chromium`)
# and fails if a section or a chart is missing, or the console has errors (a resource that
# could not load: the page must need no network). Leaves a screenshot beside the page.
#
#   scripts/check-html-report.sh REPORT.html       # check a report
#   scripts/check-html-report.sh                   # run a short load against `serve`, check it
#
# Exit 0 when the page is fine, 1 when it is not, 77 when chromium is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [[ -z "$CHROMIUM" ]]; then
    echo "check-html-report: skipped: chromium is not installed (apt-get install chromium)"
    exit 77
fi

work=$(mktemp -d)
cleanup() {
    [[ -n "${serve_pid:-}" ]] && kill "$serve_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

report=${1:-}
if [[ -z "$report" ]]; then
    cargo build --quiet --locked --bin wsprobe
    bin=target/debug/wsprobe
    "$bin" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
    serve_pid=$!
    for _ in $(seq 100); do
        url=$(head -n1 "$work/serve.out" 2>/dev/null || true)
        [[ "$url" == ws://* ]] && break
        sleep 0.1
    done
    [[ "$url" == ws://* ]] || { echo "check-html-report: serve did not start"; cat "$work/serve.err"; exit 1; }
    report=target/check-html-report.html
    "$bin" load "$url" -c 4 --rate 100/s -d 3s --no-progress --threshold 'p99<5s' \
        --report-html "$report" >/dev/null
fi

chrome() {
    # A fresh profile and no background traffic; the page itself asks for nothing.
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --no-first-run --user-data-dir="$work/profile" --enable-logging=stderr --v=0 "$@"
}

dom=$(chrome --dump-dom "file://$(realpath "$report")" 2>"$work/console.log")
status=0
for id in header latency-over-time percentile-distribution throughput-over-time \
    connections-over-time errors-over-time summary; do
    if ! grep -q "id=\"$id\"" <<<"$dom"; then
        echo "check-html-report: section #$id is missing"
        status=1
    fi
done
charts=$(grep -o '<svg' <<<"$dom" | wc -l)
if [[ "$charts" -ne 5 ]]; then
    echo "check-html-report: $charts charts rendered, 5 expected"
    status=1
fi
if grep -E 'CONSOLE|Failed to load resource|Uncaught' "$work/console.log"; then
    echo "check-html-report: the console has errors (above)"
    status=1
fi
shot="${report%.html}.png"
chrome --screenshot="$shot" --window-size=1100,3600 --hide-scrollbars \
    "file://$(realpath "$report")" 2>>"$work/console.log" >/dev/null
if [[ ! -s "$shot" ]]; then
    echo "check-html-report: no screenshot was taken"
    status=1
fi
[[ "$status" -eq 0 ]] && echo "check-html-report: ok ($charts charts; screenshot $shot)"
exit "$status"
