#!/usr/bin/env bash
# Interop with a real Prometheus (Debian's package):
#   1. `promtool check metrics` on the daemon's live /metrics;
#   2. a real Prometheus scrapes the daemon every second and answers a query
#      for probe_success and a histogram_quantile over
#      synthmon_probe_duration_seconds.
#
#   .ci/interop-prometheus.sh [PATH-TO-SYNTHMON-BINARY]   (default target/release/synthmon)
#
# Installs prometheus if promtool or prometheus is missing, and fails loudly
# if they are still missing afterwards. Everything listens on 127.0.0.1 and
# every wait has a deadline.
set -euo pipefail

BIN_ARG=""
if (($# > 0)); then BIN_ARG="$(realpath -m -- "$1")"; fi
cd "$(dirname "$0")/.."
BIN="${BIN_ARG:-$PWD/target/release/synthmon}"

pass() { printf 'PASS  %s\n' "$*"; }
die() { printf 'FAIL  %s\n' "$*" >&2; exit 1; }

[ -x "$BIN" ] || die "no synthmon binary at $BIN (build it first)"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v promtool >/dev/null || die "promtool is missing after installing prometheus"
command -v prometheus >/dev/null || die "prometheus is missing after installing it"

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.5
  done
}

SM_PORT="$(free_port)"
PROM_PORT="$(free_port)"
mkdir -p "$TMP/probes"
cat >"$TMP/config.toml" <<TOML
[daemon]
listen = "127.0.0.1:$SM_PORT"
instance = "ci"
location = "loopback"

[environments.sandbox]
base_url = "builtin:sandbox"
TOML
cat >"$TMP/probes/health.toml" <<'TOML'
name = "interop-health"
schedule = "every 1s"
timeout = "500ms"
environments = ["sandbox"]
thresholds = ["p(99) < 250ms", "error_rate < 1%"]
[http]
url = "/health"
expect = ["status == 200"]
TOML
cat >"$TMP/probes/latency.toml" <<'TOML'
name = "interop-latency"
schedule = "every 1s"
timeout = "900ms"
environments = ["sandbox"]
thresholds = ["p(95) < 100ms"]
[http]
url = "/latency?dist=uniform&min_ms=5&max_ms=40"
TOML

"$BIN" --config "$TMP/config.toml" --log-format json >"$TMP/synthmon.log" 2>&1 &
PIDS+=($!)
METRICS="http://127.0.0.1:$SM_PORT/metrics"
wait_for 30 "synthmon /readyz" curl -fsS "http://127.0.0.1:$SM_PORT/readyz"
has_runs() { curl -fsS "$METRICS" | grep -q '^synthmon_runs_total{.*probe="interop-latency"'; }
wait_for 20 "the first runs in /metrics" has_runs

curl -fsS "$METRICS" >"$TMP/metrics.txt"
if ! promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.txt" 2>&1 || [ -s "$TMP/promtool.txt" ]; then
  cat "$TMP/promtool.txt" >&2
  die "promtool check metrics found problems"
fi
pass "promtool check metrics ($(grep -vc '^#' "$TMP/metrics.txt") samples)"

cat >"$TMP/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: synthmon
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:$SM_PORT"]
YAML
promtool check config "$TMP/prometheus.yml" >/dev/null || die "prometheus.yml does not check"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
wait_for 30 "prometheus /-/ready" curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready"

# query EXPR CHECK: true when the instant query's first value satisfies the
# python expression CHECK (over `v`).
query() {
  curl -fsS --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
    python3 -c '
import json, math, sys
check = sys.argv[1]
r = json.load(sys.stdin)["data"]["result"]
vals = [float(x["value"][1]) for x in r]
v = vals[0] if vals else float("nan")
sys.exit(0 if vals and not math.isnan(v) and eval(check) else 1)' "$2"
}
wait_for 40 'probe_success{probe="interop-health"} == 1' \
  query 'probe_success{probe="interop-health",instance="ci",location="loopback"}' 'v == 1'
pass "prometheus scraped synthmon: probe_success{probe=\"interop-health\"} = 1"
Q='histogram_quantile(0.95, sum by (le) (rate(synthmon_probe_duration_seconds_bucket{probe="interop-latency"}[15s])))'
wait_for 40 "a histogram quantile for interop-latency" query "$Q" '0.004 < v < 0.25'
pass "prometheus histogram_quantile(0.95) of synthmon_probe_duration_seconds is within the sandbox's 5–40 ms"
wait_for 20 'synthmon_threshold_failing{threshold="p(99) < 250ms"} == 0' \
  query 'synthmon_threshold_failing{probe="interop-health",threshold="p(99) < 250ms"}' 'v == 0'
pass "threshold state is queryable"
