#!/usr/bin/env bash
# Usage: benches/copy.sh [SIZE_MIB] [OBJECT_MIB]   (defaults 2048 and 8)
#
# cfdr-copy between two S3 endpoints against `rclone copy` on the same
# data, side by side. The primary repository (on the S3 server that
# scripts/with-services starts) holds SIZE_MIB of file archives made with
# `cfdr-backup files`, OBJECT_MIB of incompressible files each (three
# objects per archive: tar, index, manifest); the secondary endpoint is a
# second s3s-fs server started here. Prints seconds, MB/s and objects/s of:
#   rclone copy --checksum      (streams each object; compares size and
#                                MD5 (the ETag) of source and destination)
#   cfdr-copy                   (SHA-256 of every object checked against the
#                                repository's own records on read and again
#                                on the secondary after the write, manifests
#                                last, lock)
#   cfdr-copy --verify-secondary on the finished copy (re-reads all)
#   second runs of both         (nothing to transfer)
# and the ratio cfdr-copy / rclone, with the load average beside each row
# (the development machine is shared). Both tools run 8 transfers at once
# against the same primary, into separate prefixes of the second endpoint.
# Needs rclone (Debian package; installed here when missing and running as
# root); CFDR_BENCH_NO_RCLONE=1 skips it. CFDR_BENCH_SETUP_BIN=DIR takes
# cfdr-backup and cfdr-repo (used only to fill the primary, not timed) from
# DIR instead of building them; CFDR_BENCH_REPO=DIR fills the primary with
# that repository folder instead of making archives; CFDR_BENCH_COPY_BIN=DIR
# takes cfdr-copy from DIR instead of a release build (say which build a
# figure comes from).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

if [[ -z "${CFDR_TEST_S3_ENDPOINT:-}" ]]; then
  exec scripts/with-services "$0" "$@"
fi
# shellcheck source=scripts/lib/install.sh
source "$REPO_ROOT/scripts/lib/install.sh"

with_rclone=$([[ -n "${CFDR_BENCH_NO_RCLONE:-}" ]] && echo false || echo true)
if $with_rclone && ! command -v rclone >/dev/null 2>&1; then
  cfdr_is_root || cfdr_die "rclone is missing: apt-get install -y rclone"
  apt-get install -y -q rclone >/dev/null || cfdr_die "apt-get install rclone failed"
fi

size_mib=${1:-2048}
object_mib=${2:-8}
archives=$((size_mib / object_mib))
jobs=8

if [[ -n "${CFDR_BENCH_SETUP_BIN:-}" || -n "${CFDR_BENCH_REPO:-}" ]]; then
  setup_bin=${CFDR_BENCH_SETUP_BIN:-}
else
  cargo build -q --release -p cfdr-backup -p cfdr-repo
  setup_bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cfdr-copy-bench.XXXXXX")
