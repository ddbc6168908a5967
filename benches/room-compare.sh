#!/bin/bash
# Chat-room (XEP-0045) load comparison of xmppd, Prosody and ejabberd on this machine.
#
#   benches/room-compare.sh [--servers "xmppd prosody ejabberd"] [--rates "10 50 100 200 400"]
#                           [--duration S] [--no-record] [--keep]
#
# For each server in turn (fresh, with its MUC service on conference.bench.test, see
# peers/servers.sh with MUC=1): one room with 100 occupants at rising send rates
# (messages/s into the room; each is delivered to all 100), then a 500-occupant room at
# 2 messages/s. Reports deliveries/s, delivery latency and server CPU per delivery;
# prints one comparison table per scenario and appends them to benches/RESULTS.md
# (unless --no-record). Uses the release builds (XMPPD_BIN and LOAD_BIN to override).
# Addresses as compare.sh: xmppd 127.0.0.10, prosody .11, ejabberd .12. Loopback only.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=peers/servers.sh
source "$HERE/peers/servers.sh"
export MUC=1

SERVERS="xmppd prosody ejabberd"
RATES="10 50 100 200 400"
DUR=10
RECORD=1
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) SERVERS=$2; shift;;
    --rates) RATES=$2; shift;;
    --duration) DUR=$2; shift;;
    --no-record) RECORD=0;;
    --keep) KEEP=1;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed -n '/^#/p'; exit 0;;
    *) die "unknown argument $1";;
  esac
  shift
done

DOMAIN=bench.test
MECH=SCRAM-SHA-256
ACCOUNTS=500
declare -A IPS=([xmppd]=127.0.0.10 [prosody]=127.0.0.11 [ejabberd]=127.0.0.12)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ensure_pkgs openssl util-linux
case " $SERVERS " in *" prosody "*) ensure_pkgs prosody;; esac
case " $SERVERS " in *" ejabberd "*) ensure_pkgs ejabberd;; esac

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -n "${XMPPD_BIN:-}" ] && [ -n "${LOAD_BIN:-}" ]; then
  XMPPD=$XMPPD_BIN; LOAD=$LOAD_BIN
else
  (cd "$ROOT" && cargo build --release -q -p xmppd -p xmppd-bench) || die "cargo build failed"
  XMPPD="$CARGO_TARGET_DIR/release/xmppd"; LOAD="$CARGO_TARGET_DIR/release/xmppd-load"
fi

WORK=$(mktemp -d /tmp/xmppd-room.XXXXXX)
chmod 755 "$WORK"
CURRENT=""
cleanup() {
  local rc=$?
  if [ -n "$CURRENT" ]; then "${CURRENT}_down"; fi
  if [ "$KEEP" = 1 ] || [ $rc != 0 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
make_cert "$WORK/certs" "$DOMAIN"
mkdir -p "$WORK/results"

run_load() {
  local s=$1 name=$2; shift 2
  log "$s: $name $*"
  "$LOAD" --host "${IPS[$s]}" --domain "$DOMAIN" --mech "$MECH" --label "$s" \
    --server-pid "$SERVER_PID" --tag "$name" --json "$WORK/results/$s-$name.json" \
    --max-time 900 --quiet "$@" 2>"$WORK/$s-$name.log" | tee "$WORK/$s-$name.txt"
}

for s in $SERVERS; do
  CURRENT=$s
  SERVER_PID=""
  case $s in
    xmppd) xmppd_up "$XMPPD" "$WORK/$s" "${IPS[$s]}" "$DOMAIN" "$WORK/certs" "$ACCOUNTS";;
    prosody) prosody_up "$WORK/$s" "${IPS[$s]}" "$DOMAIN" "$WORK/certs";;
    ejabberd) ejabberd_up "$WORK/$s" "${IPS[$s]}" "$DOMAIN" "$WORK/certs";;
  esac
  [ "$s" = xmppd ] || run_load "$s" register register --accounts "$ACCOUNTS" -c 20 >/dev/null
  for r in $RATES; do
    run_load "$s" "room100-r$r" room -n 100 --rate "$r" --room "r100x$r@conference.$DOMAIN" -d "$DUR" --warmup 2
  done
  run_load "$s" room500 room -n 500 --rate 2 --room "r500@conference.$DOMAIN" -d "$DUR" --warmup 2
  "${s}_down"
  CURRENT=""
done

METRICS="deliveries_per_s,latency_p50_ms,latency_p99_ms,latency_p999_ms,server_cpu_us_per_delivery,server_cpu_pct,lost,error_replies"
TABLES=""
for n in $(for r in $RATES; do echo "room100-r$r"; done) room500; do
  TABLES+="### $n"$'\n\n'"$("$LOAD" compare --baseline xmppd --metrics "$METRICS" "$WORK"/results/*-"$n".json 2>/dev/null)"$'\n\n'
done
echo "$TABLES"
if [ "$RECORD" = 1 ]; then
  {
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — room-compare.sh (XEP-0045 rooms)"
    echo
    echo "Machine: nproc $(nproc); kernel $(uname -r); load average at start $LOAD_AT_START, at end $(cut -d' ' -f1-3 /proc/loadavg). Rooms of 100 occupants at the given total send rates (messages/s into the room, each delivered to all 100, the sender's copy included) and one of 500 at 2 messages/s; $DUR s measured after 2 s of warm-up."
    echo
    echo "$TABLES"
  } >> "$HERE/RESULTS.md"
fi
