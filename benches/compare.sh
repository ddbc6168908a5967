#!/bin/bash
# Side-by-side load comparison of xmppd, Prosody and ejabberd on this machine.
#
#   benches/compare.sh [--quick | --full] [--servers "xmppd prosody ejabberd"]
#                      [--no-record] [--keep]
#
# Installs Prosody and ejabberd from Debian when missing (needs root), builds xmppd and
# the load driver in release mode, then for each server in turn: starts it fresh on
# its own loopback address with its own config and data under a temporary directory,
# creates the load accounts, runs the scenarios with xmppd-load, and stops it.
# Scenarios, in order: chat-fresh (closed loop on the fresh process), then a restart;
# idle (N sessions held: the memory figure comes from a fresh process); login; chat
# (closed loop again, now on a server that has held N sessions: compare with
# chat-fresh for a slow-down with age); chat-open (open loop at half the server's own
# closed-loop rate); chat-many (closed loop with many more pairs); chat-1k-single (as
# many pairs, one message in flight per pair: each message answered on receipt, no
# batching) and chat-1k-single-open (the same at half its closed-loop rate).
# XMPPD_BIN and LOAD_BIN (both set) use prebuilt binaries instead of building
# (XMPPD_REV: the revision XMPPD_BIN was built from, for the record).
# Prints one comparison table and appends it, with the machine description, to
# benches/RESULTS.md (unless --no-record). Every server it started is stopped on exit.
#
# Addresses: xmppd 127.0.0.10, prosody 127.0.0.11, ejabberd 127.0.0.12 (port 5222);
# the driver connects from 127.0.0.2-127.0.0.7. Nothing leaves loopback.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=peers/servers.sh
source "$HERE/peers/servers.sh"

MODE=quick
SERVERS="xmppd prosody ejabberd"
RECORD=1
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick;;
    --full) MODE=full;;
    --servers) SERVERS=$2; shift;;
    --no-record) RECORD=0;;
    --keep) KEEP=1;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed -n '/^#/p'; exit 0;;
    *) die "unknown argument $1";;
  esac
  shift
done

DOMAIN=bench.test
MECH=SCRAM-SHA-256
declare -A IPS=([xmppd]=127.0.0.10 [prosody]=127.0.0.11 [ejabberd]=127.0.0.12)

if [ "$MODE" = quick ]; then
  ACCOUNTS=300
  IDLE_N=300;   IDLE_SETTLE=2; IDLE_HOLD=3
  LOGIN_C=20;   LOGIN_ACCOUNTS=200; LOGIN_D=4
  PAIRS=10;     WINDOW=8; CHAT_D=4; WARMUP=1; MANY_PAIRS=100
  SINGLE_D=3
else
  # the issue's scenarios: 15,000 sessions held (about what 20,000 open files per
  # process allow with the driver beside the server), 50 and 1,000 chatting pairs
  ACCOUNTS=15000
  IDLE_N=15000; IDLE_SETTLE=5; IDLE_HOLD=10
  LOGIN_C=50;   LOGIN_ACCOUNTS=1000; LOGIN_D=20
  PAIRS=50;     WINDOW=8; CHAT_D=20; WARMUP=3; MANY_PAIRS=1000
  # one message in flight per pair: every message is its own wake-up, so 10 s give
  # tens of thousands of samples even on the slowest server
  SINGLE_D=10
fi

for s in $SERVERS; do
  [ -n "${IPS[$s]:-}" ] || die "unknown server $s (xmppd, prosody, ejabberd)"
done

# Both the servers and the driver need a descriptor per session.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ensure_pkgs openssl util-linux
case " $SERVERS " in *" prosody "*) ensure_pkgs prosody;; esac
case " $SERVERS " in *" ejabberd "*) ensure_pkgs ejabberd;; esac

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -n "${XMPPD_BIN:-}" ] && [ -n "${LOAD_BIN:-}" ]; then
  XMPPD=$XMPPD_BIN; LOAD=$LOAD_BIN      # prebuilt binaries (e.g. from a pinned checkout)
