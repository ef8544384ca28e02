#!/usr/bin/env bash
# Hostile load run: SIPp calls through sipstamp at a fixed rate while a second source floods
# the proxy and malformed datagrams arrive, with the proxy's [flood] limit on.
#
#   scripts/hostile-load.sh [--rate N] [--seconds N] [--flood-pps N] [--malformed-pps N]
#                           [--transport udp|tcp] [--binary PATH] [--keep]
#
# --rate     new good calls per second (default 100)
# --seconds  length of the run; the call count is rate x seconds (default 120)
# Other options go to scripts/load.sh. Everything runs on loopback on free ports; the hostile
# senders (scripts/hostile-traffic.py) stop by themselves. Exits 1 when any good call failed
# or the proxy died, and prints load.sh's key=value lines plus the hostile counters.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RATE=100
SECONDS_TOTAL=120
PASS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE="$2"; shift 2 ;;
    --seconds) SECONDS_TOTAL="$2"; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) PASS+=("$1"); shift ;;
  esac
done
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || { echo "hostile-load.sh: invalid --rate $RATE: expected a positive integer" >&2; exit 2; }
[[ "$SECONDS_TOTAL" =~ ^[1-9][0-9]*$ ]] || { echo "hostile-load.sh: invalid --seconds $SECONDS_TOTAL: expected a positive integer" >&2; exit 2; }

exec "$REPO/scripts/load.sh" --hostile --rate "$RATE" --calls $((RATE * SECONDS_TOTAL)) "${PASS[@]}"
