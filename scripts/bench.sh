#!/usr/bin/env bash
# bench.sh [N ...]: load-test Patchbay against Asterisk-native WebRTC on this host. For each N (default: 50 100 150)
# and each pass it makes one run per mode, alternating:
#   native    the synthetic callers register to Asterisk over SIP/WSS (endpoints bench-webrtc-1..N, rendered by
#             `patchbay asterisk-config` from asterisk.bench_webrtc_endpoints) and run ICE + DTLS-SRTP with Asterisk
#             itself, calling the echo extension 600; Patchbay is not started;
#   patchbay  the same callers go through a fresh `patchbay serve` (config from `patchbay config init`,
#             certificates from `patchbay certs init`) to the same extension.
# Each run starts a fresh Asterisk (scripts/asterisk.sh) and, for Patchbay runs, a fresh Patchbay, pinned to the
# server CPUs, runs `patchbay bench` pinned to the load CPUs with their PIDs, prints its table, and stops
# everything: a fresh process per run keeps the idle RSS (the memory-per-call reference) honest. At the end
# `patchbay bench --compare` prints every N side by side (CPU, memory, RTT, loss, setup, channels and bridges per
# call, µs per packet operation, saturation) with ratios and goals, and the calls a core carries cleanly in each
# mode. Needs root (chroot).
#
#   MODES="native patchbay"      modes run for each N and pass, in this order (reversed on even passes: ORDER); "metrics" is Patchbay
#                                with /metrics served and scraped every SCRAPE (15s; other modes run metrics off); "pion" is Patchbay
#                                with media.lean_audio off (every call on pion's track path), labelled patchbay-pion;
#                                "ice" is Patchbay with Asterisk's ICE support on (rtp.conf as the native runs have it),
#                                labelled patchbay-asterisk-ice; "paced" is Patchbay with its media sockets read on a
#                                timer of PACE (400us) while busier than PACE_ABOVE datagrams a second (0: three per tick)
#                                (media.pace, media.pace_above), labelled patchbay-paced; the other Patchbay modes run
#                                with media.pace 0; "ref" is another build of Patchbay, REF_BIN (e.g. the commit
#                                before a change, built with go build -o), labelled patchbay-ref: before and after
#                                in one run;
#                                "b2b" and "opus" are browser ⇄ browser calls (bench --pairs: caller N dials the user
#                                bench-callee-N, whose synthetic browser sends back what it hears) offering PCMU, and
#                                Opus then PCMU: HD voice against G.711, side by side in --compare; "metrics-ab" is
#                                two Patchbays on one Asterisk at once, N/2 calls each, one with /metrics scraped: the
#                                cost of metrics free of what the host does meanwhile (run_ab)
#   PASSES=2                     passes over every N and mode
#   ORDER=abba                   abba: even passes run MODES in reverse (A B, B A, ...), so a drift within a pass
#                                cancels over an even number of passes; same: MODES' order in every pass
#   SERVER_CPUS=0 LOAD_CPUS=1   taskset lists; empty SERVER_CPUS and LOAD_CPUS: no pinning
#   RATE=5 STEADY=60s SETTLE=3s  ramp rate (calls/s), steady window, pause between them; at 20 calls/s Asterisk's
#                                own SIP/WSS and DTLS setup (native mode) fell behind from N=100 on one core: calls
#                                failed or were still setting up in the window
#   PB_GROUP_NICE                Patchbay's autogroup niceness alone (default: GROUP_NICE); a Patchbay that weighs
#                                less than Asterisk is woken later and so reads bigger batches: less CPU, more delay
#   GROUP_NICE=-20               niceness of the scheduler autogroups of Asterisk, Patchbay and the load
#                                generator (each in its own session), so that other work on a shared host (builds, tests)
#                                blurs the figures less; the table reports how much CPU others still took. With
#                                autogroups, a plain `nice` only ranks threads within their own session. Real-time
#                                scheduling was tried and is worse: it starves ksoftirqd, which carries loopback UDP.
#   PROFILE_N=200                also take a 30 s CPU profile and then a heap profile of Patchbay in the steady
#                                window of that N (cpu-N.pprof, heap-N.pprof, goroutine-N.txt)
#   BENCH_DIR=/tmp/patchbay-bench  where configs, logs, tables and profiles go (kept)
#   BENCH_ARGS="..."             extra flags for `patchbay bench`
set -euo pipefail
cd "$(dirname "$0")/.."
HERE="$PWD"

