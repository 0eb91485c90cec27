#!/usr/bin/env bash
# Usage: benches/prune.sh
#
# Retention benchmarks: planning time for 10k, 100k and 1M backups (alone and with as
# many WAL files; goal: under 200 ms at 100k, linear), then a prune of about
# 10,000 objects (2,700 backups, 6,000 WAL files, keep-last 10) on the S3
# server with batch deletes, printing objects/s.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

if [[ -z "${CFDR_TEST_S3_ENDPOINT:-}" ]]; then
  exec scripts/with-services "$0" "$@"
fi

cargo build -q --release -p cfdr-benches --bin prune-bench
"$REPO_ROOT/target/release/prune-bench" --s3
