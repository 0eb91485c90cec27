# shellcheck shell=bash
# Starts the storage emulators the tests talk to, each on a free 127.0.0.1
# port with its data in a temp dir, and exports the CFDR_TEST_* variables
# the Rust tests read. Sourced after install.sh; call cfdr_services_start.
# An EXIT trap stops every started service by PID and removes the temp dir,
# also when the caller fails or is interrupted.

CFDR_TEST_BUCKET=cfdr-test
# Seconds per service: generous, since a loaded machine starts moto and
# Azurite slowly; a service that dies is seen at once.
CFDR_SERVICE_TIMEOUT="${CFDR_SERVICE_TIMEOUT:-120}"
# Status of cfdr_service_run when the service lost its port to another
# process between choosing and binding: the caller retries on a new port.
CFDR_SVC_PORT_TAKEN=75
# Azurite's fixed development account (public, documented by Microsoft).
CFDR_AZURITE_ACCOUNT=devstoreaccount1
CFDR_AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

CFDR_SVC_DIR=""
CFDR_SVC_PIDS=()
CFDR_SVC_NAMES=()

# Stops services by PID: TERM, up to 5 s grace, then KILL. Safe to call twice.
cfdr_services_stop() {
  set +e
  local i pid n
  for pid in "${CFDR_SVC_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for i in "${!CFDR_SVC_PIDS[@]}"; do
    pid=${CFDR_SVC_PIDS[$i]}
    # They are our children: a dead one stays a zombie (state Z) until reaped.
    for ((n = 0; n < 50; n++)); do
      [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == Z* || -z "$(ps -o pid= -p "$pid" 2>/dev/null)" ]] && break
      sleep 0.1
    done
    if ((n == 50)); then
      cfdr_log "${CFDR_SVC_NAMES[$i]} (pid $pid) ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
  CFDR_SVC_PIDS=()
  CFDR_SVC_NAMES=()
  if [[ -n "$CFDR_SVC_DIR" ]]; then
    rm -rf "$CFDR_SVC_DIR"
    CFDR_SVC_DIR=""
  fi
  set -e
}

