#!/usr/bin/env bash
# Load run: SIPp calls through sipstamp at a fixed rate for a bounded number of calls.
#
#   scripts/load.sh [--rate N] [--calls N] [--transport udp|tcp] [--binary PATH]
#                   [--inf FILE] [--direct] [--kamailio] [--keep]
#                   [--hostile] [--flood-pps N] [--malformed-pps N]
#
# --rate       new calls per second (default 200)
# --calls      calls to place; the run stops after them (default 2000)
# --transport  udp or tcp (default udp)
# --binary     sipstamp binary (default target/release/sipstamp, else target/debug/sipstamp)
# --inf        SIPp injection file with the callers (default tests/sipp/callers.csv)
# --direct     no proxy: the UAC calls the UAS itself with ready-made stamped headers,
#              which shows what SIPp alone reaches on this machine
# --kamailio   afterwards, run the shared SIPp bench harness with its Kamailio config at
#              the same rate, call count and transport, for a side-by-side line. It needs
#              Kamailio installed. BENCH_DIR names the harness folder; docs/benchmarks.md
#              gives the default.
# --keep       keep the work folder with the SIPp logs and statistics
# --hostile    while the calls run, also send malformed datagrams to the proxy and flood it
#              from a second source ([::1], scripts/hostile-traffic.py), with the proxy's
#              [flood] limit on; every good call must still succeed
# --flood-pps, --malformed-pps
#              packets per second of the two hostile senders (default 2000 and 200)
#
# The UAS is tests/sipp/uas-stamped.xml: a call whose stamped headers are missing or
# invalid fails. Everything runs on 127.0.0.1 on free ports. Every process this script
# starts is stopped by its PID on exit.
#
# Prints key=value lines:
#   successful, failed       UAC call counters; uas_failed counts the UAS side
#   retransmissions          UDP retransmissions by the UAC (non-zero: something lags)
#   cps                      (answered calls - 1) / time from the first 200 OK to the last
#   rtt_p50_ms ... rtt_max_ms  INVITE sent -> 200 received at the UAC, microsecond clock
#   proxy_cpu_seconds        user + system CPU of the proxy process (all its threads, no
#                            child processes) during the UAC run
#   proxy_cpu_ms_per_call    the same per successful call
#   proxy_peak_rss_kb        VmHWM of the proxy process (its peak resident memory)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCENARIOS="$REPO/tests/sipp"
IP=127.0.0.1
RATE=200
CALLS=2000
TRANSPORT=udp
BINARY=""
INF="$SCENARIOS/callers.csv"
DIRECT=0
KAMAILIO=0
KEEP=0
HOSTILE=0
FLOOD_PPS=2000
# Requests per second the untrusted flood source may send (its bucket has room for twice as many).
FLOOD_LIMIT=200
MALFORMED_PPS=200
HOSTILE_PID=""
HOSTILE_FAILED=0

fail() {
  echo "load.sh: $*" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE="$2"; shift 2 ;;
    --calls) CALLS="$2"; shift 2 ;;
    --transport) TRANSPORT="$2"; shift 2 ;;
    --binary) BINARY="$2"; shift 2 ;;
    --inf) INF="$(realpath "$2")"; shift 2 ;;
    --direct) DIRECT=1; shift ;;
    --kamailio) KAMAILIO=1; shift ;;
    --keep) KEEP=1; shift ;;
    --hostile) HOSTILE=1; shift ;;
    --flood-pps) FLOOD_PPS="$2"; shift 2 ;;
    --malformed-pps) MALFORMED_PPS="$2"; shift 2 ;;
    -h | --help) sed -n '2,39p' "$0"; exit 0 ;;
    *) fail "unknown option $1 (see --help)" ;;
  esac
done

[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || fail "invalid --rate $RATE: expected a positive integer"
[[ "$CALLS" =~ ^[1-9][0-9]*$ ]] || fail "invalid --calls $CALLS: expected a positive integer"
case "$TRANSPORT" in
  udp) SIPP_T=u1 ;;
  tcp) SIPP_T=t1 ;;
  *) fail "invalid --transport $TRANSPORT: expected udp or tcp" ;;
esac
command -v sipp >/dev/null || fail "sipp not found: install the Debian package sip-tester"
command -v ss >/dev/null || fail "ss not found: install the Debian package iproute2"
[ -r "$INF" ] || fail "injection file $INF not found"

if [ "$DIRECT" = 1 ]; then
  INF="$SCENARIOS/stamped-valid.csv"
