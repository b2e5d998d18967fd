#!/usr/bin/env bash
# Three locations, one verdict (issue 18): three synthmon daemons, each its
# own location with its own path to the target (a sandbox of its own), a
# real Prometheus scraping all three with deploy/prometheus/rules.yml
# loaded, and a real Alertmanager that both Prometheus and the three
# daemons send to, with a real webhook receiver behind it.
#
#   1. One location's path fails (a fault on its sandbox): Prometheus sees
#      that location failing, fires the per-location outlier alert, and the
#      quorum alert SynthmonProbeFailingQuorum does NOT fire.
#   2. A second location fails: the quorum alert fires and reaches
#      Alertmanager; the two daemons that see the failure both push their
#      own SynthmonProbeFailing for the pair, and Alertmanager holds ONE
#      alert for it (the label sets and fingerprints are the same from
#      every instance), and its webhook receives one alert in that group.
#   3. Both recover: the quorum alert ends.
#
#   .ci/interop-quorum.sh [PATH-TO-SYNTHMON-BINARY]   (default target/release/synthmon)
#
# Installs Debian's prometheus and prometheus-alertmanager if missing and
# fails loudly if they are still missing. Everything listens on 127.0.0.1
# and every wait has a deadline.
set -euo pipefail

BIN_ARG=""
if (($# > 0)); then BIN_ARG="$(realpath -m -- "$1")"; fi
cd "$(dirname "$0")/.."
. .ci/lib.sh
BIN="${BIN_ARG:-$PWD/target/release/synthmon}"
RULES="$PWD/deploy/prometheus/rules.yml"

die() {
  printf 'FAIL  %s\n' "$*" >&2
  for f in "$TMP"/*.log; do
    [ -f "$f" ] && { printf -- '--- %s (last lines)\n' "$f" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}

[ -x "$BIN" ] || { echo "FAIL  no synthmon binary at $BIN (build it first)" >&2; exit 1; }
am_bin() { command -v alertmanager || command -v prometheus-alertmanager; }
if ! command -v prometheus >/dev/null || ! am_bin >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
  apt-get clean
fi
command -v prometheus >/dev/null || { echo "FAIL  prometheus is missing after installing it" >&2; exit 1; }
AM="$(am_bin)" || { echo "FAIL  alertmanager is missing after installing prometheus-alertmanager" >&2; exit 1; }

scratch


# --- The webhook receiver behind Alertmanager: appends every POST body to a
#     file, one JSON document per line.
HOOK_PORT="$(free_port)"
cat >"$TMP/hook.py" <<'PY'
import http.server, sys
out = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(out, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
: >"$TMP/hook.jsonl"
python3 "$TMP/hook.py" "$HOOK_PORT" "$TMP/hook.jsonl" >"$TMP/hook.log" 2>&1 &
PIDS+=($!)

# --- Alertmanager.
AM_PORT="$(free_port)"
cat >"$TMP/alertmanager.yml" <<YAML
route:
  receiver: hook
  group_by: [alertname, probe, environment]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:$HOOK_PORT/
        send_resolved: true
YAML
"$AM" --config.file="$TMP/alertmanager.yml" --storage.path="$TMP/am-data" \
  --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= \
  --log.level=warn >"$TMP/alertmanager.log" 2>&1 &
PIDS+=($!)
AM_URL="http://127.0.0.1:$AM_PORT"
wait_for 30 "alertmanager /-/ready" curl -fsS "$AM_URL/-/ready"

# --- Three locations: each a sandbox (its path to the target) and a daemon
#     with the same probe and alerting, differing only in `location`.
LOCATIONS=(eu us ap)
declare -A SB SM
for loc in "${LOCATIONS[@]}"; do
  SB[$loc]="$(free_port)"
  SM[$loc]="$(free_port)"
  "$BIN" sandbox --listen "127.0.0.1:${SB[$loc]}" >"$TMP/sandbox-$loc.log" 2>&1 &
  PIDS+=($!)
  mkdir -p "$TMP/$loc/probes"
  cat >"$TMP/$loc/config.toml" <<TOML
[daemon]
listen = "127.0.0.1:${SM[$loc]}"
state_dir = "$TMP/$loc/state"
location = "$loc"

[environments.prod]
base_url = "http://127.0.0.1:${SB[$loc]}"

[alerting]
group_wait = "200ms"
default_receivers = ["am"]

[alerting.receivers.am]
type = "alertmanager"
url = "$AM_URL"
timeout = "2s"
TOML
  cat >"$TMP/$loc/probes/checkout.toml" <<'TOML'
name = "quorum-checkout"
schedule = "every 1s"
timeout = "500ms"
environments = ["prod"]
[alert]
fire_after = 2
resolve_after = 2
[http]
url = "/health"
expect = ["status == 200"]
TOML
done
for loc in "${LOCATIONS[@]}"; do
  wait_for 20 "the $loc sandbox" curl -fsS "http://127.0.0.1:${SB[$loc]}/health"
  "$BIN" run --config "$TMP/$loc/config.toml" --log-format json >"$TMP/synthmon-$loc.log" 2>&1 &
  PIDS+=($!)
done
for loc in "${LOCATIONS[@]}"; do
  wait_for 30 "synthmon $loc /readyz" curl -fsS "http://127.0.0.1:${SM[$loc]}/readyz"
done

# --- Prometheus: one job, a target per location with its `location` label
#     (README's scrape config), the shipped rules, alerts to Alertmanager.
PROM_PORT="$(free_port)"
{
  cat <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["$RULES"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$AM_PORT"]
scrape_configs:
  - job_name: synthmon
    static_configs:
YAML
  for loc in "${LOCATIONS[@]}"; do
    printf '      - targets: ["127.0.0.1:%s"]\n        labels: { location: "%s" }\n' "${SM[$loc]}" "$loc"
  done
} >"$TMP/prometheus.yml"
promtool check config "$TMP/prometheus.yml" >/dev/null || die "prometheus.yml does not check"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
wait_for 30 "prometheus /-/ready" curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready"

# prom EXPR CHECK: true when CHECK (python over `vals`, the values of the
# instant query's series, and `labels`, their label sets) holds.
prom() {
  curl -fsS --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
    python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
vals = [float(x["value"][1]) for x in r]
labels = [x["metric"] for x in r]
sys.exit(0 if eval(sys.argv[1]) else 1)' "$2"
}
# am_alerts ALERTNAME CHECK: true when CHECK (python over `alerts`, the
# active alerts named ALERTNAME for probe quorum-checkout that Alertmanager
# lists) holds.
am_alerts() {
  curl -fsS "$AM_URL/api/v2/alerts?active=true&silenced=false&inhibited=false" |
    python3 -c '
import json, sys
alerts = [a for a in json.load(sys.stdin)
          if a["labels"].get("alertname") == sys.argv[1] and a["labels"].get("probe") == "quorum-checkout"]
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}
fault() {
  curl -fsS -X POST -H 'content-type: application/json' \
    -d '{"path_prefix": "/health", "status": 503}' "http://127.0.0.1:${SB[$1]}/_sandbox/faults" >/dev/null ||
    die "cannot inject a fault into the $1 sandbox"
}
QUORUM='ALERTS{alertname="SynthmonProbeFailingQuorum",alertstate="firing",probe="quorum-checkout"}'
OUTLIER='ALERTS{alertname="SynthmonProbeFailingLocationOutlier",alertstate="firing",probe="quorum-checkout"}'

wait_for 40 "all three locations passing in prometheus" \
  prom 'synthmon:probe_locations:count{probe="quorum-checkout"}' 'vals == [3.0]'
pass "prometheus sees quorum-checkout from 3 locations, all passing"

# --- 1. One location fails: an outlier, not a quorum.
fault ap
wait_for 30 "ap failing in prometheus" \
  prom 'max by (location) (synthmon_alert_state{probe="quorum-checkout"}) == 2' 'labels == [{"location": "ap"}]'
wait_for 20 "the outlier alert for ap" prom "$OUTLIER" 'len(labels) == 1 and labels[0]["location"] == "ap"'
pass "ap alone failing fires SynthmonProbeFailingLocationOutlier{location=\"ap\"}"
# The quorum rule has no `for`: had it matched, it would fire within an
# evaluation. Watch ten evaluations.
for _ in $(seq 10); do
  prom "$QUORUM" 'vals == []' || die "the quorum alert fired with one location of three failing"
  sleep 1
done
prom 'synthmon:probe_failing_locations:count{probe="quorum-checkout"}' 'vals == [1.0]' ||
  die "the failing-locations recording rule does not count 1"
pass "one location of three failing: no SynthmonProbeFailingQuorum over 10 evaluations"
wait_for 20 "ap's own alert in alertmanager" am_alerts SynthmonProbeFailing 'len(alerts) == 1'

# --- 2. A second location fails: the quorum.
fault us
wait_for 30 "the quorum alert" prom "$QUORUM" 'len(vals) == 1'
prom 'synthmon:probe_failing_locations:count{probe="quorum-checkout"}' 'vals == [2.0]' ||
  die "the failing-locations recording rule does not count 2"
pass "two locations of three failing fire SynthmonProbeFailingQuorum"
wait_for 30 "the quorum alert in alertmanager" am_alerts SynthmonProbeFailingQuorum 'len(alerts) == 1'
pass "alertmanager holds the quorum alert from prometheus"
wait_for 20 "the outlier alert to end" prom "$OUTLIER" 'vals == []'
pass "the outlier alert ended once the failure was a majority's"

# Both failing daemons delivered their own SynthmonProbeFailing; the one
# alert Alertmanager holds for the pair is theirs, deduplicated.
# delivered LOC: the daemon at LOC counts at least one notification
# delivered to receiver `am` on its /metrics.
delivered() {
  curl -fsS "http://127.0.0.1:${SM[$1]}/metrics" |
    python3 -c '
import re, sys
n = sum(float(m.group(1)) for m in re.finditer(
    r"^synthmon_notifications_total\{[^}]*\bresult=\"delivered\"[^}]*\} (\S+)$", sys.stdin.read(), re.M)
    if "receiver=\"am\"" in m.group(0))
sys.exit(0 if n >= 1 else 1)'
}
both_delivered() { delivered us && delivered ap; }
wait_for 20 "us and ap to deliver their alerts to alertmanager" both_delivered
if delivered eu; then die "synthmon eu, whose path is fine, sent an alert"; fi
am_alerts SynthmonProbeFailing 'len(alerts) == 1 and "location" not in alerts[0]["labels"]' ||
  die "alertmanager does not hold exactly one SynthmonProbeFailing for the pair: $(curl -fsS "$AM_URL/api/v2/alerts")"
pass "us and ap both pushed SynthmonProbeFailing; alertmanager holds one alert (same labels and fingerprint from both)"
hook_alerts() {
  python3 -c '
import json, sys
groups = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours = [g for g in groups if g.get("commonLabels", {}).get("alertname") == "SynthmonProbeFailing"]
sys.exit(0 if ours and all(len(g["alerts"]) == 1 for g in ours) else 1)' "$TMP/hook.jsonl"
}
wait_for 20 "the webhook to receive the SynthmonProbeFailing group" hook_alerts
pass "the webhook behind alertmanager received SynthmonProbeFailing with one alert per notification"

# --- 3. Recovery.
for loc in ap us; do
  curl -fsS -X DELETE "http://127.0.0.1:${SB[$loc]}/_sandbox/faults" >/dev/null || die "cannot clear the $loc sandbox's faults"
done
wait_for 40 "the quorum alert to end" prom "$QUORUM" 'vals == []'
pass "after both recovered, SynthmonProbeFailingQuorum ended"
