#!/usr/bin/env bash
# The stealing workload of examples/steal.rs (BENCHMARKS.md, "Contention"), tiny, so that it
# keeps working: the store in one process and in two, and the plain baseline. No timing is
# asserted; in one process the store must report (almost) no busy wait, a count, and in two
# neither: their writers queue at the cross-process gate (src/store/gate.rs), not on SQLite's
# lock. Writers that met on SQLite's lock poll hundreds of times here; a WAL reader can cost a
# writer one poll (tests/it/busy_waits.rs says why), so two are allowed.
set -euo pipefail
cd "$(dirname "$0")/.."
steal() { cargo run --release --locked --features azure --example steal -- --rounds 5 "$@"; }
few_busy_waits() {
    local n
    n=$(sed -n 's/^busy waits \([0-9]*\) .*/\1/p' <<<"$1")
    [ -n "$n" ] && [ "$n" -le 2 ] || { echo "busy waits $2: ${n:-none reported} (expected at most 2)" >&2; exit 1; }
}
out=$(steal)
echo "$out"
few_busy_waits "$out" "in one process"
out=$(steal --processes 2)
echo "$out"
few_busy_waits "$out" "between two processes (the gate)"
steal --plain
