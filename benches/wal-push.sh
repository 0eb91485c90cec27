#!/usr/bin/env bash
# Usage: benches/wal-push.sh [SEGMENTS]   (default 200)
#
# WAL push against pgBackRest on the same machine, local repositories, zstd
# level 3 for both, as PostgreSQL calls archive_command: one process per
# segment, one after the other, each acknowledged segment's .ready renamed
# to .done as the archiver does.
#   sync:  `cfdr-wal push %p`            vs `pgbackrest archive-push %p`
#   async: `cfdr-wal push --async %p`    vs `pgbackrest archive-push %p` with
#          archive-async=y; both with 2 parallel uploads (push-processes /
#          process-max).
# The segments come from a real PostgreSQL 15 cluster running pgbench
# (generated once into the work folder). Prints segments/s, the ratio, the
# mean time per invocation, and the peak RSS of one push and one fetch
# (/usr/bin/time). Everything runs as the `postgres` OS user.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

count=${1:-200}
pg_bin=${CFDR_PG_BIN:-/usr/lib/postgresql/15/bin}
command -v pgbackrest >/dev/null || { echo "pgbackrest missing: apt-get install -y pgbackrest" >&2; exit 2; }
[[ -x $pg_bin/pgbench ]] || { echo "PostgreSQL 15 missing: apt-get install -y postgresql-15" >&2; exit 2; }
cargo build -q --release -p cfdr-wal -p cfdr-repo
wal="$REPO_ROOT/target/release/cfdr-wal"
work=$(mktemp -d "${TMPDIR:-/tmp}/cfdr-wal-bench.XXXXXX")
chown postgres:postgres "$work"
as_pg() { runuser -u postgres -- "$@"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. A real cluster writes >= COUNT segments (pgbench), copied aside by archive_command.
as_pg mkdir -p "$work/segs" "$work/sock"
as_pg "$pg_bin/initdb" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync -D "$work/pg" >/dev/null
as_pg tee -a "$work/pg/postgresql.conf" >/dev/null <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/sock'
fsync = off
wal_level = replica
archive_mode = on
archive_command = 'cp %p $work/segs/%f'
max_wal_size = 4GB
CONF
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
psql=("$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt)
as_pg "$pg_bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -i -s 20 -q postgres >/dev/null 2>&1
# A trading-like mix: pgbench updates (full-page images) and inserts of
# random text (md5 hex, compresses ~2x).
as_pg "${psql[@]}" -c 'CREATE TABLE fills (id bigserial, at timestamptz DEFAULT now(), note text)'
while (($(find "$work/segs" -name '????????????????????????' | wc -l) < count + 1)); do
  as_pg "$pg_bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -c 2 -T 2 -n postgres >/dev/null 2>&1
  as_pg "${psql[@]}" -c "INSERT INTO fills (note) SELECT md5(random()::text) || md5(g::text) FROM generate_series(1, 500000) g" >/dev/null
  as_pg "${psql[@]}" -c 'SELECT pg_switch_wal()' >/dev/null
done
mapfile -t segs < <(find "$work/segs" -name '????????????????????????' -printf '%f\n' | sort | head -n "$count")
raw_mib=$(($(du -cb "${segs[@]/#/$work/segs/}" | tail -1 | cut -f1) >> 20))

# A data directory as the archiver sees it: pg_control, PG_VERSION, the segments, .ready files.
fake="$work/data"
reset_fake() {
  rm -rf "$fake"
  as_pg mkdir -p "$fake/global" "$fake/pg_wal/archive_status"
  as_pg cp "$work/pg/global/pg_control" "$fake/global/"
  as_pg cp "$work/pg/PG_VERSION" "$fake/"
  for s in "${segs[@]}"; do
    as_pg ln "$work/segs/$s" "$fake/pg_wal/$s"
    as_pg touch "$fake/pg_wal/archive_status/$s.ready"
  done
}

# 2. pgBackRest: stanza on the real cluster, pushes read the copy (same system id).
pgbr_conf() { # $1 = async y/n
  as_pg tee "$work/pgbackrest.conf" >/dev/null <<CONF
[global]
repo1-path=$work/pgbr-repo
spool-path=$work/pgbr-spool
lock-path=$work/pgbr-lock
log-path=$work/pgbr-log
log-level-console=warn
log-level-file=off
compress-type=zst
compress-level=3
process-max=2
archive-async=$1
start-fast=y

[bench]
pg1-path=$2
pg1-port=$port
pg1-socket-path=$work/sock
CONF
}
pgbr() { as_pg pgbackrest --config="$work/pgbackrest.conf" --stanza=bench "$@"; }

cfdr_conf() { # $1 = async true/false
  as_pg tee "$work/cfdr.toml" >/dev/null <<CONF
[repository]
url = "file://$work/cfdr-repo"
[codec]
compression = "zstd"
level = 3
[wal]
push-async = $1
spool-dir = "$work/cfdr-spool"
push-processes = 2
worker-idle-secs = 2
CONF
}
cfdr() { as_pg env -u CFDR_REPOSITORY -u CFDR_CONFIG "$wal" --config "$work/cfdr.toml" "$@"; }

# Pushes every segment, one process each, as the archiver: cd data dir, `%p`,
# then .ready -> .done. Prints the elapsed seconds.
push_all() { # tool
  local start end s
  start=$(date +%s.%N)
  for s in "${segs[@]}"; do
    if [[ $1 == cfdr ]]; then
      (cd "$fake" && cfdr push "pg_wal/$s")
    else
      (cd "$fake" && pgbr archive-push "$fake/pg_wal/$s")
    fi
    as_pg mv "$fake/pg_wal/archive_status/$s.ready" "$fake/pg_wal/archive_status/$s.done"
  done
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

fresh_repos() {
  rm -rf "$work/pgbr-repo" "$work/pgbr-spool" "$work/pgbr-lock" "$work/cfdr-repo" "$work/cfdr-spool"
  as_pg mkdir -p "$work/pgbr-repo" "$work/pgbr-spool" "$work/pgbr-lock" "$work/pgbr-log"
  pgbr_conf n "$work/pg"
  pgbr stanza-create >/dev/null
  as_pg "$REPO_ROOT/target/release/cfdr-repo" -r "file://$work/cfdr-repo" init >/dev/null
}

declare -A secs
for mode in sync async; do
  for tool in pgbackrest cfdr; do
    fresh_repos
    reset_fake
    if [[ $mode == async ]]; then pgbr_conf y "$fake"; cfdr_conf true; else pgbr_conf n "$fake"; cfdr_conf false; fi
    sync
    secs[$mode-$tool]=$(push_all "$tool")
    if [[ $tool == cfdr ]]; then
      stored=$(du -sb "$work/cfdr-repo/wal" | cut -f1)
    else
      stored=$(du -sb "$work/pgbr-repo/archive" | cut -f1)
    fi
    eval "stored_${mode}_${tool}=$stored"
  done
done

# Peak RSS of one push and one fetch (sync, fresh segment / stored segment).
fresh_repos
reset_fake
pgbr_conf n "$fake"
cfdr_conf false
s=${segs[0]}
rss() { /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null; echo $(($(cat "$work/rss") / 1024)); }
push_rss_cfdr=$(cd "$fake" && rss runuser -u postgres -- "$wal" --config "$work/cfdr.toml" push "pg_wal/$s")
push_rss_pgbr=$(rss runuser -u postgres -- pgbackrest --config="$work/pgbackrest.conf" --stanza=bench archive-push "$fake/pg_wal/$s")
fetch_rss_cfdr=$(cd "$fake" && rss runuser -u postgres -- "$wal" --config "$work/cfdr.toml" fetch "$s" "$work/fetched-cfdr")
fetch_rss_pgbr=$(rss runuser -u postgres -- pgbackrest --config="$work/pgbackrest.conf" --stanza=bench archive-get "$s" "$work/fetched-pgbr")
cmp "$work/fetched-cfdr" "$fake/pg_wal/$s"
cmp "$work/fetched-pgbr" "$fake/pg_wal/$s"

printf '%d segments of 16 MiB (%d MiB) from pgbench, zstd level 3, local repositories, 2 cores\n' "$count" "$raw_mib"
printf '%-7s %-11s %9s %10s %12s %12s %9s\n' mode tool seconds "segments/s" "ms/segment" "stored MiB" "x pgBR"
for mode in sync async; do
  for tool in pgbackrest cfdr; do
    t=${secs[$mode-$tool]}
    st="stored_${mode}_${tool}"
    printf '%-7s %-11s %9.2f %10.1f %12.1f %12d %9.2f\n' "$mode" "$tool" "$t" \
      "$(echo "$count / $t" | bc -l)" "$(echo "$t * 1000 / $count" | bc -l)" $((${!st} >> 20)) \
      "$(echo "${secs[$mode-pgbackrest]} / $t" | bc -l)"
  done
done
printf 'peak RSS: push cfdr %d MiB, pgbackrest %d MiB; fetch cfdr %d MiB, pgbackrest %d MiB\n' \
  "$push_rss_cfdr" "$push_rss_pgbr" "$fetch_rss_cfdr" "$fetch_rss_pgbr"
