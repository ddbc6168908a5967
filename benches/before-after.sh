#!/bin/bash
# Compare two xmppd builds back to back on this machine with the same load driver:
#
#   benches/before-after.sh BEFORE_XMPPD AFTER_XMPPD [--full|--quick]
#
# Each binary runs compare.sh's scenarios alone (--servers xmppd --no-record --keep);
# the driver is this checkout's release xmppd-load (built if missing). The JSON reports
# stay in the work directories compare.sh prints; `xmppd-load value FILE KEY` reads one
# metric. Build the "before" binary from an older commit with, e.g.:
#   git worktree add --detach /tmp/before REV && (cd /tmp/before && cargo build --release -p xmppd)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
[ $# -ge 2 ] || { sed -n '2,/^set/p' "$0" | sed -n '/^#/p'; exit 2; }
BEFORE=$1; AFTER=$2; MODE=${3:---full}
LOAD=${LOAD_BIN:-$ROOT/target/release/xmppd-load}
[ -x "$LOAD" ] || (cd "$ROOT" && cargo build --release -p xmppd-bench) || exit 1
for which in before after; do
  BIN=$BEFORE; [ $which = after ] && BIN=$AFTER
  echo "=== $which: $BIN $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  XMPPD_BIN=$BIN LOAD_BIN=$LOAD XMPPD_REV=$which "$HERE/compare.sh" "$MODE" \
    --servers xmppd --no-record --keep
done
