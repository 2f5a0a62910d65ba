#!/usr/bin/env bash
# asterisk.sh start|stop|status|cli CMD... : run Patchbay's Asterisk 22 in the Debian sid chroot
# built by scripts/asterisk-root.sh (used by `make run`). Needs root.
#
#   ASTERISK_CONF_DIR  rendered configs (`patchbay asterisk-config --out DIR`); required for start.
#                      They are installed into the chroot at the astetcdir named in asterisk.conf.
#   ASTERISK_CERT_DIR  optional: ca.crt, server.crt, server.key to install where http.conf expects
#                      them (tlscertfile's directory inside the chroot).
#   PATCHBAY_ASTERISK_ROOT  the chroot (default /var/cache/patchbay/asterisk-root).
#
# proc and /dev are mounted into the chroot and shared, reference-counted, with the Go test
# harness (test/testenv) through ROOT.mounts and ROOT.mounts.lock.
set -euo pipefail

ROOT="${PATCHBAY_ASTERISK_ROOT:-/var/cache/patchbay/asterisk-root}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOCK="$ROOT.mounts.lock"
HOLDERS="$ROOT.mounts"
STATE="$ROOT.run-state" # chroot path of asterisk.conf of the instance this script started

die() { echo "asterisk.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (chroot, mount); rerun with sudo"

# inroot PATH: the host path of PATH as seen inside the chroot. Symlinks are resolved inside the
# chroot (its /var/run points at /run: resolving on the host would touch the host's /run).
inroot() { echo "$ROOT$(chroot "$ROOT" realpath -m "$1")"; }

conf_value() { # conf_value FILE KEY: first "KEY = value" / "KEY => value" in an Asterisk config
	sed -nE "s/^[[:space:]]*$2[[:space:]]*=>?[[:space:]]*([^;[:space:]]+).*/\1/p" "$1" | head -n1
}

# Holder lines are "PID ID"; lines whose PID is gone are dropped (a crash must not pin mounts).
prune_holders() {
	local line pid
	[[ -f "$HOLDERS" ]] || { : >"$HOLDERS"; return; }
	local keep=()
	while read -r pid rest; do
		[[ -n "${pid:-}" ]] || continue
		if kill -0 "$pid" 2>/dev/null; then keep+=("$pid $rest"); fi
	done <"$HOLDERS"
	if ((${#keep[@]})); then printf '%s\n' "${keep[@]}" >"$HOLDERS"; else : >"$HOLDERS"; fi
}

is_mounted() { awk -v m="$1" '$5 == m {found=1} END {exit !found}' /proc/self/mountinfo; }

acquire_mounts() { # acquire_mounts PID
	exec 8>"$LOCK"
	flock 8
	prune_holders
	is_mounted "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
	is_mounted "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
	echo "$1 asterisk.sh" >>"$HOLDERS"
	flock -u 8
}

release_mounts() { # release_mounts PID
	exec 8>"$LOCK"
	flock 8
	prune_holders
	grep -v "^$1 asterisk.sh\$" "$HOLDERS" >"$HOLDERS.new" || true
	mv "$HOLDERS.new" "$HOLDERS"
	if [[ ! -s "$HOLDERS" ]]; then
		is_mounted "$ROOT/dev" && { umount "$ROOT/dev" || umount -l "$ROOT/dev"; }
		is_mounted "$ROOT/proc" && { umount "$ROOT/proc" || umount -l "$ROOT/proc"; }
	fi
	flock -u 8
}

astconf() { # chroot path of the running instance's asterisk.conf
	[[ -f "$STATE" ]] || die "not started by this script (no $STATE)"
	cat "$STATE"
}

ast_pid() {
	local conf rundir
	conf="$(astconf)" || exit 1
	rundir="$(conf_value "$(inroot "$conf")" astrundir)"
	cat "$(inroot "${rundir:-/var/run/asterisk}")/asterisk.pid" 2>/dev/null || true
}

cmd_start() {
	[[ -n "${ASTERISK_CONF_DIR:-}" ]] || die "set ASTERISK_CONF_DIR to the rendered configs (patchbay asterisk-config --out DIR)"
	[[ -f "$ASTERISK_CONF_DIR/asterisk.conf" ]] || die "$ASTERISK_CONF_DIR/asterisk.conf missing: render the configs first"
	"$HERE/asterisk-root.sh" "$ROOT"
	if [[ -f "$STATE" ]] && pid="$(ast_pid)" && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		echo "asterisk.sh: already running (pid $pid)"; return 0
	fi

	local src="$ASTERISK_CONF_DIR/asterisk.conf" etc d
	etc="$(conf_value "$src" astetcdir)"; etc="${etc:-/etc/asterisk}"
	chroot "$ROOT" install -d -m 0750 "$etc"
	install -m 0640 "$ASTERISK_CONF_DIR"/*.conf "$(inroot "$etc")/"
	if [[ -n "${ASTERISK_CERT_DIR:-}" ]]; then
		local cert certdir
		cert="$(conf_value "$ASTERISK_CONF_DIR/http.conf" tlscertfile)"
		[[ -n "$cert" ]] || die "http.conf has no tlscertfile; cannot tell where the certificates go"
		certdir="$(dirname "$cert")"
		chroot "$ROOT" install -d -m 0750 "$certdir"
		install -m 0640 "$ASTERISK_CERT_DIR"/{ca.crt,server.crt,server.key} "$(inroot "$certdir")/"
		chroot "$ROOT" chown -R asterisk:asterisk "$certdir"
	fi
	for key in astrundir astlogdir astspooldir astdbdir astvarlibdir; do
		d="$(conf_value "$src" "$key")"
		[[ -n "$d" ]] || continue
		chroot "$ROOT" install -d -m 0750 -o asterisk -g asterisk "$d"
	done
	chroot "$ROOT" install -d -m 0755 /var/lib/asterisk/keys
	chroot "$ROOT" chown -R asterisk:asterisk "$etc"
	echo "$etc/asterisk.conf" >"$STATE"

	acquire_mounts $$
	# Daemonises; the pid file tells us the real pid.
	setsid chroot "$ROOT" asterisk -U asterisk -G asterisk -C "$etc/asterisk.conf" </dev/null >/dev/null 2>&1 || {
		release_mounts $$; die "asterisk failed to start; see the chroot's log dir ($(conf_value "$src" astlogdir))"
	}
	local pid="" i
	for i in $(seq 1 100); do
		pid="$(ast_pid)"
		[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && break
		sleep 0.1
	done
	[[ -n "$pid" ]] || { release_mounts $$; die "asterisk did not write its pid file within 10 s"; }
	# Hand the mount reference from this shell to the Asterisk process.
	exec 8>"$LOCK"; flock 8
	sed -i "s/^$$ asterisk.sh\$/$pid asterisk.sh/" "$HOLDERS"
	flock -u 8
	# The control socket appears a moment after the pid file: retry until it answers.
	for i in $(seq 1 300); do
		if timeout 30 chroot "$ROOT" asterisk -C "$etc/asterisk.conf" -rx 'core waitfullybooted' >/dev/null 2>&1; then
			break
		fi
		kill -0 "$pid" 2>/dev/null || die "asterisk (pid $pid) exited during boot; see $(conf_value "$src" astlogdir)/messages.log in $ROOT"
		((i < 300)) || die "asterisk (pid $pid) did not finish booting within 30 s"
		sleep 0.1
	done
	echo "asterisk.sh: Asterisk running (pid $pid), config $etc in $ROOT"
}

cmd_stop() {
	local pid conf i
	[[ -f "$STATE" ]] || { echo "asterisk.sh: not running"; return 0; }
	conf="$(astconf)" || exit 1
	pid="$(ast_pid)"
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		timeout 10 chroot "$ROOT" asterisk -C "$conf" -rx 'core stop now' >/dev/null 2>&1 || true
		for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			echo "asterisk.sh: pid $pid ignored 'core stop now'; killing it" >&2
			kill -9 "$pid" || true
		fi
	fi
	[[ -n "$pid" ]] && release_mounts "$pid"
	rm -f "$STATE"
	echo "asterisk.sh: stopped"
}

cmd_status() {
	local pid conf
	[[ -f "$STATE" ]] || { echo "asterisk.sh: not running"; return 3; }
	pid="$(ast_pid)"
	if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
		echo "asterisk.sh: not running (stale state)"; return 3
	fi
	echo "asterisk.sh: running (pid $pid)"
	conf="$(astconf)" || exit 1
	chroot "$ROOT" asterisk -C "$conf" -rx 'core show uptime'
}

cmd_cli() {
	(($#)) || die "usage: asterisk.sh cli 'pjsip show endpoints'"
	local conf
	conf="$(astconf)" || exit 1
	chroot "$ROOT" asterisk -C "$conf" -rx "$*"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
cli) shift; cmd_cli "$@" ;;
*) echo "usage: $0 start|stop|status|cli CMD..." >&2; exit 2 ;;
esac