s3b_pid=""
cleanup() {
  [[ -n "$s3b_pid" ]] && kill "$s3b_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The second S3 endpoint: another s3s-fs with its own folder.
port=$("$CFDR_VENV_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/s3b/secondary"
"$CFDR_S3S_FS_BIN" --host 127.0.0.1 --port "$port" --access-key test --secret-key test "$work/s3b" \
  >"$work/s3b.log" 2>&1 &
s3b_pid=$!
endpoint_b="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -s -o /dev/null "$endpoint_b" && break
  sleep 0.1
done

export AWS_ACCESS_KEY_ID=$CFDR_TEST_S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$CFDR_TEST_S3_SECRET_ACCESS_KEY
export AWS_REGION=${CFDR_TEST_S3_REGION:-us-east-1}
primary="s3://$CFDR_TEST_S3_BUCKET/copy-bench-$$"

# The primary: file archives made locally, then copied to S3 (not timed).
if [[ -n "${CFDR_BENCH_REPO:-}" ]]; then
  echo "filling $primary from $CFDR_BENCH_REPO ..." >&2
  local_repo=$CFDR_BENCH_REPO
else
  echo "making $archives file archives of $object_mib MiB in $primary ..." >&2
  local_repo=$work/local
  mkdir -p "$work/tree"
  "$setup_bin/cfdr-repo" -r "file://$local_repo" init >/dev/null
  for _ in $(seq "$archives"); do
    head -c "$((object_mib << 20))" /dev/urandom >"$work/tree/app.log"
    "$setup_bin/cfdr-backup" -r "file://$local_repo" files --class logs --path "$work/tree" >/dev/null
  done
fi
# Built after the archives are made, so that a build still under way
# overlaps with them.
if [[ -n "${CFDR_BENCH_COPY_BIN:-}" ]]; then
  bin=$CFDR_BENCH_COPY_BIN
else
  cargo build -q --release -p cfdr-copy-cli
  bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
fi
cat >"$work/setup.toml" <<EOF
[repository]
url = "file://$local_repo"
[[copy]]
name = "primary"
url = "$primary"
[copy.s3]
endpoint = "$CFDR_TEST_S3_ENDPOINT"
EOF
"$bin/cfdr-copy" --config "$work/setup.toml" --quiet
rm -rf "$work/local" "$work/tree"

cat >"$work/bench.toml" <<EOF
[repository]
url = "$primary"
[repository.s3]
endpoint = "$CFDR_TEST_S3_ENDPOINT"
[[copy]]
name = "region-b"
url = "s3://secondary/cfdr"
[copy.s3]
endpoint = "$endpoint_b"
EOF

export RCLONE_CONFIG_A_TYPE=s3 RCLONE_CONFIG_A_PROVIDER=Other RCLONE_CONFIG_A_ENDPOINT=$CFDR_TEST_S3_ENDPOINT
export RCLONE_CONFIG_A_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_A_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT=$endpoint_b
export RCLONE_CONFIG_B_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_B_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY

# rclone 1.60's AWS SDK fails on any AWS_CA_BUNDLE with its own HTTP
# transport (both endpoints here are plain http), and its recursive
# listing sends an empty delimiter that s3s-fs answers with nothing:
# it lists folder by folder instead. --checksum makes it compare size and
# the listed ETag (MD5) instead of modification times, which rclone reads
# with one HEAD request per object.
rc() { env -u AWS_CA_BUNDLE rclone --disable ListR --checksum "$@"; }
now() { date +%s.%N; }
load() { cut -d' ' -f1 /proc/loadavg; }
mbs() { echo "$1 / 1000000 / $2" | bc -l; }
row() { # NAME SECONDS BYTES OBJECTS LOAD
  printf '%-36s %8.2f %9.1f %11.1f %8d %6s\n' "$1" "$2" "$(mbs "$3" "$2")" \
    "$(echo "$4 / $2" | bc -l)" "$4" "$5"
}
field() { # JSON-REPORT FIELD SUBFIELD
  "$CFDR_VENV_PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1]))[0]; print(r[sys.argv[2]][sys.argv[3]])' "$@"
}

printf '%-36s %8s %9s %11s %8s %6s\n' "case" "seconds" "MB/s" "objects/s" "objects" "load"
rclone_src="a:$CFDR_TEST_S3_BUCKET/copy-bench-$$"
if $with_rclone; then
  rc size --json "$rclone_src" >"$work/size.json"
  total_bytes=$("$CFDR_VENV_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' "$work/size.json")
  total_objects=$("$CFDR_VENV_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["count"])' "$work/size.json")
  l=$(load) start=$(now)
  rc copy --transfers "$jobs" --checkers "$jobs" "$rclone_src" b:secondary/rclone
  rclone_secs=$(echo "$(now) - $start" | bc -l)
  row "rclone copy" "$rclone_secs" "$total_bytes" "$total_objects" "$l"
fi

l=$(load) start=$(now)
"$bin/cfdr-copy" --config "$work/bench.toml" --concurrency "$jobs" --json >"$work/first.json"
cfdr_secs=$(echo "$(now) - $start" | bc -l)
cfdr_bytes=$(field "$work/first.json" copied bytes)
row "cfdr-copy" "$cfdr_secs" "$cfdr_bytes" "$(field "$work/first.json" copied objects)" "$l"

l=$(load) start=$(now)
"$bin/cfdr-copy" --config "$work/bench.toml" --concurrency "$jobs" --verify-secondary --json >"$work/audit.json"
secs=$(echo "$(now) - $start" | bc -l)
row "cfdr-copy --verify-secondary (audit)" "$secs" "$(field "$work/audit.json" already_there bytes)" \
  "$(field "$work/audit.json" already_there objects)" "$l"

if $with_rclone; then
  l=$(load) start=$(now)
  rc copy --transfers "$jobs" --checkers "$jobs" "$rclone_src" b:secondary/rclone
  row "rclone copy, second run" "$(echo "$(now) - $start" | bc -l)" "$total_bytes" "$total_objects" "$l"
fi

l=$(load) start=$(now)
"$bin/cfdr-copy" --config "$work/bench.toml" --concurrency "$jobs" --json >"$work/second.json"
secs=$(echo "$(now) - $start" | bc -l)
row "cfdr-copy, second run" "$secs" "$(field "$work/second.json" already_there bytes)" \
  "$(field "$work/second.json" already_there objects)" "$l"
echo "second run of cfdr-copy transferred $(field "$work/second.json" copied objects) objects" >&2

if $with_rclone; then
  # Same data: the ratio of MB/s of the first runs.
  printf 'cfdr-copy / rclone (MB/s of the first runs): %.2f\n' \
    "$(echo "$(mbs "$cfdr_bytes" "$cfdr_secs") / $(mbs "$total_bytes" "$rclone_secs")" | bc -l)"
  if rc check --one-way "$rclone_src" b:secondary/rclone >"$work/check.log" 2>&1; then
    echo "rclone check: the rclone copy matches the primary (size and MD5)" >&2
  else
    echo "rclone check did not confirm the rclone copy; its last lines:" >&2
    tail -n 5 "$work/check.log" >&2
  fi
fi
