#!/usr/bin/env bash
# Usage: benches/physical-vs-pgbackrest.sh [SCALE] [SEGMENTS]   (default 50, 200)
#
# Physical base backup and PITR restore against pgBackRest on one PostgreSQL
# 15 cluster holding the bench dataset (pgbench -i -s SCALE plus rnd with
# SCALE x 40,000 rows of md5||md5 text). Both tools archive every segment
# (archive_command runs `cfdr-wal push` then `pgbackrest archive-push`), both
# compress with zstd level 1 (pgBackRest: 2 processes; cfdr: by default the
# server, one thread, via pg_basebackup --compress=server-zstd), both keep
# local repositories. Recovery uses each tool's default restore_command
# (cfdr: fetch --prefetch 4, a background worker fetching ahead), and
# pgBackRest both with its synchronous archive-get and with archive-async=y;
# the PITR ratio is against the faster of the two.
#   base backup: `cfdr-backup physical`  vs `pgbackrest backup --type=full`
#   PITR:        `cfdr-restore pitr --latest --start` vs `pgbackrest restore`
#                + pg_ctl start, each timed until the server has replayed
#                SEGMENTS segments of WAL written after the backups and
#                promoted.
# Prints times, sizes and ratios (cfdr / pgBackRest); exits 1 when a goal is
# missed: base backup <= 0.8x at no larger size, PITR <= 1.0x.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
scale=${1:-50}
segments=${2:-200}
pg_bin=${CFDR_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}
command -v pgbackrest >/dev/null || { echo "pgbackrest missing: apt-get install -y pgbackrest" >&2; exit 2; }
[[ -x $pg_bin/pgbench ]] || { echo "PostgreSQL 15 missing: apt-get install -y postgresql-15" >&2; exit 2; }
cargo build -q --release -p cfdr-wal -p cfdr-repo -p cfdr-backup -p cfdr-restore
rel="$REPO_ROOT/target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/cfdr-physical-bench.XXXXXX")
chown postgres:postgres "$work"
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  for d in pg cfdr-restored pgbr-restored; do
    as_pg "$pg_bin/pg_ctl" -D "$work/$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

as_pg mkdir -p "$work/sock" "$work/pgbr-repo" "$work/pgbr-spool" "$work/pgbr-lock" "$work/pgbr-log"
as_pg tee "$work/cfdr.toml" >/dev/null <<CONF
[repository]
url = "file://$work/cfdr-repo"
[codec]
compression = "zstd"
level = 1
CONF
as_pg tee "$work/pgbackrest.conf" >/dev/null <<CONF
[global]
repo1-path=$work/pgbr-repo
spool-path=$work/pgbr-spool
lock-path=$work/pgbr-lock
log-path=$work/pgbr-log
log-level-console=warn
log-level-file=off
compress-type=zst
compress-level=1
process-max=2
start-fast=y
repo1-retention-full=9999

[bench]
pg1-path=$work/pg
pg1-port=$port
pg1-socket-path=$work/sock
CONF
export CFDR_CONFIG="$work/cfdr.toml"
unset CFDR_REPOSITORY
as_pg env CFDR_CONFIG="$CFDR_CONFIG" "$rel/cfdr-repo" init >/dev/null

