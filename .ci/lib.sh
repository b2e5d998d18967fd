# Helpers the interop scripts share; sourced after they `cd` to the
# repository root (`. .ci/lib.sh`).
#   pass MSG / die MSG       a PASS line, or a FAIL line and exit 1
#   free_port                a free TCP port on 127.0.0.1
#   wait_for SECS WHAT CMD…  polls CMD until it succeeds, or dies naming WHAT
#   scratch                  TMP, a temp directory (kept when KEEP_TMP is
#                            set), and PIDS, whose processes are killed and
#                            waited for on exit

pass() { printf 'PASS  %s\n' "$*"; }
die() { printf 'FAIL  %s\n' "$*" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.5
  done
}

scratch() {
  TMP="$(mktemp -d)"
  PIDS=()
  trap _scratch_cleanup EXIT
}

_scratch_cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