else
  log "building xmppd and xmppd-load (release) in $CARGO_TARGET_DIR"
  (cd "$ROOT" && cargo build --release -q -p xmppd -p xmppd-bench) || die "cargo build failed"
  XMPPD="$CARGO_TARGET_DIR/release/xmppd"
  LOAD="$CARGO_TARGET_DIR/release/xmppd-load"
fi
[ -x "$XMPPD" ] && [ -x "$LOAD" ] || die "missing binaries $XMPPD $LOAD"

WORK=$(mktemp -d /tmp/xmppd-compare.XXXXXX)
chmod 755 "$WORK"      # ejabberd runs as its own user and must reach its directory
CURRENT=""
cleanup() {
  local rc=$?
  if [ -n "$CURRENT" ]; then "${CURRENT}_down"; fi
  if [ "$KEEP" = 1 ] || [ $rc != 0 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
case "$LOAD_AT_START" in
  0.[0-4]*) ;;
  *) log "warning: load average $LOAD_AT_START: other work on this machine will skew the figures";;
esac

make_cert "$WORK/certs" "$DOMAIN"
mkdir -p "$WORK/results"

# run_load SERVER NAME ARGS... : one driver run; report in results/SERVER-NAME.json
run_load() {
  local s=$1 name=$2; shift 2
  log "$s: $name $*"
  "$LOAD" --host "${IPS[$s]}" --domain "$DOMAIN" --mech "$MECH" --label "$s" \
    --server-pid "$SERVER_PID" --tag "$name" --json "$WORK/results/$s-$name.json" \
    --max-time 900 "$@" 2>"$WORK/$s-$name.log" | tee "$WORK/$s-$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { log "$s: $name exited $rc; last lines of its log:"; tail -5 "$WORK/$s-$name.log" >&2; }
  return 0
}

# server_up SERVER ACCOUNTS: start SERVER on its directory (xmppd creates ACCOUNTS
# accounts with its CLI first; the others get theirs by in-band registration later).
# Data survives a restart: the directory is kept.
server_up() {
  local s=$1 n=$2 d="$WORK/$1"
  case $s in
    xmppd) xmppd_up "$XMPPD" "$d" "${IPS[$s]}" "$DOMAIN" "$WORK/certs" "$n";;
    prosody) prosody_up "$d" "${IPS[$s]}" "$DOMAIN" "$WORK/certs";;
    ejabberd) ejabberd_up "$d" "${IPS[$s]}" "$DOMAIN" "$WORK/certs";;
  esac
}

# open_at_half SERVER CLOSED OPEN CHAT-ARGS...: run OPEN, an open-loop chat at half the
# rate the closed-loop run CLOSED reached on this server
open_at_half() {
  local s=$1 closed=$2 open=$3 rate half; shift 3
  rate=$("$LOAD" value "$WORK/results/$s-$closed.json" msgs_per_s 2>/dev/null)
  if [ -n "$rate" ] && awk -v r="$rate" 'BEGIN { exit !(r > 1) }'; then
    half=$(awk -v r="$rate" 'BEGIN { printf "%d", r / 2 }')
    run_load "$s" "$open" chat --rate "$half" "$@"
  else
    log "$s: no closed-loop rate from $closed, $open skipped"
  fi
}