# Prints N distinct free ports. Holding all sockets at once keeps them distinct.
cfdr_free_ports() {
  "$CFDR_VENV_PYTHON" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

cfdr_service_fail() { # NAME REASON
  local log="$CFDR_SVC_DIR/$1.log"
  if [[ -s "$log" ]]; then
    printf '[cfdr] --- %s log, last lines ---\n' "$1" >&2
    tail -n 20 "$log" >&2
    printf '[cfdr] ---\n' >&2
  fi
  cfdr_die "$1 could not start: $2"
}

# cfdr_service_run NAME URL CMD...: starts CMD in the background (cwd and
# log in the temp dir) and waits until URL answers any HTTP status.
cfdr_service_run() {
  local name=$1 url=$2 pid code deadline
  shift 2
  # exec keeps the recorded PID that of the service itself.
  (cd "$CFDR_SVC_DIR" && exec "$@") >"$CFDR_SVC_DIR/$name.log" 2>&1 </dev/null &
  pid=$!
  CFDR_SVC_PIDS+=("$pid")
  CFDR_SVC_NAMES+=("$name")
  deadline=$((SECONDS + CFDR_SERVICE_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null || [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == Z* ]]; then
      wait "$pid" 2>/dev/null && code=0 || code=$?
      if grep -qiE 'address already in use|EADDRINUSE' "$CFDR_SVC_DIR/$name.log" 2>/dev/null; then
        cfdr_log "$name: its port was taken before it could bind; retrying on another"
        return "$CFDR_SVC_PORT_TAKEN"
      fi
      cfdr_service_fail "$name" "process exited with status $code (command: $*)"
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null) || true
    [[ "$code" != 000 && -n "$code" ]] && return 0
    ((SECONDS < deadline)) || cfdr_service_fail "$name" "no HTTP answer on $url after ${CFDR_SERVICE_TIMEOUT}s"
    sleep 0.2
  done
}

cfdr_start_s3() { # PORT
  local root="$CFDR_SVC_DIR/s3-root"
  # s3s-fs serves each folder under its root as a bucket.
  mkdir -p "$root/$CFDR_TEST_BUCKET"
  cfdr_service_run s3s-fs "http://127.0.0.1:$1/" \
    "$CFDR_S3S_FS_BIN" --host 127.0.0.1 --port "$1" --access-key test --secret-key test "$root" || return
  export CFDR_TEST_S3_ENDPOINT="http://127.0.0.1:$1"
  export CFDR_TEST_S3_BUCKET="$CFDR_TEST_BUCKET"
  export CFDR_TEST_S3_ACCESS_KEY_ID=test
  export CFDR_TEST_S3_SECRET_ACCESS_KEY=test
  export CFDR_TEST_S3_REGION=us-east-1
  export CFDR_TEST_S3_ROOT="$root"
}

# Creates (or confirms) an Azurite container with a SharedKey-signed request,
# using only the Python standard library.
cfdr_azurite_create_container() { # ENDPOINT
  "$CFDR_VENV_PYTHON" - "$1" "$CFDR_AZURITE_ACCOUNT" "$CFDR_AZURITE_KEY" "$CFDR_TEST_BUCKET" <<'PY'
import base64, hashlib, hmac, http.client, sys, urllib.parse
from email.utils import formatdate

endpoint, account, key, container = sys.argv[1:5]
url = urllib.parse.urlsplit(endpoint)
version = "2021-08-06"

def call(method):
    date = formatdate(usegmt=True)
    # Blob SharedKey: verb, 11 standard headers (all empty: http.client adds
    # no Content-Type, and a zero Content-Length signs as empty), the x-ms-*
    # headers, then the resource; path-style URLs repeat the account name.
    to_sign = (method + "\n" * 12
               + f"x-ms-date:{date}\nx-ms-version:{version}\n"
               + f"/{account}{url.path}/{container}\nrestype:container")
    sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request(method, f"{url.path}/{container}?restype=container", headers={
        "x-ms-date": date,
        "x-ms-version": version,
        "Content-Length": "0",
        "Authorization": f"SharedKey {account}:{sig}",
    })
    r = conn.getresponse()
    return r.status, r.read().decode(errors="replace")[:500]

status, body = call("PUT")
if status not in (201, 409):  # 409: already exists
    sys.exit(f"PUT container returned HTTP {status}: {body}")
status, body = call("GET")
if status != 200:
    sys.exit(f"GET container properties returned HTTP {status}: {body}")
PY
}

cfdr_start_azurite() { # PORT
  local endpoint="http://127.0.0.1:$1/$CFDR_AZURITE_ACCOUNT" err
  # --disableTelemetry: otherwise Azurite sends telemetry to the internet.
  cfdr_service_run azurite "$endpoint?comp=list" \
    "$CFDR_AZURITE_BLOB_BIN" --blobHost 127.0.0.1 --blobPort "$1" --silent --loose \
    --skipApiVersionCheck --disableTelemetry --inMemoryPersistence || return
  err=$(cfdr_azurite_create_container "$endpoint" 2>&1) ||
    cfdr_service_fail azurite "creating container $CFDR_TEST_BUCKET failed: $err"
  export CFDR_TEST_AZBLOB_ENDPOINT="$endpoint"
  export CFDR_TEST_AZBLOB_CONTAINER="$CFDR_TEST_BUCKET"
  export CFDR_TEST_AZBLOB_ACCOUNT_NAME="$CFDR_AZURITE_ACCOUNT"
  export CFDR_TEST_AZBLOB_ACCOUNT_KEY="$CFDR_AZURITE_KEY"
}

cfdr_start_gcs() { # PORT
  local endpoint="http://127.0.0.1:$1" code
  cfdr_service_run fake-gcs-server "$endpoint/storage/v1/b" \
    "$CFDR_FAKE_GCS_BIN" -scheme http -host 127.0.0.1 -port "$1" -backend memory \
    -external-url "$endpoint" -public-host "127.0.0.1:$1" || return
  code=$(curl -s -o "$CFDR_SVC_DIR/gcs-create.out" -w '%{http_code}' --max-time 10 \
    -X POST -H 'Content-Type: application/json' -d "{\"name\":\"$CFDR_TEST_BUCKET\"}" \
    "$endpoint/storage/v1/b?project=test") || true
  [[ "$code" == 200 || "$code" == 409 ]] ||
    cfdr_service_fail fake-gcs-server "creating bucket $CFDR_TEST_BUCKET returned HTTP $code: $(head -c 500 "$CFDR_SVC_DIR/gcs-create.out" 2>/dev/null)"
  curl -sf -o /dev/null --max-time 10 "$endpoint/storage/v1/b/$CFDR_TEST_BUCKET" ||
    cfdr_service_fail fake-gcs-server "bucket $CFDR_TEST_BUCKET not found after creating it"
  export CFDR_TEST_GCS_ENDPOINT="$endpoint"
  export CFDR_TEST_GCS_BUCKET="$CFDR_TEST_BUCKET"
}

cfdr_start_moto() { # PORT
  local endpoint="http://127.0.0.1:$1" code
  cfdr_service_run moto "$endpoint/moto-api/" \
    "$CFDR_TOOLS_DIR/venv/bin/moto_server" -H 127.0.0.1 -p "$1" || return
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT "$endpoint/$CFDR_TEST_BUCKET") || true
  [[ "$code" == 200 ]] || cfdr_service_fail moto "creating bucket $CFDR_TEST_BUCKET returned HTTP $code"
  export CFDR_TEST_MOTO_ENDPOINT="$endpoint"
}

# cfdr_start_on_free_port START_FN: runs START_FN PORT on a free port, and
# on another when a different process took the port first (3 tries).
cfdr_start_on_free_port() {
  local try status
  for try in 1 2 3; do
    status=0
    "$1" "$(cfdr_free_ports 1)" || status=$?
    ((status == CFDR_SVC_PORT_TAKEN)) || return "$status"
  done
  cfdr_die "$1: the port was taken three times in a row"
}

# Starts all services (install.sh must have run: it sets the binary paths).
cfdr_services_start() {
  trap cfdr_services_stop EXIT
  # Exit through the EXIT trap on signals, with the usual 128+N status.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  CFDR_SVC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cfdr-services.XXXXXX") ||
    cfdr_die "cannot create a temp dir under ${TMPDIR:-/tmp}"
  local started=$SECONDS
  cfdr_start_on_free_port cfdr_start_s3
  cfdr_start_on_free_port cfdr_start_azurite
  cfdr_start_on_free_port cfdr_start_gcs
  cfdr_start_on_free_port cfdr_start_moto
  export CFDR_TEST_PG_BIN="$CFDR_PG_BIN"
  # Tells the tests the services are meant to be up: a missing one is an
  # error, not a skip.
  export CFDR_TEST_REQUIRE_SERVICES=1
  cfdr_log "services up in $((SECONDS - started))s: S3 $CFDR_TEST_S3_ENDPOINT, Azure $CFDR_TEST_AZBLOB_ENDPOINT, GCS $CFDR_TEST_GCS_ENDPOINT, moto $CFDR_TEST_MOTO_ENDPOINT (logs: $CFDR_SVC_DIR)"
}