elif [ -z "$BINARY" ]; then
  for candidate in "$REPO/target/release/sipstamp" "$REPO/target/debug/sipstamp"; do
    if [ -x "$candidate" ]; then
      BINARY="$candidate"
      break
    fi
  done
  [ -n "$BINARY" ] || fail "no sipstamp binary found: run cargo build --release first, or pass --binary"
fi
if [ "$DIRECT" = 0 ]; then
  [ -x "$BINARY" ] || fail "binary $BINARY not found or not executable"
  # The proxy starts in the work folder, so a relative path must be resolved here.
  BINARY="$(realpath "$BINARY")"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sipstamp-load.XXXXXX")"
UAS_PID=""
PROXY_PID=""
UAC_PID=""

# stop_pid PID: SIGTERM, then SIGKILL after 5 s. Only ever the PIDs started here.
stop_pid() {
  local pid="$1" i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$HOSTILE_PID"
  stop_pid "$UAC_PID"
  stop_pid "$PROXY_PID"
  stop_pid "$UAS_PID"
  if [ "$KEEP" = 1 ]; then
    echo "load.sh: work folder kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# port_in_use PORT: true when a UDP or TCP socket is bound to it.
port_in_use() {
  [ -n "$(ss -Hlnu "sport = :$1" 2>/dev/null)$(ss -Hlnt "sport = :$1" 2>/dev/null)" ]
}

# free_port: a port in 20000-29999 that no UDP or TCP socket uses and this run has not taken.
TAKEN=" "
free_port() {
  local port i
  for ((i = 0; i < 100; i++)); do
    port=$((20000 + RANDOM % 10000))
    if [[ "$TAKEN" != *" $port "* ]] && ! port_in_use "$port"; then
      TAKEN="$TAKEN$port "
      echo "$port"
      return 0
    fi
  done
  fail "no free port found in 20000-29999 after 100 tries"
}

# wait_listening PORT PID NAME: waits up to 20 s for a listener on PORT with this run's transport.
wait_listening() {
  local port="$1" pid="$2" name="$3" i flag=-Hlnu
  [ "$TRANSPORT" = tcp ] && flag=-Hlnt
  for ((i = 0; i < 200; i++)); do
    [ -n "$(ss $flag "sport = :$port" 2>/dev/null)" ] && return 0
    kill -0 "$pid" 2>/dev/null || fail "$name exited during start-up (logs in $WORK, use --keep)"
    sleep 0.1
  done
  fail "$name not listening on $IP:$port after 20 s"
}

# cpu_seconds PID: user + system time of the process and its threads.
cpu_seconds() {
  local ticks
  ticks=$(getconf CLK_TCK)
  awk -v tck="$ticks" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / tck }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# stat_counter FILE COLUMN: the column's value in the last line of a SIPp -trace_stat file.
stat_counter() {
  awk -F';' -v want="$2" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == want) col = i; next }
    { value = $col }
    END { print (value == "" ? 0 : value + 0) }' "$1" 2>/dev/null || echo 0
}

UAS_PORT=$(free_port)
UAC_PORT=$(free_port)

( cd "$WORK" && exec sipp -sf "$SCENARIOS/uas-stamped.xml" -i "$IP" -p "$UAS_PORT" -t "$SIPP_T" \
    -m "$CALLS" -nostdin -buff_size 4194304 -trace_stat -stf "$WORK/uas_stat.csv" -fd 1 \
    -trace_err -error_file "$WORK/uas_errors.log" ) </dev/null >"$WORK/uas.out" 2>&1 &
UAS_PID=$!
wait_listening "$UAS_PORT" "$UAS_PID" "SIPp UAS"

TARGET_PORT="$UAS_PORT"
if [ "$DIRECT" = 0 ]; then
  PROXY_PORT=$(free_port)
  ADMIN_PORT=$(free_port)
  cat >"$WORK/sipstamp.toml" <<TOML
data_dir = "$WORK/data"

[sip]
udp = ["$IP:$PROXY_PORT"]
tcp = ["$IP:$PROXY_PORT"]
upstream = "$IP:$UAS_PORT"
upstream_transport = "same"

[admin]
listen = "$IP:$ADMIN_PORT"

[log]
level = "warn"
TOML
  if [ "$HOSTILE" = 1 ]; then
    # The SIPp calls and the malformed datagrams come from 127.0.0.1, listed as a trusted trunk
    # that is exempt from the limit, as an operator lists the carrier's SBC. Its identity
    # headers stay untrusted, so the callers get the same callerids as without the trunk. The
    # flood from [::1] is untrusted and far above the limit.
    cat >>"$WORK/sipstamp.toml" <<TOML

