#!/usr/bin/env bash
# run.sh [start [--detach] | stop]: what `make run` does. Starts Asterisk 22 (Debian sid chroot), Redis and Patchbay
# on this machine with a generated config (.run/patchbay.yaml, fresh secrets, kept across runs), prints the page URL
# with a browser token and the sample softphones' SIP credentials. In the foreground, Ctrl-C stops all three;
# with --detach they keep running (PIDs and settings in .run/env) until `run.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${RUNDIR:-.run}"
BIN="${PATCHBAY_BIN:-bin/patchbay}"
REDIS_PORT="${PATCHBAY_REDIS_PORT:-6390}"
export PATCHBAY_CONFIG="$PWD/$RUN/patchbay.yaml"

stop_all() {
	if [[ -f "$RUN/patchbay.pid" ]]; then
		kill "$(cat "$RUN/patchbay.pid")" 2>/dev/null || true
		rm -f "$RUN/patchbay.pid"
	fi
	if [[ -f "$RUN/turnserver.pid" ]]; then
		kill "$(cat "$RUN/turnserver.pid")" 2>/dev/null || true
		rm -f "$RUN/turnserver.pid"
	fi
	if [[ -f "$RUN/redis.pid" ]]; then
		kill "$(cat "$RUN/redis.pid")" 2>/dev/null || true
		rm -f "$RUN/redis.pid"
	fi
	scripts/asterisk.sh stop >/dev/null 2>&1 || true
}

case "${1:-start}" in
stop)
	stop_all
	echo "run.sh: stopped"
	exit 0
	;;
start) ;;
*)
	echo "usage: scripts/run.sh [start [--detach] | stop]" >&2
	exit 2
	;;
esac
detach=false
[[ "${2:-}" == "--detach" ]] && detach=true

[[ -x "$BIN" ]] || { echo "run.sh: $BIN missing: run 'make build' (or 'make run')" >&2; exit 1; }
mkdir -p "$RUN"
# One `make run` at a time: the lock is held by this script in the foreground and handed to the detached Patchbay
# (fd 9 is inherited), so a second run says so instead of starting a Patchbay that loses the first one's PID.
exec 9>>"$RUN/run.lock"
if ! flock -n 9; then
	pid=$(cat "$RUN/patchbay.pid" 2>/dev/null || true)
	echo "run.sh: Patchbay from 'make run' is already running${pid:+ (PID $pid)}: use it, or stop it first with 'make stop'" >&2
	exit 1
fi
if [[ -f "$RUN/patchbay.pid" ]] && kill -0 "$(cat "$RUN/patchbay.pid")" 2>/dev/null; then
	echo "run.sh: Patchbay is already running (PID $(cat "$RUN/patchbay.pid")): stop it first with 'make stop'" >&2
	exit 1
fi
"$BIN" config init --out "$PATCHBAY_CONFIG" --certs-dir "$PWD/$RUN/certs" --redis "127.0.0.1:$REDIS_PORT" --turn-tls-port 5349
"$BIN" certs init >/dev/null
# Asterisk reads its certificates at /etc/asterisk/keys inside the chroot; asterisk.sh installs them there.
"$BIN" asterisk-config --out "$RUN/asterisk" --cert-dir /etc/asterisk/keys >/dev/null
# Asterisk and Redis outlive a crashed Patchbay: they must not inherit the lock (fd 9), or the next `make run`
# would think the dead Patchbay still runs.
ASTERISK_CONF_DIR="$RUN/asterisk" ASTERISK_CERT_DIR="$RUN/certs" scripts/asterisk.sh start 9>&-

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
		--pidfile "$PWD/$RUN/redis.pid" --logfile "$PWD/$RUN/redis.log" 9>&-
fi
# coturn, for browsers whose network only lets a TURN relay through. This single-host run relays to Patchbay on
# loopback (--dev-loopback); a production turnserver.conf never does.
turn_note="TURN: not configured (turn.urls empty in $PATCHBAY_CONFIG)"
if grep -qE '^turn:' "$PATCHBAY_CONFIG"; then
	command -v turnserver >/dev/null || { echo "run.sh: turnserver missing: run scripts/provision.sh" >&2; exit 1; }
	"$BIN" turn-config --out "$RUN/turnserver.conf" --dev-loopback --log-file "$PWD/$RUN/turnserver.log" \
		--pid-file "$PWD/$RUN/turnserver.pid" >/dev/null
	if [[ ! -f "$RUN/turnserver.pid" ]] || ! kill -0 "$(cat "$RUN/turnserver.pid")" 2>/dev/null; then
		turnserver -c "$RUN/turnserver.conf" -o >/dev/null 9>&-
	fi
	turn_note="TURN: coturn (log $RUN/turnserver.log); browsers get fresh credentials per session"
fi
trap 'stop_all' EXIT INT TERM

token=$("$BIN" token --user alice --name Alice --dial ext,user,room --ttl 12h)
listen=$(sed -nE 's/^ *listen: *"?([^"]*)"?/\1/p' "$PATCHBAY_CONFIG" | head -n1)
port="${listen##*:}"; port="${port:-8443}"
url="https://localhost:${port}/?token=${token}"
phones=$(sed -n '/phones:/,/^[a-z]/p' "$PATCHBAY_CONFIG" | grep -E 'name|password|transport|srtp' | paste -sd' ' | sed 's/- /\n  /g')

cat <<MSG

Patchbay is starting. Open this page (the CA is $RUN/certs/ca.crt; trust it or accept the warning):

  $url

It is signed in as alice: dial 600 (echo), 601 (440 Hz tone), 602 (DTMF read), or a softphone.
Softphones register to 127.0.0.1 (SIP 5060 UDP/TCP, 5061 TLS) with these accounts:
$phones
A softphone dialling "alice" (or a number mapped under users: in the config) rings the page.
$turn_note. Pre-call check: https://localhost:${port}/check?token=${token}
Config: $PATCHBAY_CONFIG   Asterisk CLI: scripts/asterisk.sh cli 'core show channels'
MSG

if $detach; then
	trap - EXIT INT TERM
	nohup "$BIN" serve >"$RUN/patchbay.log" 2>&1 &
	echo $! >"$RUN/patchbay.pid"
	# .run/env holds a browser token: only this user may read it.
	rm -f "$RUN/env"
	(umask 077 && : >"$RUN/env")
	{
		echo "PATCHBAY_CONFIG=$PATCHBAY_CONFIG"
		echo "PATCHBAY_PID=$(cat "$RUN/patchbay.pid")"
		echo "ASTERISK_PID=$(scripts/asterisk.sh status 2>/dev/null | grep -oE '[0-9]+' | head -n1)"
		echo "PATCHBAY_URL=wss://localhost:${port}/ws"
		echo "PATCHBAY_TOKEN=$token"
	} >"$RUN/env"
	echo "Detached: logs in $RUN/patchbay.log; stop with scripts/run.sh stop"
	exit 0
fi
echo "Ctrl-C stops Patchbay, Asterisk and Redis."
"$BIN" serve 9>&-
