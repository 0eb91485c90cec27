#!/usr/bin/env bash
# Usage: benches/logical-vs-runbook.sh [SCALE]   (default 50; also runs SCALE/2)
#
# cfdr's logical backup and restore against the runbook's own pipelines on
# the same PostgreSQL 15 cluster and the same database:
#   backup:  `pg_dump DB | gzip > file`       vs `cfdr-backup logical`
#   restore: `gunzip -c file | psql NEWDB`    vs `cfdr-restore logical`
# plus the dump floor (`pg_dump -Fc -Z0 > file`) and `pg_dump -Fc -Z0 | zstd`.
# The dataset is `pgbench -i -s SCALE` plus `rnd(id bigint, t text)` with
# SCALE x 40,000 rows of md5||md5 (2,000,000 at the default scale), built at
# SCALE/2 first and then at SCALE to show cfdr's memory stays flat.
# Prints times, sizes, ratios (cfdr / runbook) and peak RSS; exits 1 when a
# goal is missed: backup <= 0.35x at no larger size, restore <= 0.8x, peak
# RSS < 100 MiB.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
scale=${1:-50}
pgbin=${CFDR_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}
for tool in "$pgbin/initdb" "$pgbin/pgbench" /usr/bin/time bc gzip zstd; do
  [[ -x $tool ]] || command -v "$tool" >/dev/null || {
    echo "missing $tool: run scripts/lib/install.sh (installs postgresql-15, time, bc, gzip, zstd)" >&2
    exit 2
  }
done

cargo build -q --release -p cfdr-backup -p cfdr-restore -p cfdr-repo
bins="$REPO_ROOT/target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/cfdr-logical-bench.XXXXXX")
chmod 755 "$work"
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$pgbin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/data" "$work/sock"
[[ $(id -u) == 0 ]] && chown postgres "$work/data" "$work/sock"
as_pg "$pgbin/initdb" -D "$work/data" -A trust -U postgres >/dev/null
# Checkpoints every 4 GB of WAL rather than mid-run: same for every case.
as_pg "$pgbin/pg_ctl" -D "$work/data" -l "$work/data/log" -w \
  -o "-p $port -k $work/sock -c listen_addresses=127.0.0.1 -c max_wal_size=4GB" start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
psql_q() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

export CFDR_REPOSITORY="file://$work/repo"
unset CFDR_CONFIG
"$bins/cfdr-repo" init >/dev/null

# run CMD...: wall seconds and peak RSS (KiB) of CMD into $secs / $rss, then
# a checkpoint so no case pays for the previous one's dirty buffers.
run() {
  local start
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$@"
  secs=$(echo "$(date +%s.%N) - $start" | bc -l)
  rss=$(tail -1 "$work/rss")
  sync
  psql_q -d postgres -c CHECKPOINT
}
mib() { echo $(($1 / 1024)); }
size_of() { stat -c %s "$1"; }

failed=0
goal() { # goal NAME VALUE OP LIMIT
  if (($(echo "$2 $3 $4" | bc -l) == 0)); then
    echo "GOAL MISSED: $1 = $2 (want $3 $4)" >&2
    failed=1
  fi
}

printf '%-36s %7s %9s %10s %8s %9s\n' case scale seconds size "x runbook" "peak RSS"
row() { printf '%-36s %7s %9.2f %10s %8s %6s MiB\n' "$1" "$2" "$3" "$4" "$5" "$6"; }