as_pg "$pg_bin/initdb" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync -D "$work/pg" >/dev/null
as_pg tee -a "$work/pg/postgresql.conf" >/dev/null <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/sock'
wal_level = replica
archive_mode = on
archive_command = 'CFDR_CONFIG=$work/cfdr.toml $rel/cfdr-wal push %p && pgbackrest --config=$work/pgbackrest.conf --stanza=bench archive-push %p'
max_wal_size = 4GB
CONF
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
psql_q() { "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
pgbr() { as_pg pgbackrest --config="$work/pgbackrest.conf" --stanza=bench "$@"; }
pgbr stanza-create >/dev/null

"$pg_bin/pgbench" -q -i -s "$scale" postgres >/dev/null 2>&1
psql_q -c "CREATE TABLE rnd AS SELECT g::bigint AS id, md5(random()::text) || md5(random()::text) AS t
  FROM generate_series(1, $((scale * 40000))) g"
psql_q -c CHECKPOINT
echo "-- cluster: pgbench -s $scale + rnd $((scale * 40000)) rows = $(psql_q -At -c "SELECT pg_size_pretty(sum(pg_database_size(oid))) FROM pg_database")"

secs() { echo "$(date +%s.%N) - $1" | bc -l; }
failed=0
goal() { # goal NAME VALUE OP LIMIT
  if (($(echo "$2 $3 $4" | bc -l) == 0)); then
    echo "GOAL MISSED: $1 = $2 (want $3 $4)" >&2
    failed=1
  fi
}
printf '%-44s %9s %10s %8s\n' case seconds size "x pgBR"

t=$(date +%s.%N)
pgbr backup --type=full >/dev/null
pgbr_backup=$(secs "$t")
pgbr_size=$(du -sb "$work/pgbr-repo/backup" | cut -f1)
printf '%-44s %9.2f %9sM %8s\n' "pgbackrest backup --type=full (zst 1, pm 2)" "$pgbr_backup" $((pgbr_size >> 20)) 1.00
psql_q -c CHECKPOINT

t=$(date +%s.%N)
DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" "$rel/cfdr-backup" physical >/dev/null
cfdr_backup=$(secs "$t")
cfdr_size=$(du -sb "$work/cfdr-repo/backups" | cut -f1)
ratio=$(echo "$cfdr_backup / $pgbr_backup" | bc -l)
printf '%-44s %9.2f %9sM %8.2f\n' "cfdr-backup physical (server zstd 1)" "$cfdr_backup" $((cfdr_size >> 20)) "$ratio"
goal "base backup time ratio" "$ratio" "<=" 0.8
goal "base backup size vs pgBackRest" "$cfdr_size" "<=" "$pgbr_size"

# WAL after both backups: updates and inserts of random text, switched into
# SEGMENTS archived segments.
start_lsn=$(psql_q -At -c "SELECT pg_current_wal_lsn()")
while (($(psql_q -At -c "SELECT (pg_wal_lsn_diff(pg_current_wal_lsn(), '$start_lsn') / 16777216)::int") < segments)); do
  "$pg_bin/pgbench" -c 2 -T 2 -n postgres >/dev/null 2>&1
  psql_q -c "INSERT INTO rnd SELECT g, md5(random()::text) || md5(g::text) FROM generate_series(1, 300000) g"
done
last=$(psql_q -At -c "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 600); do
  [[ -e $work/pg/pg_wal/archive_status/$last.done ]] && break
  sleep 0.5
done
rows=$(psql_q -At -c "SELECT count(*) FROM rnd")
echo "-- $segments+ segments of WAL written and archived after the backups (rnd now $rows rows)"

# Restores, each until promoted with every archived segment replayed.
wait_promoted() { # port
  until [[ $("$pg_bin/psql" -X -At -h 127.0.0.1 -p "$1" -d postgres -c "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]]; do
    sleep 0.1
  done
}
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# pgBackRest twice: its default synchronous archive-get, and archive-async=y
# (archive-get fetches ahead into the spool with process-max 2); the goal
# is against the faster.
pgbr_pitr=""
for async in n y; do
  sed -i "s/^archive-async=.*//" "$work/pgbackrest.conf"
  sed -i "s/^\[global\]$/[global]\narchive-async=$async/" "$work/pgbackrest.conf"
  t=$(date +%s.%N)
  as_pg mkdir -m 700 "$work/pgbr-restored"
  pgbr restore --pg1-path="$work/pgbr-restored" >/dev/null
  as_pg "$pg_bin/pg_ctl" -D "$work/pgbr-restored" -l "$work/pgbr-restored.log" -w -t 600 \
    -o "-p $rport -c archive_mode=off -c unix_socket_directories=$work/sock" start >/dev/null
  wait_promoted "$rport"
  secs_pitr=$(secs "$t")
  check_pgbr=$("$pg_bin/psql" -X -At -h 127.0.0.1 -p "$rport" -d postgres -c "SELECT count(*) FROM rnd")
  as_pg "$pg_bin/pg_ctl" -D "$work/pgbr-restored" -m immediate stop >/dev/null
  rm -rf "$work/pgbr-restored"
  [[ $check_pgbr == "$rows" ]] || { echo "RESTORE MISMATCH: live rnd $rows rows, pgBackRest restore (async=$async) $check_pgbr" >&2; failed=1; }
  printf '%-44s %9.2f %10s\n' "pgbackrest restore (archive-async=$async)" "$secs_pitr" -
  if [[ -z $pgbr_pitr ]] || (($(echo "$secs_pitr < $pgbr_pitr" | bc -l))); then pgbr_pitr=$secs_pitr; fi
done

t=$(date +%s.%N)
out=$("$rel/cfdr-restore" pitr --latest --data-dir "$work/cfdr-restored" --start)
cfdr_pitr=$(secs "$t")
cport=$(sed -nE 's/.*server running on port ([0-9]+).*/\1/p' <<<"$out")
check_cfdr=$("$pg_bin/psql" -X -At -h 127.0.0.1 -p "$cport" -d postgres -c "SELECT count(*) FROM rnd")
ratio=$(echo "$cfdr_pitr / $pgbr_pitr" | bc -l)
printf '%-44s %9.2f %10s %8.2f\n' "cfdr-restore pitr --latest --start" "$cfdr_pitr" - "$ratio"
goal "PITR time ratio" "$ratio" "<=" 1.0
if [[ $check_cfdr != "$rows" ]]; then
  echo "RESTORE MISMATCH: live rnd $rows rows, cfdr restore $check_cfdr" >&2
  failed=1
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}'), $(pgbackrest version)"
exit "$failed"
