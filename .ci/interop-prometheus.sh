#!/usr/bin/env bash
# Interop with a real Prometheus (Debian's package):
#   1. `promtool check metrics` on the daemon's live /metrics;
#   2. a real Prometheus scrapes the daemon every second (gzipped, as it
#      asks) and answers a query for probe_success with `instance` and
#      `location` as target labels (README's relabeling), the same through
#      the synthmon_location_info join, a histogram_quantile over
#      synthmon_probe_duration_seconds, the exact synthmon_latency_seconds
#      percentile and the schedule-lag histogram;
#   3. a real Alertmanager (Debian's prometheus-alertmanager) receives a
#      synthmon alert (receiver type "alertmanager"), lists it as active,
#      and drops it once synthmon sends the resolve.
#
#   .ci/interop-prometheus.sh [PATH-TO-SYNTHMON-BINARY]   (default target/release/synthmon)
#
# Installs prometheus (and prometheus-alertmanager) if their binaries are
# missing, and fails loudly if they are still missing afterwards.
# Everything listens on 127.0.0.1 and every wait has a deadline.
set -euo pipefail

BIN_ARG=""
if (($# > 0)); then BIN_ARG="$(realpath -m -- "$1")"; fi
cd "$(dirname "$0")/.."
. .ci/lib.sh
BIN="${BIN_ARG:-$PWD/target/release/synthmon}"


[ -x "$BIN" ] || die "no synthmon binary at $BIN (build it first)"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  apt-get clean
fi
command -v promtool >/dev/null || die "promtool is missing after installing prometheus"
command -v prometheus >/dev/null || die "prometheus is missing after installing it"

scratch


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

# One probe of each kind that adds series of its own, so promtool lints
# them too: a flow's per-step series, a workload's counters, tls, dns and
# websocket gauges (each kind declares its gauges' help text).
cat >"$TMP/probes/journey.toml" <<'TOML'
name = "interop-journey"
schedule = "every 2s"
timeout = "1s"
environments = ["sandbox"]
[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "widget", quantity = 1 }
capture = { id = "json.id" }
[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{ vars.id }}"
TOML
cat >"$TMP/probes/load.toml" <<'TOML'
name = "interop-load"
schedule = "every 5s"
timeout = "500ms"
environments = ["sandbox"]
[workload]
requests = 20
rate = 50
[http]
url = "/health"
TOML
cat >"$TMP/probes/cert.toml" <<'TOML'
name = "interop-cert"
schedule = "every 2s"
timeout = "1s"
environments = ["sandbox"]
[tls]
address = "{{ vars.sandbox_tls }}"
server_name = "localhost"
ca_file = "{{ vars.sandbox_ca_file }}"
TOML
cat >"$TMP/probes/ws.toml" <<'TOML'
name = "interop-ws"
schedule = "every 2s"
timeout = "1s"
environments = ["sandbox"]
[websocket]
url = "/ws/echo"
send = [{ text = "ping" }]
TOML
cat >"$TMP/probes/dns.toml" <<'TOML'
name = "interop-dns"
schedule = "every 2s"
timeout = "1s"
environments = ["sandbox"]
[dns]
server = "{{ vars.sandbox_dns }}"
name = "api.sandbox.test"
TOML

"$BIN" --config "$TMP/config.toml" --log-format json >"$TMP/synthmon.log" 2>&1 &
PIDS+=($!)
METRICS="http://127.0.0.1:$SM_PORT/metrics"
wait_for 30 "synthmon /readyz" curl -fsS "http://127.0.0.1:$SM_PORT/readyz"
has_runs() {
  local m
  m="$(curl -fsS "$METRICS")"
  for probe in interop-latency interop-journey interop-load interop-cert interop-dns; do
    grep -q "^synthmon_runs_total{.*probe=\"$probe\"" <<<"$m" || return 1
  done
}
wait_for 20 "the first runs of every probe in /metrics" has_runs

curl -fsS "$METRICS" >"$TMP/metrics.txt"
if ! promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.txt" 2>&1 || [ -s "$TMP/promtool.txt" ]; then
  cat "$TMP/promtool.txt" >&2
  die "promtool check metrics found problems"
fi
pass "promtool check metrics ($(grep -vc '^#' "$TMP/metrics.txt") samples)"

# Two jobs on the same daemon: one with README's target labels, one plain
# (its location comes from the synthmon_location_info join).
cat >"$TMP/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: synthmon
    static_configs:
      - targets: ["127.0.0.1:$SM_PORT"]
        labels: { location: "loopback" }
    relabel_configs:
      - source_labels: [__address__]
        regex: "(.+):[0-9]+"
        target_label: instance
  - job_name: synthmon-plain
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
  query 'probe_success{job="synthmon",probe="interop-health",instance="127.0.0.1",location="loopback"}' 'v == 1'
pass "prometheus scraped synthmon: probe_success{probe=\"interop-health\"} = 1, instance and location from target labels"
# query_labels EXPR CHECK: true when CHECK (python over `labels`, the first
# result's label set) holds.
query_labels() {
  curl -fsS --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
    python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
labels = r[0]["metric"] if r else {}
sys.exit(0 if r and eval(sys.argv[1]) else 1)' "$2"
}
J='probe_success{job="synthmon-plain",probe="interop-health"} * on (job, instance) group_left (location, instance_name) synthmon_location_info'
wait_for 20 "location through the synthmon_location_info join" \
  query_labels "$J" 'labels.get("location") == "loopback" and labels.get("instance_name") == "ci"'
pass "the synthmon_location_info join gives location=\"loopback\", instance_name=\"ci\""
Q='histogram_quantile(0.95, sum by (le) (rate(synthmon_probe_duration_seconds_bucket{job="synthmon",probe="interop-latency"}[15s])))'
wait_for 40 "a histogram quantile for interop-latency" query "$Q" '0.004 < v < 0.25'
pass "prometheus histogram_quantile(0.95) of synthmon_probe_duration_seconds is within the sandbox's 5–40 ms"
wait_for 20 "the exact p95 of interop-latency" \
  query 'synthmon_latency_seconds{job="synthmon",probe="interop-latency",quantile="0.95"}' '0.004 < v < 0.25'
pass "synthmon_latency_seconds{quantile=\"0.95\"} (exact, over the threshold window) is within the sandbox's 5–40 ms"
wait_for 20 "the schedule lag histogram" \
  query 'histogram_quantile(0.99, sum by (le) (rate(synthmon_schedule_lag_seconds_bucket{job="synthmon"}[15s])))' 'v >= 0'
pass "synthmon_schedule_lag_seconds is a histogram prometheus can take quantiles of"
wait_for 20 'synthmon_threshold_failing{threshold="p(99) < 250ms"} == 0' \
  query 'synthmon_threshold_failing{probe="interop-health",threshold="p(99) < 250ms"}' 'v == 0'
pass "threshold state is queryable"

# ---------------------------------------------------------------------------
# 3. A real Alertmanager (Debian's package) as an `alertmanager` receiver: a
#    second daemon fires an alert for a probe whose target (a separate
#    `synthmon sandbox`) has a fault injected; Alertmanager lists it as
#    active; the fault is removed and the resolve (endsAt in the past)
#    makes Alertmanager drop it from its alerts.
# ---------------------------------------------------------------------------
am_bin() { command -v alertmanager || command -v prometheus-alertmanager; }
if ! am_bin >/dev/null || ! command -v amtool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
  apt-get clean
fi
AM="$(am_bin)" || die "alertmanager (or prometheus-alertmanager) is missing after installing prometheus-alertmanager"
command -v amtool >/dev/null || die "amtool is missing after installing prometheus-alertmanager"

AM_PORT="$(free_port)"
SB_PORT="$(free_port)"
SM2_PORT="$(free_port)"
cat >"$TMP/alertmanager.yml" <<'YAML'
route:
  receiver: blackhole
  group_wait: 1s
receivers:
  - name: blackhole
YAML
amtool check-config "$TMP/alertmanager.yml" >/dev/null || die "alertmanager.yml does not check"
"$AM" --config.file="$TMP/alertmanager.yml" --storage.path="$TMP/am-data" \
  --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= \
  --log.level=warn >"$TMP/alertmanager.log" 2>&1 &
PIDS+=($!)
AM_URL="http://127.0.0.1:$AM_PORT"
wait_for 30 "alertmanager /-/ready" curl -fsS "$AM_URL/-/ready"

# The target: a standalone sandbox whose /health fails until the fault is
# removed.
"$BIN" sandbox --listen "127.0.0.1:$SB_PORT" >"$TMP/sandbox.log" 2>&1 &
PIDS+=($!)
SB_URL="http://127.0.0.1:$SB_PORT"
wait_for 20 "the sandbox" curl -fsS "$SB_URL/health"
curl -fsS -X POST -H 'content-type: application/json' \
  -d '{"path_prefix": "/health", "status": 500}' "$SB_URL/_sandbox/faults" >/dev/null ||
  die "cannot inject a fault into the sandbox"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$SB_URL/health")" = 500 ] || die "the fault does not take"

mkdir -p "$TMP/am/probes"
cat >"$TMP/am/config.toml" <<TOML
[daemon]
listen = "127.0.0.1:$SM2_PORT"
state_dir = "$TMP/am/state"
instance = "ci"

[environments.target]
base_url = "$SB_URL"

[alerting]
group_wait = "200ms"
default_receivers = ["am"]

[alerting.receivers.am]
type = "alertmanager"
url = "$AM_URL"
timeout = "2s"
TOML
cat >"$TMP/am/probes/failing.toml" <<'TOML'
name = "interop-failing"
schedule = "every 1s"
timeout = "500ms"
environments = ["target"]
[alert]
fire_after = 1
resolve_after = 1
[http]
url = "/health"
expect = ["status == 200"]
TOML
SYNTHMON_LOG=synthmon=debug "$BIN" run --config "$TMP/am/config.toml" --log-format json >"$TMP/synthmon-am.log" 2>&1 &
PIDS+=($!)
wait_for 30 "the alerting synthmon /readyz" curl -fsS "http://127.0.0.1:$SM2_PORT/readyz"

# am_alerts QUERY CHECK: true when CHECK (a python expression over `n`, the
# number of alerts labelled probe="interop-failing" that `GET
# /api/v2/alerts?QUERY` lists, and `states`, their status.state values)
# holds. Alertmanager's v2 API leaves out resolved alerts (endsAt in the
# past) whatever the filters, so "resolved" reads as "listed no more".
am_alerts() {
  curl -fsS "$AM_URL/api/v2/alerts?$1" |
    python3 -c '
import json, sys
check = sys.argv[1]
alerts = [a for a in json.load(sys.stdin) if a["labels"].get("probe") == "interop-failing"]
for a in alerts:
    assert a["labels"]["alertname"] == "SynthmonProbeFailing", a
    assert a["labels"]["environment"] == "target", a
n, states = len(alerts), [a["status"]["state"] for a in alerts]
sys.exit(0 if eval(check) else 1)' "$2"
}
wait_for 30 'an active alert probe="interop-failing" in alertmanager' \
  am_alerts 'active=true&silenced=false&inhibited=false' 'n == 1 and states == ["active"]'
pass "alertmanager lists the firing alert probe=\"interop-failing\" as active"
amtool --alertmanager.url="$AM_URL" alert query probe=interop-failing 2>/dev/null |
  grep -q SynthmonProbeFailing || die "amtool does not show the alert"
pass "amtool alert query shows it"

# delivered_to_am CHECK: true when CHECK holds over `n`, how many deliveries
# to receiver `am` the daemon logged as accepted (2xx).
delivered_to_am() {
  python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1], errors="replace"):
    try:
        f = json.loads(line).get("fields", {})
    except ValueError:
        continue
    n += (f.get("message") == "notification delivered" and f.get("receiver") == "am"
          and f.get("receiver_kind") == "alertmanager")
sys.exit(0 if eval(sys.argv[2]) else 1)' "$TMP/synthmon-am.log" "$1"
}
wait_for 10 "the trigger's delivery to be logged" delivered_to_am 'n == 1'
curl -fsS -X DELETE "$SB_URL/_sandbox/faults" >/dev/null || die "cannot clear the sandbox's faults"
wait_for 30 "the resolve's delivery to alertmanager" delivered_to_am 'n == 2'
wait_for 30 'the alert probe="interop-failing" to resolve in alertmanager' am_alerts '' 'n == 0'
pass "after the target recovered, the resolve was accepted and alertmanager no longer lists the alert"
grep -q '"notification delivery failed' "$TMP/synthmon-am.log" &&
  die "a delivery to alertmanager failed: $(grep '"notification delivery failed' "$TMP/synthmon-am.log" | head -3)"
pass "every delivery to alertmanager was accepted on the first attempt"