[flood]
requests_per_second = $FLOOD_LIMIT
burst = $((FLOOD_LIMIT * 2))
action = "drop"
exempt_trusted = true

[[trunks]]
id = "load-uac"
trusted_cidrs = ["$IP/32"]
trusted_identity_headers = false
TOML
    sed -i "s|^udp = \[\"$IP:$PROXY_PORT\"\]|udp = [\"$IP:$PROXY_PORT\", \"[::1]:$PROXY_PORT\"]|" "$WORK/sipstamp.toml"
  fi
  ( cd "$WORK" && exec "$BINARY" run --config "$WORK/sipstamp.toml" ) </dev/null >"$WORK/proxy.log" 2>&1 &
  PROXY_PID=$!
  wait_listening "$PROXY_PORT" "$PROXY_PID" "sipstamp"
  TARGET_PORT="$PROXY_PORT"
fi

CPU_BEFORE=0
[ -n "$PROXY_PID" ] && CPU_BEFORE=$(cpu_seconds "$PROXY_PID")
STARTED=$(date +%s.%N)
( cd "$WORK" && exec sipp "$IP:$TARGET_PORT" -sf "$SCENARIOS/uac.xml" -inf "$INF" -i "$IP" \
    -p "$UAC_PORT" -t "$SIPP_T" -m "$CALLS" -r "$RATE" -l $((RATE * 10)) -recv_timeout 5000 \
    -nostdin -buff_size 4194304 -trace_stat -stf "$WORK/uac_stat.csv" -fd 1 \
    -trace_logs -log_file "$WORK/uac_times.log" -trace_err -error_file "$WORK/uac_errors.log" ) \
    </dev/null >"$WORK/uac.out" 2>&1 &
UAC_PID=$!

if [ "$HOSTILE" = 1 ] && [ "$DIRECT" = 0 ]; then
  "$REPO/scripts/hostile-traffic.py" --port "$PROXY_PORT" --seconds $((CALLS / RATE + 1)) \
    --flood-pps "$FLOOD_PPS" --malformed-pps "$MALFORMED_PPS" >"$WORK/hostile.out" 2>&1 &
  HOSTILE_PID=$!
fi

# Bounded: the run's expected length plus one minute.
DEADLINE=$((SECONDS + CALLS / RATE + 60))
TIMED_OUT=0
while kill -0 "$UAC_PID" 2>/dev/null; do
  if ((SECONDS > DEADLINE)); then
    TIMED_OUT=1
    echo "load.sh: UAC still running after $((CALLS / RATE + 60)) s, stopping it" >&2
    stop_pid "$UAC_PID"
    break
  fi
  sleep 0.5
done
wait "$UAC_PID" 2>/dev/null || true
UAC_PID=""
FINISHED=$(date +%s.%N)

CPU_AFTER=0
PEAK_RSS=0
PROXY_ALIVE=na
if [ -n "$PROXY_PID" ]; then
  if kill -0 "$PROXY_PID" 2>/dev/null; then
    PROXY_ALIVE=yes
    CPU_AFTER=$(cpu_seconds "$PROXY_PID")
    PEAK_RSS=$(awk '/^VmHWM:/ { print $2 }' "/proc/$PROXY_PID/status" 2>/dev/null || echo 0)
  else
    PROXY_ALIVE=no
    echo "load.sh: sipstamp exited during the run; see $WORK/proxy.log (use --keep)" >&2
  fi
fi

# The UAS ends by itself after its last call; SIGUSR1 makes SIPp stop and write its statistics.
for ((i = 0; i < 50; i++)); do
  kill -0 "$UAS_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$UAS_PID" 2>/dev/null; then
  kill -USR1 "$UAS_PID" 2>/dev/null || true
  sleep 1
fi
stop_pid "$UAS_PID"
UAS_PID=""

SUCCESSFUL=$(stat_counter "$WORK/uac_stat.csv" "SuccessfulCall(C)")
FAILED=$(stat_counter "$WORK/uac_stat.csv" "FailedCall(C)")
RETRANSMISSIONS=$(stat_counter "$WORK/uac_stat.csv" "Retransmissions(C)")
UAS_FAILED=$(stat_counter "$WORK/uas_stat.csv" "FailedCall(C)")

