#!/bin/bash
# Offline message storage, side by side: xmppd on SQLite, xmppd on PostgreSQL, Prosody
# and ejabberd (each with its default storage: Prosody's files, ejabberd's Mnesia).
#
#   benches/offline.sh [--servers "xmppd xmppd-pg prosody ejabberd"] [--rates R1,R2...]
#                      [--step SECS] [--no-record] [--keep]
#
# For each server in turn: start it fresh on its own loopback address (xmppd-pg with a
# PostgreSQL server of its own, fsync on), create the accounts, then run
# `xmppd-load offline`: 10 senders write to 100 recipients who are not logged in, at
# rising offered rates (default 500 to 40,000 messages/s, 5 s per step); after each
# step the server is given time to finish storing (until its CPU goes quiet), then the
# recipients log in and collect what was stored. Reported per step: sent, bounced,
# lost, stored messages per second and server CPU per stored message; the headline is
# the best stored rate with nothing bounced or lost. Appends the table to
# benches/RESULTS.md (unless --no-record). Every process it started is stopped on exit.
#
# Addresses: xmppd 127.0.0.10, prosody 127.0.0.11, ejabberd 127.0.0.12, PostgreSQL
# 127.0.0.13:5432; the driver connects from 127.0.0.2-127.0.0.7. Nothing leaves loopback.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=peers/servers.sh
source "$HERE/peers/servers.sh"

SERVERS="xmppd xmppd-pg prosody ejabberd"
RATES=500,1000,2000,5000,10000,20000,40000
STEP=5
RECORD=1
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) SERVERS=$2; shift;;
    --rates) RATES=$2; shift;;
    --step) STEP=$2; shift;;
    --no-record) RECORD=0;;
    --keep) KEEP=1;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed -n '/^#/p'; exit 0;;
    *) die "unknown argument $1";;
  esac
  shift
done

DOMAIN=bench.test
MECH=SCRAM-SHA-256
SENDERS=10
RECIPIENTS=100
ACCOUNTS=$((SENDERS + RECIPIENTS))
declare -A IPS=([xmppd]=127.0.0.10 [xmppd-pg]=127.0.0.10 [prosody]=127.0.0.11 [ejabberd]=127.0.0.12)
PG_IP=127.0.0.13
PG_PORT=5432
export OFFLINE_STORE=1

for s in $SERVERS; do
  [ -n "${IPS[$s]:-}" ] || die "unknown server $s (xmppd, xmppd-pg, prosody, ejabberd)"
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ensure_pkgs openssl util-linux
case " $SERVERS " in *" prosody "*) ensure_pkgs prosody;; esac
case " $SERVERS " in *" ejabberd "*) ensure_pkgs ejabberd;; esac

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -n "${XMPPD_BIN:-}" ] && [ -n "${LOAD_BIN:-}" ]; then
  XMPPD=$XMPPD_BIN; LOAD=$LOAD_BIN
else
  log "building xmppd and xmppd-load (release) in $CARGO_TARGET_DIR"
  (cd "$ROOT" && cargo build --release -q -p xmppd -p xmppd-bench) || die "cargo build failed"
  XMPPD="$CARGO_TARGET_DIR/release/xmppd"
  LOAD="$CARGO_TARGET_DIR/release/xmppd-load"
fi

WORK=$(mktemp -d /tmp/xmppd-offline.XXXXXX)
chmod 755 "$WORK"
CURRENT=""
cleanup() {
  local rc=$?
  if [ -n "$CURRENT" ]; then "${CURRENT}_down"; fi
  postgres_down
  if [ "$KEEP" = 1 ] || [ $rc != 0 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
make_cert "$WORK/certs" "$DOMAIN"
mkdir -p "$WORK/results"
VERSIONS=""
for s in $SERVERS; do
  d="$WORK/$s"
  SERVER_PID=""
  case $s in
    xmppd)
      CURRENT=xmppd
      XMPPD_PG_URL="" xmppd_up "$XMPPD" "$d" "${IPS[$s]}" "$DOMAIN" "$WORK/certs" "$ACCOUNTS"
      VERSIONS+="xmppd ${XMPPD_REV:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')} (SQLite); ";;
    xmppd-pg)
      postgres_up "$WORK/pg" "$PG_IP" "$PG_PORT"
      CURRENT=xmppd
      XMPPD_PG_URL="host=$PG_IP port=$PG_PORT user=xmppd dbname=xmppd" \
        xmppd_up "$XMPPD" "$d" "${IPS[$s]}" "$DOMAIN" "$WORK/certs" "$ACCOUNTS"
      VERSIONS+="xmppd (PostgreSQL $(basename "$(dirname "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)")"), fsync on); ";;
    prosody)
      CURRENT=prosody
      prosody_up "$d" "${IPS[$s]}" "$DOMAIN" "$WORK/certs"
      VERSIONS+="$(prosodyctl about 2>/dev/null | head -1) (internal file storage); ";;
    ejabberd)
      CURRENT=ejabberd
      ejabberd_up "$d" "${IPS[$s]}" "$DOMAIN" "$WORK/certs"
      VERSIONS+="ejabberd $(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null) (Mnesia); ";;
  esac
  common=(--host "${IPS[$s]}" --domain "$DOMAIN" --mech "$MECH" --label "$s" --server-pid "$SERVER_PID" --max-time 1800)
  if [ "$s" = prosody ] || [ "$s" = ejabberd ]; then
    "$LOAD" "${common[@]}" register --accounts "$ACCOUNTS" -c 20 --quiet >/dev/null 2>"$WORK/$s-register.log" \
      || { tail -5 "$WORK/$s-register.log" >&2; die "$s: registration failed"; }
  fi
  log "$s: offline --rates $RATES --step $STEP"
  # xmppd-pg's storing happens in PostgreSQL's processes: a step is over when they are
  # quiet too
  quiet=()
  [ "$s" = xmppd-pg ] && quiet=(--quiet-pid "$PG_PID")
  "$LOAD" "${common[@]}" --tag offline --json "$WORK/results/$s-offline.json" offline \
    --senders "$SENDERS" --recipients "$RECIPIENTS" --rates "$RATES" --step "$STEP" "${quiet[@]}" \
    2>"$WORK/$s-offline.log" | tee "$WORK/$s-offline.txt"
  grep 'offline step' "$WORK/$s-offline.log" >&2
  "${CURRENT}_down"
  CURRENT=""
  [ "$s" = xmppd-pg ] && postgres_down
done

TABLE=$("$LOAD" compare --baseline xmppd "$WORK"/results/*-offline.json 2>/dev/null)
echo
echo "$TABLE"
if [ "$RECORD" = 1 ]; then
  {
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — offline.sh (messages to users who are not logged in)"
    echo
    echo "Machine: nproc $(nproc); kernel $(uname -r); load average at start $LOAD_AT_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Servers: ${VERSIONS%; }. STARTTLS, SASL $MECH; durable storage as each server ships it (SQLite WAL with fsync at commit; PostgreSQL fsync on)."
    echo "$SENDERS senders write to $RECIPIENTS recipients who are not logged in, open loop at each offered rate for ${STEP}s (rates $RATES; steps stop after the first the server cannot keep up with); then the server is given time to finish (until its CPU is quiet) and the recipients log in and collect. stored_per_s: stored messages over the time from the step's start until the server was quiet; lost: sent − bounced − collected."
    echo
    echo "$TABLE"
  } >> "$HERE/RESULTS.md"
  log "appended to $HERE/RESULTS.md"
fi
exit 0
