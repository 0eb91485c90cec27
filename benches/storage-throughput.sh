#!/usr/bin/env bash
# Usage: benches/storage-throughput.sh [SIZE_GIB]   (default 1; also runs 2x that)
#
# Streams SIZE GiB of dump-like data through cfdr's encode pipeline (zstd,
# then zstd + age) into a local folder repository and into the S3 server,
# beside the baseline `zstd -T0 | cat > file` on the same data, and prints
# throughput, the ratio to the baseline and peak RSS. Runs everything again
# at twice the size to show memory stays flat. Fails if cfdr's peak RSS
# reaches 64 MiB or grows by more than 12 MiB when the input doubles (glibc
# arenas make peak RSS vary by up to ~8 MiB between identical runs).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

if [[ -z "${CFDR_TEST_S3_ENDPOINT:-}" ]]; then
  exec scripts/with-services "$0" "$@"
fi

size_gib=${1:-1}
cargo build -q --release -p cfdr-benches
bin="$REPO_ROOT/target/release/encode-to-repo"
work=$(mktemp -d "${TMPDIR:-/tmp}/cfdr-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
limit_kib=$((64 * 1024))
failed=0

printf '%-28s %6s %10s %9s %8s %10s\n' "case" "GiB" "seconds" "MiB/s" "x zstd" "peak RSS"
for gib in "$size_gib" $((size_gib * 2)); do
  data="$work/data-$gib.bin"
  "$bin" --generate $((gib << 30)) >"$data"
  mib=$((gib * 1024))

  # Baseline: zstd using all cores, piped through cat into a file.
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/zstd.rss" zstd -T0 -3 -q -c <"$data" | cat >"$work/baseline.zst"
  base=$(echo "$(date +%s.%N) - $start" | bc -l)
  printf '%-28s %6s %10.2f %9.0f %8s %7s MiB\n' "zstd -T0 | cat > file" "$gib" "$base" \
    "$(echo "$mib / $base" | bc -l)" "1.00" "$(($(cat "$work/zstd.rss") / 1024))"

  for case in "fs zstd" "fs zstd+age" "s3 zstd" "s3 zstd+age"; do
    read -r backend codec <<<"$case"
    if [[ $backend == fs ]]; then
      url="file://$work/repo"
    else
      url="s3://$CFDR_TEST_S3_BUCKET/bench-$gib"
    fi
    args=(--url "$url" --compression zstd)
    [[ $codec == *age* ]] && args+=(--age)
    out=$("$bin" "${args[@]}" <"$data")
    secs=$(sed -E 's/.*"secs":([0-9.]+).*/\1/' <<<"$out")
    rss=$(sed -E 's/.*"peak_rss_kib":([0-9]+).*/\1/' <<<"$out")
    printf '%-28s %6s %10.2f %9.0f %8.2f %7s MiB\n' "cfdr $case" "$gib" "$secs" \
      "$(echo "$mib / $secs" | bc -l)" "$(echo "$base / $secs" | bc -l)" "$((rss / 1024))"
    eval "rss_${gib}_${backend}_${codec//+/_}=$rss"
    if ((rss >= limit_kib)); then
      echo "FAIL: peak RSS $((rss / 1024)) MiB >= 64 MiB for $case at $gib GiB" >&2
      failed=1
    fi
  done
  rm -f "$data"
done

for case in fs_zstd fs_zstd_age s3_zstd s3_zstd_age; do
  small="rss_${size_gib}_${case}"
  big="rss_$((size_gib * 2))_${case}"
  growth=$((${!big} - ${!small}))
  echo "peak RSS growth when the input doubles ($case): $((growth / 1024)) MiB"
  if ((growth > 12 * 1024)); then
    echo "FAIL: memory is not flat for $case" >&2
    failed=1
  fi
done
exit "$failed"
