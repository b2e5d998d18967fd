#!/usr/bin/env bash
# One command: installs the peers (wrk, blackbox_exporter) from Debian if
# missing, builds synthmon in release mode (unless BENCH_SYNTHMON names a
# binary), and runs bench/run.py, which writes bench/results/latest.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bench: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[[ -n ${BENCH_SYNTHMON:-} ]] || cargo build --release --quiet
# A bare hyper client for row 9's context (its own package and lock file).
[[ -n ${BENCH_FLOOR:-} ]] || cargo build --release --quiet --manifest-path bench/floor/Cargo.toml
exec python3 bench/run.py "$@"
