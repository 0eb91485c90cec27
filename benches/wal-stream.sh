#!/usr/bin/env bash
# Usage: benches/wal-stream.sh [SECONDS] [RATE] [ROW_BYTES]
#   default 90 s of pgbench -R 400 (TPC-B-like); with ROW_BYTES, each
#   transaction inserts one uncompressed row of that size instead, a fixed
#   WAL rate (e.g. `90 900 6000`: about 5.5 MB/s)
#
# Off-host exposure of `cfdr-wal stream` against archive_command alone
# (archive_timeout = 60), side by side on one PostgreSQL 15 cluster under
# pgbench: p50 / p99 / max of (moment a commit had returned) to (moment its
# LSN was safe in the repository), on a local folder and on the S3 server
# of scripts/with-services; the stream's repository requests per minute
# busy and idle; peak RSS of the stream (cfdr-wal and pg_receivewal); and
# the commit latency synchronous mode adds (folder run).
# Build profile: CFDR_BENCH_PROFILE (release by default; `dev` reuses a
# test build). Needs PostgreSQL 15 (/usr/lib/postgresql/15/bin) and root
# (clusters run as the postgres user).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

seconds=${1:-90}
rate=${2:-400}
row_bytes=${3:-0}
profile=${CFDR_BENCH_PROFILE:-release}
cargo build -q --profile "$profile" -p cfdr-wal -p cfdr-benches --bin wal-stream-bench
dir=$([[ $profile == dev ]] && echo debug || echo "$profile")
bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$dir"

echo "== folder repository"
"$bin/wal-stream-bench" --backend fs --seconds "$seconds" --rate "$rate" --row-bytes "$row_bytes" --sync --cfdr-wal "$bin/cfdr-wal"
echo
echo "== S3 server (scripts/with-services)"
CFDR_TEST_REQUIRE_SERVICES=1 scripts/with-services \
  "$bin/wal-stream-bench" --backend s3 --seconds "$seconds" --rate "$rate" --row-bytes "$row_bytes" --cfdr-wal "$bin/cfdr-wal"
