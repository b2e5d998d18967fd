#!/usr/bin/env bash
# One command: bench/soak.sh [minutes] (default 30). Builds synthmon in
# release mode unless SOAK_SYNTHMON names a binary, then runs bench/soak.py:
# the daemon with 500 probes against `synthmon sandbox` on 127.0.0.1,
# sampled for RSS, open fds, tokio tasks and outbox depth. Exits non-zero
# when any of them grows 5% or more after warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
if [[ -z ${SOAK_SYNTHMON:-} ]]; then
  cargo build --release --quiet -j2
fi
py=
stop() {
  # soak.py stops the daemon, the sandbox and the receiver on SIGTERM; its
  # children also die with it (PR_SET_PDEATHSIG) if it is killed outright.
  if [[ -n $py ]] && kill -0 "$py" 2>/dev/null; then
    kill -TERM "$py" 2>/dev/null || true
    wait "$py" 2>/dev/null || true
  fi
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
python3 bench/soak.py "$minutes" &
py=$!
status=0
wait "$py" || status=$?
py=
exit "$status"
