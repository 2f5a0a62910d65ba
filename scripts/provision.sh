#!/usr/bin/env bash
# Installs everything Patchbay's `make run` and `make test` need on a Debian 12 machine: Debian packages for the
# SIP peers, Redis (with Sentinel and redis-cli, for the cluster tests), coturn, Chromium, Firefox ESR (with
# PulseAudio: a null sink is its audio output in tests), nftables and the chroot builder, the Node driver for Firefox
# (test/browser, from the npm registry), then the Asterisk 22 root from Debian sid (cached).
# Idempotent: a second run only checks. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "provision: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

# Package → a file it installs, to tell what is missing without asking apt.
declare -A want=(
  [mmdebstrap]=/usr/bin/mmdebstrap
  [redis-server]=/usr/bin/redis-server
  [redis-sentinel]=/usr/bin/redis-sentinel
  [redis-tools]=/usr/bin/redis-cli
  [baresip]=/usr/bin/baresip
  [sip-tester]=/usr/bin/sipp
  [chromium]=/usr/bin/chromium
  [libnss3-tools]=/usr/bin/certutil
  [sox]=/usr/bin/sox
  [iproute2]=/usr/sbin/ip
  [ca-certificates]=/etc/ssl/certs/ca-certificates.crt
  [make]=/usr/bin/make
  [nodejs]=/usr/bin/node
  [prometheus]=/usr/bin/prometheus
  [docker-compose]=/usr/bin/docker-compose
  [python3]=/usr/bin/python3
  [npm]=/usr/bin/npm
  [coturn]=/usr/bin/turnserver
  [firefox-esr]=/usr/bin/firefox-esr
  [pulseaudio]=/usr/bin/pulseaudio
  [nftables]=/usr/sbin/nft
)
missing=()
for pkg in "${!want[@]}"; do
  [ -e "${want[$pkg]}" ] || missing+=("$pkg")
done
# The Asterisk root (mmdebstrap of Debian sid: about two minutes, mostly downloading into its own directory, with
# its own apt) is built while the host's packages install: on a fresh machine that is minutes off `make test`.
# It needs only mmdebstrap, installed first when missing.
ast_root="${PATCHBAY_ASTERISK_ROOT:-/var/cache/patchbay/asterisk-root}"
ast_log=""
ast_pid=""
start_asterisk_root() {
  [ -x "$ast_root/usr/sbin/asterisk" ] && return 0
  ast_log=$(mktemp)
  $SUDO scripts/asterisk-root.sh "$ast_root" >"$ast_log" 2>&1 &
  ast_pid=$!
}
if [ ${#missing[@]} -gt 0 ]; then
  echo "provision: installing ${missing[*]}"
  $SUDO apt-get update -qq
  if [ ! -e "${want[mmdebstrap]}" ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
  fi
  start_asterisk_root
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go: go.mod asks for Go 1.26; a Go of 1.21 or later fetches that toolchain through the module proxy by itself.
if ! command -v go >/dev/null; then
  if [ -x /usr/local/go/bin/go ]; then
    echo "provision: Go is at /usr/local/go/bin; add it to PATH" >&2
  else
    echo "provision: Go is missing: install Go 1.21 or newer (https://go.dev/doc/install); it fetches Go 1.26 itself" >&2
  fi
  exit 1
fi

# Debian starts coturn as a service on install on some systems; Patchbay runs its own (make run, tests).
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
  $SUDO systemctl disable --now coturn >/dev/null 2>&1 || true
fi

# puppeteer-core drives Firefox ESR over WebDriver BiDi in the page tests (test/testenv/firefox.go).
if [ ! -f test/browser/node_modules/puppeteer-core/package.json ]; then
  echo "provision: installing test/browser (puppeteer-core)"
  (cd test/browser && npm ci --no-audit --no-fund --ignore-scripts >/dev/null)
fi

if [ -n "$ast_pid" ]; then
  if ! wait "$ast_pid"; then
    cat "$ast_log" >&2
    echo "provision: building the Asterisk root at $ast_root failed (its output is above)" >&2
    exit 1
  fi
  tail -n 3 "$ast_log"
  rm -f "$ast_log"
else
  $SUDO scripts/asterisk-root.sh "$ast_root"
fi
echo "provision: ready"