VERSIONS=""
for s in $SERVERS; do
  CURRENT=$s
  SERVER_PID=""
  d="$WORK/$s"
  t0=$SECONDS
  server_up "$s" "$ACCOUNTS"
  case $s in
    xmppd) VERSIONS+="xmppd ${XMPPD_REV:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')}; ";;
    prosody) VERSIONS+="$(prosodyctl about 2>/dev/null | head -1); ";;
    ejabberd) VERSIONS+="ejabberd $(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null); ";;
  esac
  if [ "$s" != xmppd ]; then
    # in-band registration through the driver: much faster than one
    # prosodyctl/ejabberdctl process per account
    run_load "$s" register register --accounts "$ACCOUNTS" -c 20 --quiet >/dev/null
  fi
  log "$s: ready with $ACCOUNTS accounts after $((SECONDS - t0)) s"
  run_load "$s" chat-fresh chat -p "$PAIRS" -w "$WINDOW" -d "$CHAT_D" --warmup "$WARMUP"
  # restart, so that idle runs on a fresh process and its memory figure is not
  # inflated (or deflated) by what the chat left in the heap
  "${s}_down"
  server_up "$s" 0
  run_load "$s" idle idle -n "$IDLE_N" -c 50 --settle "$IDLE_SETTLE" -d "$IDLE_HOLD"
  run_load "$s" login login -c "$LOGIN_C" --accounts "$LOGIN_ACCOUNTS" -d "$LOGIN_D"
  run_load "$s" chat chat -p "$PAIRS" -w "$WINDOW" -d "$CHAT_D" --warmup "$WARMUP"
  open_at_half "$s" chat chat-open -p "$PAIRS" -d "$CHAT_D" --warmup "$WARMUP"
  run_load "$s" chat-many chat -p "$MANY_PAIRS" -w "$WINDOW" -d "$CHAT_D" --warmup "$WARMUP"
  run_load "$s" chat-1k-single chat --single -p "$MANY_PAIRS" -d "$SINGLE_D" --warmup "$WARMUP"
  open_at_half "$s" chat-1k-single chat-1k-single-open --single -p "$MANY_PAIRS" -d "$SINGLE_D" --warmup "$WARMUP"
  "${s}_down"
  CURRENT=""
done

METRICS="server_kib_per_session,server_cpu_pct_idle,sessions_up,logins_per_s,login_p50_ms,login_p99_ms,server_cpu_us_per_login,login_failures,msgs_per_s,latency_p50_ms,latency_p99_ms,latency_p999_ms,server_cpu_us_per_msg,server_cpu_pct,driver_cpu_pct,lost,error_replies,skipped_sends,late_sends_pct"
TABLE=$("$LOAD" compare --baseline xmppd --metrics "$METRICS" "$WORK"/results/*-idle.json \
  "$WORK"/results/*-login.json "$WORK"/results/*-chat-fresh.json "$WORK"/results/*-chat.json \
  "$WORK"/results/*-chat-open.json "$WORK"/results/*-chat-many.json \
  "$WORK"/results/*-chat-1k-single.json "$WORK"/results/*-chat-1k-single-open.json 2>/dev/null)
echo
echo "$TABLE"

if [ "$RECORD" = 1 ]; then
  R="$HERE/RESULTS.md"
  [ -s "$R" ] || printf '# xmppd load comparison results\n\nAppended by `benches/compare.sh`; newest last. See benches/README.md for what each figure means.\n' > "$R"
  {
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — compare.sh --$MODE"
    echo
    echo "Machine: nproc $(nproc); memory $(free -g | awk '/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}') (free -g); kernel $(uname -r); load average at start $LOAD_AT_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Servers: ${VERSIONS%; }. TLS: STARTTLS with one ECDSA P-256 certificate for all, full handshake per connection; SASL $MECH (4096 iterations)."
    echo "Parameters: accounts $ACCOUNTS; idle $IDLE_N sessions (settle ${IDLE_SETTLE}s, hold ${IDLE_HOLD}s); login concurrency $LOGIN_C over $LOGIN_ACCOUNTS accounts for ${LOGIN_D}s;"
    echo "chat-fresh and chat: $PAIRS pairs, window $WINDOW per direction, ${CHAT_D}s after ${WARMUP}s warm-up (chat-fresh on the fresh process, chat after idle and login); chat-open: same pairs at half the server's own closed-loop rate; chat-many: $MANY_PAIRS pairs, closed loop;"
    echo "chat-1k-single: $MANY_PAIRS pairs, one message in flight per pair (answered on receipt), ${SINGLE_D}s after ${WARMUP}s warm-up; chat-1k-single-open: the same at half its closed-loop rate."
    echo "The driver shares the 2 cores with the server under test. Ratio columns: how many times better xmppd is (> 1: xmppd better; < 1: xmppd worse), in the metric's own direction."
    echo
    echo "$TABLE"
  } >> "$R"
  log "appended to $R"
fi
exit 0
