#!/usr/bin/env bash
# Usage: benches/files-vs-tar.sh [SIZE_MIB]   (default 1024)
#
# Builds a tree of mixed files (log-like text, random binary, 20,000 small
# config-like files) of about SIZE MiB, then archives it with `tar -czf`,
# `tar -cf - | zstd -T0` and `cfdr-backup files` (zstd level 1 by default,
# a local folder repository), and prints time, stored size and peak RSS of
# each, with CPU seconds (user + sys): on a shared machine they vary less
# than wall time. Build profile: CFDR_BENCH_PROFILE (release by default; `dev` reuses
# a test build, whose hashing and compression crates are optimised anyway).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

size_mib=${1:-1024}
profile=${CFDR_BENCH_PROFILE:-release}
cargo build -q --profile "$profile" -p cfdr-backup -p cfdr-repo
dir=$([[ $profile == dev ]] && echo debug || echo "$profile")
bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/cfdr-files-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

tree="$work/tree"
python3 - "$tree" "$size_mib" <<'PY'
import os, random, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(42)
os.makedirs(f"{root}/logs"); os.makedirs(f"{root}/bin"); os.makedirs(f"{root}/conf")
# 20,000 small files (about 8% of the tree)
small = total * 8 // 100
for i in range(20000):
    d = f"{root}/conf/d{i // 500:03d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/c{i:05d}.yaml", "w") as f:
        f.write("".join(f"key_{k}: value-{rng.randrange(10**6)}\n" for k in range(max(1, small // 20000 // 24))))
# Random binary (30%)
for i in range(max(1, total * 30 // 100 // (8 << 20))):
    with open(f"{root}/bin/blob{i:03d}.bin", "wb") as f:
        f.write(os.urandom(8 << 20))
# Log-like text (the rest)
levels, comps = ["INFO", "WARN", "DEBUG", "ERROR"], ["orchestrator", "risk", "gateway", "ledger"]
left, n = total * 62 // 100, 0
while left > 0:
    with open(f"{root}/logs/app-{n:03d}.log", "w") as f:
        size = 0
        while size < (16 << 20) and size < left:
            line = (f"2026-11-06T14:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z "
                    f"{rng.choice(levels)} {rng.choice(comps)} order={rng.randrange(10**9)} "
                    f"user={rng.randrange(10**5)} latency_ms={rng.randrange(500)} msg=\"processed\"\n")
            f.write(line); size += len(line)
        left -= size; n += 1
PY
bytes=$(du -sb "$tree" | cut -f1)
mib=$((bytes >> 20))
echo "tree: $mib MiB, $(find "$tree" -type f | wc -l) files"
printf '%-32s %9s %9s %9s %10s %9s\n' "case" "seconds" "MiB/s" "CPU s" "stored MiB" "peak RSS"

run() {
  local name=$1 out=$2; shift 2
  sync
  local start end secs
  start=$(date +%s.%N)
  /usr/bin/time -f '%M %U %S' -o "$work/rss" bash -c "$*"
  end=$(date +%s.%N)
  secs=$(echo "$end - $start" | bc -l)
  local stored
  stored=$(du -sb "$out" | cut -f1)
  local rss user sys
  read -r rss user sys <"$work/rss"
  printf '%-32s %9.2f %9.0f %9.2f %10.1f %6s MiB\n' "$name" "$secs" "$(echo "$mib / $secs" | bc -l)" \
    "$(echo "$user + $sys" | bc -l)" "$(echo "$stored / 1048576" | bc -l)" "$((rss / 1024))"
}

run "tar -czf" "$work/out.tgz" "tar -czf '$work/out.tgz' -C '$work' tree"
run "tar -cf - | zstd -T0 (level 3)" "$work/out.tar.zst" "tar -cf - -C '$work' tree | zstd -T0 -q -o '$work/out.tar.zst'"
export CFDR_REPOSITORY="file://$work/repo"
"$bin/cfdr-repo" init >/dev/null
run "cfdr-backup files (zstd 1)" "$work/repo/backups" "'$bin/cfdr-backup' files --class logs --path '$tree'"