[[ $(id -u) -eq 0 ]] || { echo "bench.sh: needs root (Asterisk runs in a chroot); rerun with sudo" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin"
ROOT="${PATCHBAY_ASTERISK_ROOT:-/var/cache/patchbay/asterisk-root}"
DIR="${BENCH_DIR:-/tmp/patchbay-bench}"
SERVER_CPUS="${SERVER_CPUS-0}"
LOAD_CPUS="${LOAD_CPUS-1}"
RATE="${RATE:-5}"
STEADY="${STEADY:-60s}"
SETTLE="${SETTLE:-3s}"
PROFILE_N="${PROFILE_N:-}"
GROUP_NICE="${GROUP_NICE--20}"
MODES="${MODES:-native patchbay}"
# A mistyped mode would otherwise run as plain Patchbay and join its column in --compare.
for m in $MODES; do
	case $m in
	native | patchbay | pion | b2b | opus | ice | ref | paced | metrics | metrics-ab) ;;
	*)
		echo "bench.sh: unknown mode $m in MODES (native patchbay pion b2b opus ice ref paced metrics metrics-ab)" >&2
		exit 2
		;;
	esac
done
PACE="${PACE:-400us}"
PACE_ABOVE="${PACE_ABOVE:-0}"
METRICS_ADDR="${METRICS_ADDR:-127.0.0.1:19464}"
SCRAPE="${SCRAPE:-15s}"
PASSES="${PASSES:-2}"
ORDER="${ORDER:-abba}"
[[ $ORDER == abba || $ORDER == same ]] || { echo "bench.sh: ORDER=$ORDER: want abba or same" >&2; exit 2; }
NS=("$@")
((${#NS[@]})) || NS=(50 100 150)
MAXN=0
for n in "${NS[@]}"; do ((n > MAXN)) && MAXN=$n; done
# The native callers' endpoints (bench-webrtc-1..MAXN) are rendered into pjsip.conf; production renders none.
export PATCHBAY_ASTERISK_BENCH_WEBRTC_ENDPOINTS=$MAXN

# Ports of this bench's own instances, away from the defaults used by `make run` and the tests.
export PATCHBAY_HTTP_LISTEN=127.0.0.1:18443
export PATCHBAY_ARI_URL=http://127.0.0.1:18088
export PATCHBAY_ASTERISK_HTTP_PORT=18088
export PATCHBAY_ASTERISK_HTTPS_PORT=18089
export PATCHBAY_ASTERISK_SIP_PORT=15060
export PATCHBAY_ASTERISK_SIP_TLS_PORT=15061
# Limits the load needs: one externalMedia RTP port per call in Asterisk (Patchbay's relay shares one socket), a file
# descriptor per socket and per WebSocket everywhere.
export PATCHBAY_ASTERISK_RTP_START=20000
export PATCHBAY_ASTERISK_RTP_END=39999
export PATCHBAY_MEDIA_ICE_PORT=18500
export PATCHBAY_MEDIA_ICE_TCP_PORT=18500
export PATCHBAY_MEDIA_RELAY_PORT_START=40000
export PATCHBAY_MEDIA_RELAY_PORT_END=47999
export PATCHBAY_MEDIA_INCLUDE_LOOPBACK=true
# The callers reach Patchbay on loopback: offer that address alone, as a one-address server would, not a candidate
# for every interface of this host (and of the tests' namespaces), each with its goroutines and buffers per call.
export PATCHBAY_MEDIA_ICE_IPS=127.0.0.1
PPROF=127.0.0.1:16060
want_fds=65536 hard_fds="$(ulimit -Hn)"
[[ "$hard_fds" == unlimited ]] || ((hard_fds >= want_fds)) || { echo "bench.sh: open files capped at $hard_fds here (hard limit)" >&2; want_fds=$hard_fds; }
ulimit -n "$want_fds"

pin() { if [[ -n "$1" ]]; then echo taskset -c "$1"; fi; }
# group_nice PID: set the niceness of PID's autogroup, if the kernel has autogroups. Every process measured runs
# in a session of its own (setsid), so the autogroup holds only that process.
# Only once PID has left this script's autogroup: a job just started may not have reached its setsid() yet, and the
# write would then renice this script's own session, and with it everything its caller starts afterwards. That
# happened: a CI run started from the same shell after a bench had its test Asterisks (nice 0, each in its own
# session) starved for seconds beside a nice -20 group holding the tests and browsers.
group_nice() {
	[[ -n "$GROUP_NICE" && -w /proc/$1/autogroup ]] || return 0
	local mine theirs _
	read -r mine _ </proc/$$/autogroup
	for _ in {1..200}; do
		read -r theirs _ 2>/dev/null <"/proc/$1/autogroup" || return 0 # gone
		if [[ "$theirs" != "$mine" ]]; then
			echo "$GROUP_NICE" >"/proc/$1/autogroup"
			echo "bench.sh: $(cat "/proc/$1/comm" 2>/dev/null) (pid $1): $(cat "/proc/$1/autogroup" 2>/dev/null)"
			return 0
		fi
		sleep 0.01
	done
	echo "bench.sh: pid $1 is still in this script's autogroup ($mine) after 2 s; its niceness is left alone" >&2
}

[[ -f "$ROOT.run-state" ]] && { echo "bench.sh: an Asterisk started by scripts/asterisk.sh is running ($ROOT.run-state); stop it first (make stop)" >&2; exit 1; }

mkdir -p "$DIR"
BIN="$DIR/patchbay"
go build -o "$BIN" ./cmd/patchbay
CFG="$DIR/patchbay.yaml"
rm -f "$CFG"
"$BIN" config init --out "$CFG" --certs-dir "$DIR/certs" >/dev/null
"$BIN" certs init --config "$CFG" >/dev/null

# Asterisk's files go to their own directories in the chroot, so a `make run` instance's are never touched.
AST_DIR=/var/lib/patchbay-bench
# render_etc OUT ENDPOINTS: Asterisk's files with ENDPOINTS bench WebRTC endpoints.
render_etc() {
	rm -rf "$1"
	PATCHBAY_ASTERISK_BENCH_WEBRTC_ENDPOINTS=$2 "$BIN" asterisk-config --config "$CFG" --out "$1" --cert-dir "$AST_DIR/keys" >/dev/null
	sed -i -E \
		-e "s#^(astetcdir =>).*#\1 $AST_DIR/etc#" -e "s#^(astrundir =>).*#\1 $AST_DIR/run#" \
		-e "s#^(astdbdir =>).*#\1 $AST_DIR/db#" -e "s#^(astlogdir =>).*#\1 $AST_DIR/log#" \
		-e "s#^(astspooldir =>).*#\1 $AST_DIR/spool#" -e "s#^((astvarlibdir|astkeydir) =>).*#\1 $AST_DIR/lib#" \
		"$1/asterisk.conf"
	# Each Patchbay call holds an ARI request or two; the bench's baseline its own. Keep HTTP sessions plentiful.
	sed -i -E 's/^sessionlimit *=.*/sessionlimit = 4000/' "$1/http.conf"
}
# The same Asterisk, each path with the files its deployment has: native runs get the WebRTC endpoints and so ICE
# support in rtp.conf; Patchbay runs get what `patchbay asterisk-config` renders beside Patchbay, no endpoint of
# Asterisk's own running ICE, so icesupport = no (mode ice: Patchbay on the native files, to show what ICE costs).
render_etc "$DIR/asterisk-etc" "$MAXN"
render_etc "$DIR/asterisk-etc-patchbay" 0
grep -q '^icesupport = yes' "$DIR/asterisk-etc/rtp.conf" || { echo "bench.sh: native Asterisk files without ICE" >&2; exit 1; }

PB_PIDS=() BENCH_PIDS=()
stop_all() {
	local pid
	for pid in "${BENCH_PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || continue
		kill -TERM "$pid" # it hangs its calls up and exits
		wait "$pid" 2>/dev/null || true
	done
	BENCH_PIDS=()
	for pid in "${PB_PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || continue
		kill -TERM "$pid"
		for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -0 "$pid" 2>/dev/null && { echo "bench.sh: Patchbay ignored SIGTERM; killing it" >&2; kill -KILL "$pid"; }
		wait "$pid" 2>/dev/null || true
	done
	PB_PIDS=()
	if [[ -f "$ROOT.run-state" ]]; then scripts/asterisk.sh stop >/dev/null; fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# start_patchbay TAG [VAR=value ...]: a fresh `patchbay serve` pinned to the server CPUs, with the given environment
# on top of the bench's; once it is healthy, PB_PID is its PID (also in PB_PIDS, for stop_all), LOG its log and
# RECORDS its call-records file.
start_patchbay() {
	local tag=$1 listen=$PATCHBAY_HTTP_LISTEN kv i
	shift
	for kv in "$@"; do [[ $kv == PATCHBAY_HTTP_LISTEN=* ]] && listen=${kv#*=}; done
	LOG="$DIR/patchbay-$tag.log"
	RECORDS="$DIR/records-$tag.jsonl"
	# env and setsid exec in place (a background job is no group leader), so $! is Patchbay itself.
	env PATCHBAY_CALLS_RECORDS_FILE="$RECORDS" "$@" setsid $(pin "$SERVER_CPUS") "${SERVE_BIN:-$BIN}" serve --config "$CFG" 2>"$LOG" &
	PB_PID=$!
	PB_PIDS+=("$PB_PID")
	GROUP_NICE="${PB_GROUP_NICE-$GROUP_NICE}" group_nice "$PB_PID"
	for i in $(seq 1 100); do
		curl -fsS --cacert "$DIR/certs/ca.crt" "https://localhost:${listen##*:}/healthz" >/dev/null 2>&1 && return
		kill -0 "$PB_PID" 2>/dev/null || { echo "bench.sh: Patchbay exited; see $LOG" >&2; tail -5 "$LOG" >&2; exit 1; }
		sleep 0.2
	done
	echo "bench.sh: Patchbay not healthy within 20 s; see $LOG" >&2
	exit 1
}

# run_ab N PASS: mode metrics-ab, the cost of metrics side by side. Two Patchbays on one Asterisk, both pinned to
# the server CPUs, carry N/2 calls each at the same time, one with /metrics served and scraped and one without;
# whatever else the host does in that window falls on both alike, which separate runs cannot promise. Which of
# the two instances has metrics swaps from pass to pass. The result is Patchbay's own CPU per call-minute of each
# (Asterisk serves both, so its figures are the whole Asterisk's).
run_ab() {
	local n=$1 pass=$2 half=$(($1 / 2)) side on rc=0 pid
	echo "=== N=$n metrics-ab pass $pass: starting Asterisk and two Patchbays with $half calls each (server CPUs ${SERVER_CPUS:-any}, load CPUs ${LOAD_CPUS:-any}, autogroup nice ${GROUP_NICE:-0})"
	ASTERISK_CONF_DIR="$DIR/asterisk-etc-patchbay" ASTERISK_CERT_DIR="$DIR/certs" $(pin "$SERVER_CPUS") scripts/asterisk.sh start >/dev/null
	AST_PID="$(cat "$ROOT$AST_DIR/run/asterisk.pid")"
	group_nice "$AST_PID"
	# Both Patchbays first, then both load generators, so that their windows coincide.
	local -A envs=([a]="PATCHBAY_MEDIA_RELAY_PORT_END=43999"
		[b]="PATCHBAY_HTTP_LISTEN=127.0.0.1:18444 PATCHBAY_MEDIA_ICE_PORT=18501 PATCHBAY_MEDIA_ICE_TCP_PORT=18501 PATCHBAY_MEDIA_RELAY_PORT_START=44000 PATCHBAY_ARI_APP=patchbay-ab-b PATCHBAY_ARI_INSTANCE=abb")
	local -A benchargs=()
	for side in a b; do
		local env metrics= tag
		read -r -a env <<<"${envs[$side]}" # instance b: ports, relay range, Stasis app and resource prefix of its own
		on=off
		if [[ $side == a && $((pass % 2)) == 1 ]] || [[ $side == b && $((pass % 2)) == 0 ]]; then
			on=on metrics=$METRICS_ADDR
		fi
		tag="metrics-ab-$on-$n-$pass"
		local scrape=""
		[[ $on == off ]] || scrape="--metrics-url http://$METRICS_ADDR/metrics --scrape-interval $SCRAPE"
		start_patchbay "$tag" "${env[@]}" PATCHBAY_METRICS_LISTEN=$metrics PATCHBAY_MEDIA_LEAN_AUDIO=true
		benchargs[$side]="--calls $half --rate $(awk -v r="$RATE" 'BEGIN { print r / 2 }') --steady $STEADY --settle $SETTLE
			--asterisk-pid $AST_PID --patchbay-pid $PB_PID --patchbay-log $LOG --patchbay-records $RECORDS
			--label patchbay-ab-$on --ab-run $n-$pass --baseline-app patchbay-bench-$side --json $RESULTS/$tag.json
			$scrape ${BENCH_ARGS:-}"
		benchargs[$side-tag]=$tag
	done
	for side in a b; do
		read -r -a env <<<"${envs[$side]}"
		# shellcheck disable=SC2086 # benchargs holds words without spaces (the paths are the bench's own)
		env "${env[@]}" setsid $(pin "$LOAD_CPUS") "$BIN" bench --config "$CFG" ${benchargs[$side]} >"$DIR/bench-${benchargs[$side-tag]}.txt" &
		BENCH_PIDS+=($!)
		group_nice "$!"
	done
	for pid in "${BENCH_PIDS[@]}"; do wait "$pid" || rc=$?; done
	BENCH_PIDS=()
	cat "$DIR"/bench-metrics-ab-*-"$n-$pass".txt
	((rc == 0)) || { echo "bench.sh: patchbay bench failed (exit $rc)" >&2; exit "$rc"; }
	stop_all
}

# run_one N MODE PASS: one bench run on fresh processes.
run_one() {
	[[ $2 == metrics-ab ]] && { run_ab "$1" "$3"; return; }
	local n=$1 mode=$2 pass=$3 tag="$2-$1-$3"
	echo "=== N=$n $mode pass $pass: starting Asterisk$([[ $mode != native ]] && echo " and Patchbay") (server CPUs ${SERVER_CPUS:-any}, load CPUs ${LOAD_CPUS:-any}, autogroup nice ${GROUP_NICE:-0})"
	local etc="$DIR/asterisk-etc-patchbay"
	[[ $mode == native || $mode == ice ]] && etc="$DIR/asterisk-etc"
	ASTERISK_CONF_DIR="$etc" ASTERISK_CERT_DIR="$DIR/certs" $(pin "$SERVER_CPUS") scripts/asterisk.sh start >/dev/null
	AST_PID="$(cat "$ROOT$AST_DIR/run/asterisk.pid")"
	group_nice "$AST_PID" # Asterisk runs in its own session (setsid), so in its own autogroup
	local args=(--config "$CFG" --calls "$n" --rate "$RATE" --steady "$STEADY" --settle "$SETTLE" --asterisk-pid "$AST_PID"
		--json "$RESULTS/$tag.json")
	if [[ $mode == native ]]; then
		args+=(--native)
	else
		LOG="$DIR/patchbay-$tag.log"
		local lean=true metrics= pace=(PATCHBAY_MEDIA_PACE=0) serve_bin=$BIN
		case $mode in
		pion)
			lean=false
			args+=(--label patchbay-pion)
			;;
		b2b) # browser ⇄ browser in G.711, the reference of mode opus
			args+=(--label patchbay-b2b-g711 --pairs --codec pcmu)
			;;
		opus) # browser ⇄ browser in Opus over media WebSockets: what HD voice costs against b2b
			args+=(--label patchbay-b2b-opus --pairs --codec opus)
			;;
		ice) # Asterisk with ICE support on (the native runs' files): what it costs Patchbay's calls, against mode patchbay
			args+=(--label patchbay-asterisk-ice)
			;;
		ref) # another build of Patchbay (REF_BIN), e.g. the commit before a change: before and after in one run
			[[ -x ${REF_BIN:-} ]] || { echo "bench.sh: mode ref needs REF_BIN, an executable patchbay" >&2; exit 1; }
			serve_bin=$REF_BIN pace=()
			args+=(--label patchbay-ref)
			;;
		paced) # media sockets read on a timer while busy (media.pace, media.pace_above): against mode patchbay
			pace=(PATCHBAY_MEDIA_PACE="$PACE" PATCHBAY_MEDIA_PACE_ABOVE="$PACE_ABOVE")
			args+=(--label patchbay-paced)
			;;
		metrics) # /metrics served and scraped as Prometheus would: the cost of metrics against mode patchbay
			metrics=$METRICS_ADDR
			args+=(--label patchbay-metrics --metrics-url "http://$METRICS_ADDR/metrics" --scrape-interval "$SCRAPE")
			;;
		esac
		SERVE_BIN=$serve_bin start_patchbay "$tag" PATCHBAY_METRICS_LISTEN=$metrics PATCHBAY_MEDIA_LEAN_AUDIO=$lean PATCHBAY_PPROF_LISTEN=$PPROF "${pace[@]}"
		args+=(--patchbay-pid "$PB_PID" --patchbay-log "$LOG" --patchbay-records "$RECORDS")
	fi
	PROF_JOB=""
	if [[ "$n" == "$PROFILE_N" && $mode != native && $pass == 1 ]]; then
		# Into the middle of the steady window: after the ramp, the settle pause and 10 s more.
		delay=$(awk -v n="$n" -v r="$RATE" -v s="${SETTLE%s}" 'BEGIN { printf "%d", n / r + s + 10 }')
		(sleep "$delay" && curl -fsS -o "$DIR/cpu-$mode-$n.pprof" "http://$PPROF/debug/pprof/profile?seconds=30" &&
			curl -fsS -o "$DIR/heap-$mode-$n.pprof" "http://$PPROF/debug/pprof/heap" &&
			curl -fsS -o "$DIR/goroutine-$mode-$n.txt" "http://$PPROF/debug/pprof/goroutine?debug=1") &
		PROF_JOB=$!
	fi
	# shellcheck disable=SC2086
	setsid $(pin "$LOAD_CPUS") "$BIN" bench "${args[@]}" ${BENCH_ARGS:-} >"$DIR/bench-$tag.txt" &
	BENCH_PIDS=($!)
	group_nice "$!"
	rc=0
	wait "${BENCH_PIDS[0]}" || rc=$?
	BENCH_PIDS=()
	cat "$DIR/bench-$tag.txt"
	((rc == 0)) || { echo "bench.sh: patchbay bench failed (exit $rc)" >&2; exit "$rc"; }
	if [[ -n "$PROF_JOB" ]]; then
		wait "$PROF_JOB" && echo "profiles: go tool pprof -top $BIN $DIR/cpu-$mode-$n.pprof (and heap-$mode-$n.pprof)"
	fi
	stop_all
}

RESULTS="$DIR/results"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
for n in "${NS[@]}"; do
	for pass in $(seq 1 "$PASSES"); do
		order=$MODES
		# ABBA: every other pass runs the modes in reverse, so a drift within a pass (the second run of a pass tends
		# to cost a few per cent more, whatever its mode) falls equally on every mode over an even number of passes.
		if [[ $ORDER == abba ]] && ((pass % 2 == 0)); then order=$(tr ' ' '\n' <<<"$MODES" | tac | tr '\n' ' '); fi
		for mode in $order; do
			run_one "$n" "$mode" "$pass"
		done
	done
done
"$BIN" bench --compare "$RESULTS" | tee "$DIR/compare.txt"
echo "bench.sh: tables in $DIR/bench-*.txt, side by side in $DIR/compare.txt"