# uac_times.log lines: "invite-to-200 SEC USEC SEC USEC" (INVITE sent, 200 received). Under
# load SIPp now and then writes a line with a field missing; such lines are skipped.
# SIPp prints the numbers as decimals such as 11783.000000, which awk reads as numbers.
read -r SAMPLES P50 P90 P99 PMAX CPS < <(
  awk 'NF == 5 && $1 == "invite-to-200" {
         done = $4 + $5 / 1e6
         printf "%.6f %.3f\n", done, ($4 - $2) * 1000 + ($5 - $3) / 1000 }' \
      "$WORK/uac_times.log" 2>/dev/null |
    sort -k2,2g |
    awk '{ at[NR] = $1; ms[NR] = $2
           if (NR == 1 || $1 < first) first = $1
           if ($1 > last) last = $1 }
         function pct(p,   i) { i = int(p * NR + 0.999999); if (i < 1) i = 1; return ms[i] }
         END {
           if (NR == 0) { print 0, "na", "na", "na", "na", 0; exit }
           span = last - first
           printf "%d %.3f %.3f %.3f %.3f %.1f\n", NR, pct(0.5), pct(0.9), pct(0.99), ms[NR], (span > 0 ? (NR - 1) / span : 0)
         }')

WALL=$(awk -v a="$STARTED" -v b="$FINISHED" 'BEGIN { printf "%.2f", b - a }')
CPU=$(awk -v a="$CPU_BEFORE" -v b="$CPU_AFTER" 'BEGIN { printf "%.2f", b - a }')
CPU_PER_CALL=$(awk -v c="$CPU" -v n="$SUCCESSFUL" 'BEGIN { printf "%.3f", (n > 0 ? c * 1000 / n : 0) }')
TARGET=sipstamp
[ "$DIRECT" = 1 ] && TARGET=direct

echo "target=$TARGET transport=$TRANSPORT rate=$RATE calls=$CALLS"
echo "successful=$SUCCESSFUL failed=$FAILED uas_failed=$UAS_FAILED retransmissions=$RETRANSMISSIONS timed_out=$TIMED_OUT"
echo "cps=$CPS wall_s=$WALL rtt_samples=$SAMPLES rtt_p50_ms=$P50 rtt_p90_ms=$P90 rtt_p99_ms=$P99 rtt_max_ms=$PMAX"
echo "proxy_cpu_seconds=$CPU proxy_cpu_ms_per_call=$CPU_PER_CALL proxy_peak_rss_kb=$PEAK_RSS proxy_alive=$PROXY_ALIVE"

if [ -n "$HOSTILE_PID" ]; then
  # The sender stops by itself one second after the calls' planned end.
  wait "$HOSTILE_PID" 2>/dev/null || true
  HOSTILE_PID=""
  cat "$WORK/hostile.out"
  RATE_LIMITED=na
  if command -v curl >/dev/null && [ "$PROXY_ALIVE" = yes ]; then
    RATE_LIMITED=$(curl -s "http://$IP:$ADMIN_PORT/metrics" |
      awk '/^sipstamp_(messages_dropped|requests_rejected)_total/ && /reason="rate_limited"/ { n += $NF }
           END { print n + 0 }')
  fi
  GOOD_FAILED=$((CALLS - SUCCESSFUL))
  echo "rate_limited=$RATE_LIMITED good_calls_failed=$GOOD_FAILED"
  [ "$GOOD_FAILED" = 0 ] && [ "$PROXY_ALIVE" = yes ] || HOSTILE_FAILED=1
fi

if [ "$KAMAILIO" = 1 ]; then
  BENCH="${BENCH_DIR:-$REPO/../shared/bench}"
  if [ ! -x "$BENCH/run-load.sh" ]; then
    echo "load.sh: $BENCH/run-load.sh not found, no Kamailio comparison" >&2
  elif ! command -v kamailio >/dev/null; then
    echo "load.sh: kamailio not found (install the Debian package kamailio), no comparison" >&2
  else
    # The shared harness uses its own fixed ports (proxy 5060, UAS 5090, UAC 5070).
    echo "== Kamailio (stateful) through the shared bench harness"
    "$BENCH/run-load.sh" --name kamailio-stateful --port 5060 --rate "$RATE" --calls "$CALLS" \
      --transport "$SIPP_T" --uas-check \
      --target-cmd 'kamailio -DD -E -f kamailio/kamailio.cfg -m 1024 -M 16 -Y $BENCH_WORK'
  fi
fi

if [ "$FAILED" != 0 ] || [ "$UAS_FAILED" != 0 ] || [ "$TIMED_OUT" = 1 ] || [ "$SUCCESSFUL" != "$CALLS" ]; then
  exit 1
fi

# A hostile run fails when any good call failed or the proxy died.
[ "$HOSTILE_FAILED" = 0 ]