for s in $((scale / 2)) "$scale"; do
  db="bench_$s"
  psql_q -d postgres -c "CREATE DATABASE $db"
  "$pgbin/pgbench" -q -i -s "$s" "$db" >/dev/null 2>&1
  psql_q -d "$db" -c "CREATE TABLE rnd(id bigint, t text);
    INSERT INTO rnd SELECT g, md5(random()::text) || md5(random()::text)
      FROM generate_series(1, $((s * 40000))) g"
  psql_q -d "$db" -c 'VACUUM ANALYZE'
  dbsize=$(psql_q -At -d postgres -c "SELECT pg_size_pretty(pg_database_size('$db'))")
  echo "-- dataset: pgbench -s $s + rnd $((s * 40000)) rows = $dbsize"

  # Backups.
  run bash -c "'$pgbin/pg_dump' $db | gzip > '$work/dump.sql.gz'"
  rb_secs=$secs rb_size=$(size_of "$work/dump.sql.gz")
  row "runbook: pg_dump | gzip" "$s" "$secs" "$(mib $((rb_size / 1024)))M" 1.00 "$(mib "$rss")"
  run bash -c "'$pgbin/pg_dump' -Fc -Z0 $db > '$work/dump.bin'"
  row "floor: pg_dump -Fc -Z0 > file" "$s" "$secs" "$(mib $(($(size_of "$work/dump.bin") / 1024)))M" \
    "$(printf %.2f "$(echo "$secs / $rb_secs" | bc -l)")" "$(mib "$rss")"
  rm -f "$work/dump.bin"
  run bash -c "'$pgbin/pg_dump' -Fc -Z0 $db | zstd -3 -T2 -q > '$work/dump.zst'"
  row "pg_dump -Fc -Z0 | zstd -3 -T2" "$s" "$secs" "$(mib $(($(size_of "$work/dump.zst") / 1024)))M" \
    "$(printf %.2f "$(echo "$secs / $rb_secs" | bc -l)")" "$(mib "$rss")"
  rm -f "$work/dump.zst"
  run env DATABASE_URL="postgres://postgres@127.0.0.1:$port/$db" "$bins/cfdr-backup" logical
  id=$("$bins/cfdr-backup" list --json | jq -r '.[-1].id')
  cf_size=$("$bins/cfdr-backup" list --json | jq -r '.[-1].objects[0].size')
  ratio=$(echo "$secs / $rb_secs" | bc -l)
  row "cfdr-backup logical (zstd)" "$s" "$secs" "$(mib $((cf_size / 1024)))M" "$(printf %.2f "$ratio")" "$(mib "$rss")"
  goal "backup time ratio (scale $s)" "$ratio" "<=" 0.35
  goal "backup size vs runbook (scale $s)" "$cf_size" "<=" "$rb_size"
  goal "backup peak RSS KiB (scale $s)" "$rss" "<" $((100 * 1024))
  eval "backup_rss_$s=$rss"

  # Restores into new databases.
  psql_q -d postgres -c "CREATE DATABASE r_runbook"
  run bash -c "gunzip -c '$work/dump.sql.gz' | '$pgbin/psql' -X -q -o /dev/null -d r_runbook"
  rr_secs=$secs
  row "runbook: gunzip -c | psql" "$s" "$secs" - 1.00 "$(mib "$rss")"
  psql_q -d postgres -c "DROP DATABASE r_runbook"
  rm -f "$work/dump.sql.gz"
  # Default: one copy session per core ($(nproc) here); --jobs 1 is a
  # single pg_restore reading the stream.
  for jobs in "$(nproc)" 1; do
    run env DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" \
      "$bins/cfdr-restore" logical "$id" --target-db "r_cfdr_$jobs" --jobs "$jobs" >"$work/restore.log"
    ratio=$(echo "$secs / $rr_secs" | bc -l)
    row "cfdr-restore logical --jobs $jobs" "$s" "$secs" - "$(printf %.2f "$ratio")" "$(mib "$rss")"
    sed 's/^/      /' "$work/restore.log" | grep -E 'pre-data|copy sessions|post-data|pg_restore' || true
    psql_q -d postgres -c "DROP DATABASE r_cfdr_$jobs"
    goal "restore peak RSS KiB (scale $s, jobs $jobs)" "$rss" "<" $((100 * 1024))
    eval "restore_ratio_${s}_$jobs=$ratio restore_rss_${s}_$jobs=$rss"
  done
  goal "restore time ratio (scale $s, default jobs)" "$(eval echo "\$restore_ratio_${s}_$(nproc)")" "<=" 0.8
  psql_q -d postgres -c "DROP DATABASE $db"
done

half=$((scale / 2))
echo "peak RSS when the database doubles: backup $(mib "$(eval echo "\$backup_rss_$half")") -> $(mib "$(eval echo "\$backup_rss_$scale")") MiB, restore $(mib "$(eval echo "\$restore_rss_${half}_$(nproc)")") -> $(mib "$(eval echo "\$restore_rss_${scale}_$(nproc)")") MiB"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}')"
exit "$failed"
