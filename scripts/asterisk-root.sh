#!/usr/bin/env bash
# asterisk-root.sh [ROOT]: build a Debian sid root holding Asterisk 22 (not packaged in bookworm).
#
# Idempotent: exits at once when ROOT/usr/sbin/asterisk already exists. The root is built in
# ROOT.tmp and renamed into place only when complete, so an interrupted build never leaves a
# half-populated root behind. Needs root privileges (mmdebstrap, chroot).
set -euo pipefail

ROOT="${1:-${PATCHBAY_ASTERISK_ROOT:-/var/cache/patchbay/asterisk-root}}"
MIRROR="${PATCHBAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [[ -x "$ROOT/usr/sbin/asterisk" ]]; then
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "asterisk-root.sh: building the Asterisk root needs root (mmdebstrap + chroot); rerun with sudo" >&2
	exit 1
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
	apt-get install -y mmdebstrap
fi

mkdir -p "$(dirname "$ROOT")"
# Serialise concurrent builders (parallel test binaries): the loser waits, then sees the root.
exec 9>"$ROOT.lock"
flock 9
if [[ -x "$ROOT/usr/sbin/asterisk" ]]; then
	exit 0
fi

TMP="$ROOT.tmp"
rm -rf "$TMP"
# The sid Release file is routinely "expired" for apt's taste; Valid-Until has to be ignored.
mmdebstrap --variant=apt \
	--aptopt='Acquire::Check-Valid-Until "false"' \
	--include=asterisk,asterisk-modules,ca-certificates \
	sid "$TMP" "$MIRROR"

if [[ ! -x "$TMP/usr/sbin/asterisk" ]]; then
	echo "asterisk-root.sh: mmdebstrap finished but $TMP/usr/sbin/asterisk is missing; see the output above" >&2
	exit 1
fi
mv "$TMP" "$ROOT"
echo "asterisk-root.sh: Asterisk root ready at $ROOT"
