#!/usr/bin/env bash
# The stealing workload of examples/steal.rs (BENCHMARKS.md, "Contention"), tiny, so that it
# keeps working: the store in one process and in two, and the plain baseline. No timing is
# asserted; in one process the store must report no busy wait (a count), and in two neither:
# their writers queue at the cross-process gate (src/store/gate.rs), not on SQLite's lock.
set -euo pipefail
cd "$(dirname "$0")/.."
steal() { cargo run --release --locked --features azure --example steal -- --rounds 5 "$@"; }
out=$(steal)
echo "$out"
grep -q '^busy waits 0 ' <<<"$out" || { echo "busy waits in one process (expected none)" >&2; exit 1; }
out=$(steal --processes 2)
echo "$out"
grep -q '^busy waits 0 ' <<<"$out" || { echo "busy waits between two processes (expected none: the gate)" >&2; exit 1; }
steal --plain
