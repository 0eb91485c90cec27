#!/usr/bin/env bash
# Usage: benches/guard.sh
#
# Guard benchmarks: Guard::state() latency and allocations from 2 threads
# while the refresher runs every 100 ms (goal: p99 under 50 ns, zero
# allocations), then the repository part of a refresh cycle against 10,000
# backups and 100,000 WAL objects on the folder backend and the two S3
# emulators, s3s-fs and moto (goal: under 50 ms, O(new objects) requests per
# cycle), each next to its floor: one bare listing and read on an empty
# prefix, what the backend costs per request whatever cfdr does.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

if [[ -z "${CFDR_TEST_S3_ENDPOINT:-}" ]]; then
  exec scripts/with-services "$0" "$@"
fi

cargo build -q --release -p cfdr-guard-bench
target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/guard-bench"
"$target" state
"$target" refresh --backends fs,s3,moto
