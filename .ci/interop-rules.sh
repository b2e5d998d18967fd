#!/usr/bin/env bash
# The shipped Prometheus rules and Grafana dashboard, against promtool and a
# live daemon:
#   1. `promtool check rules` and `promtool test rules` on deploy/prometheus/
#      (every alert firing and not firing, the recording rules' values, the
#      multi-location quorum);
#   2. deploy/grafana/synthmon.json: the data source is the `datasource`
#      variable everywhere (no data source uid written in), the `probe`,
#      `environment` and `instance` variables come from label_values, panel
#      ids are unique and panels do not overlap, and every query parses
#      (promtool checks them as recording rules, Grafana's variables
#      substituted);
#   3. a daemon (the release binary) on 127.0.0.1 with probes that make
#      every family appear (an http probe with a threshold and an SLO, a
#      failing one with an SLO that fires at once, a tls probe, a webhook
#      receiver on a port that refuses, so the outbox fills): every metric
#      name any panel, variable, annotation or rule queries must be in its
#      /metrics (names a recording rule produces count as existing; `up` is
#      Prometheus' own).
#
#   .ci/interop-rules.sh [PATH-TO-SYNTHMON-BINARY]   (default target/release/synthmon)
#
# Installs Debian's prometheus (for promtool) and python3-yaml if missing,
# and fails loudly if they are still missing afterwards. Everything listens
# on 127.0.0.1 and every wait has a deadline.
set -euo pipefail

BIN_ARG=""
if (($# > 0)); then BIN_ARG="$(realpath -m -- "$1")"; fi
cd "$(dirname "$0")/.."
. .ci/lib.sh
BIN="${BIN_ARG:-$PWD/target/release/synthmon}"
RULES=deploy/prometheus/rules.yml
RULES_TEST=deploy/prometheus/rules_test.yml
DASHBOARD=deploy/grafana/synthmon.json


[ -x "$BIN" ] || die "no synthmon binary at $BIN (build it first)"
if ! command -v promtool >/dev/null || ! python3 -c 'import yaml' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus python3-yaml >/dev/null
  apt-get clean
fi
command -v promtool >/dev/null || die "promtool is missing after installing prometheus"
python3 -c 'import yaml' 2>/dev/null || die "python3-yaml is missing after installing it"

scratch

# --- 1. The rules ------------------------------------------------------------
promtool check rules "$RULES" >"$TMP/check.txt" 2>&1 || { cat "$TMP/check.txt" >&2; die "promtool check rules $RULES"; }
pass "promtool check rules $RULES ($(grep -o '[0-9]* rules found' "$TMP/check.txt"))"
promtool test rules "$RULES_TEST" >"$TMP/test.txt" 2>&1 || { cat "$TMP/test.txt" >&2; die "promtool test rules $RULES_TEST"; }
pass "promtool test rules $RULES_TEST ($(grep -c '^  - name:' "$RULES_TEST") test groups)"

# --- The checker: PromQL metric names, the dashboard's shape -----------------
cat >"$TMP/names.py" <<'PY'
"""Metric names in the dashboard's and the rules' PromQL, and checks on them.

  names.py lint DASHBOARD OUT.yml     dashboard shape; its queries as rules for promtool
  names.py check DASHBOARD RULES METRICS.txt   every name queried is in /metrics
"""
import json
import re
import sys

import yaml

# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_OWN = {"up"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
TOKEN = re.compile(r"[0-9][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*")


def names(expr):
    """The metric names an expression selects: identifiers that are not
    functions or aggregations (followed by `(`), keywords, label names
    (inside braces and grouping clauses) or durations and numbers."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"#[^\n]*", " ", s)
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = GROUPING.sub(" ", s)
    found = set()
    for m in TOKEN.finditer(s):
        tok = m.group()
        if tok[0].isdigit() or tok.lower() in KEYWORDS or s[m.end():].lstrip().startswith("("):
            continue
        found.add(tok)
    return found


# The extractor must see what it is meant to see, or the check is empty.
for expr, want in [
    ('sum by (probe, le) (rate(a_bucket{x="y", le!="1"}[$__rate_interval])) / ignoring (le) b_total offset 5m',
     {"a_bucket", "b_total"}),
    ('count(c{s=~"$probe"} == 0) or vector(0)', {"c"}),
    ('rate(d[5m]) and on (job, instance) e', {"d", "e"}),
    ('max without (window) (f{window="1h"} >= 14.4 and ignoring (window) f{window="5m"} >= 1e3)', {"f"}),
    ('g - time() < 14 * 86400', {"g"}),
    ('absent(up{job=~"s.*"})', {"up"}),
    ('histogram_quantile(0.5, sum(rate(rec:ord:ed[1m])) by (le))', {"rec:ord:ed"}),
]:
    got = names(expr)
    assert got == want, f"names({expr!r}) = {got}, want {want}"


def label_values_selector(query):
    """The series selector of `label_values(SELECTOR, LABEL)`."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.S)
    assert m, f"a variable query other than label_values(selector, label): {query}"
    return m.group(1)


def dashboard_queries(d):
    """(where, PromQL) for every panel target, query variable and annotation."""
    out = []
    for p in d["panels"]:
        for inner in [p] + p.get("panels", []):
            for t in inner.get("targets", []):
                out.append((f"panel {inner['id']} {inner['title']!r} target {t['refId']}", t["expr"]))
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", label_values_selector(q)))
    for a in d["annotations"]["list"]:
        if "expr" in a:
            out.append((f"annotation {a['name']!r}", a["expr"]))
    return out


def lint(path, out):
    d = json.load(open(path))
    problems = []
    if d.get("schemaVersion", 0) < 39:
        problems.append(f"schemaVersion {d.get('schemaVersion')} (want 39 or later)")
    if "__inputs" in d or "${DS_" in json.dumps(d):
        problems.append("an exported __inputs data source: use the `datasource` variable")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables.get("datasource")
    if not ds or ds["type"] != "datasource" or ds["query"] != "prometheus":
        problems.append("no `datasource` variable of type datasource (prometheus)")
    for name in ("probe", "environment", "instance"):
        v = variables.get(name)
        q = v and (v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
        if not v or v["type"] != "query" or not q.startswith("label_values("):
            problems.append(f"no `{name}` variable from label_values")
    # Every data source reference is the variable (Grafana's own annotation
    # source aside): no uid of someone's Prometheus written in.
    def walk(node, where):
        if isinstance(node, dict):
            src = node.get("datasource")
            if src is not None and src != {"type": "grafana", "uid": "-- Grafana --"}:
                if not (isinstance(src, dict) and src.get("uid") == "${datasource}"):
                    problems.append(f"{where}: data source {src!r} is not ${{datasource}}")
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")
    walk(d, "dashboard")
    ids, cells = set(), {}
    for p in d["panels"]:
        if p["id"] in ids:
            problems.append(f"duplicate panel id {p['id']}")
        ids.add(p["id"])
        g = p["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            problems.append(f"panel {p['id']} {p['title']!r} is outside the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"panel {p['id']} {p['title']!r} overlaps panel {cells[(x, y)]}")
                    break
                cells[(x, y)] = p["id"]
            else:
                continue
            break
        if p["type"] != "row" and not p.get("targets"):
            problems.append(f"panel {p['id']} {p['title']!r} has no query")
    queries = dashboard_queries(d)
    for where, expr in queries:
        if not names(expr):
            problems.append(f"{where}: no metric name in {expr!r}")
    if problems:
        sys.exit("dashboard problems:\n  " + "\n  ".join(problems))
    # Each query as a recording rule, Grafana's variables substituted, so
    # promtool parses them all.
    def concrete(expr):
        for var, value in (("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "1h")):
            expr = expr.replace(var, value)
        return re.sub(r"\$\{[^}]*\}|\$\w+", ".*", expr)
    rules = [{"record": f"dashboard_query_{i}", "expr": concrete(e)} for i, (_, e) in enumerate(queries)]
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(out, "w"))
    print(f"{len(d['panels'])} panels, {len(queries)} queries")


def check(dashboard, rules_path, metrics_path):
    d = json.load(open(dashboard))
    rules = yaml.safe_load(open(rules_path))
    referenced = {}  # name -> where it is used
    recorded = set()
    for where, expr in dashboard_queries(d):
        for n in names(expr):
            referenced.setdefault(n, where)
    for g in rules["groups"]:
        for r in g["rules"]:
            where = f"rule {r.get('alert') or r.get('record')}"
            found = names(r["expr"])
            if not found:
                sys.exit(f"{where}: no metric name in {r['expr']!r}")
            for n in found:
                referenced.setdefault(n, where)
            if "record" in r:
                recorded.add(r["record"])
    samples, families = set(), {}
    for line in open(metrics_path):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            families[name] = kind
        elif line.strip() and not line.startswith("#"):
            samples.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group())

    def family(n):
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        return base if families.get(base) in ("histogram", "summary") else n

    missing = sorted(n for n in referenced
                     if n not in samples and n not in recorded and n not in PROMETHEUS_OWN)
    if missing:
        for n in missing:
            print(f"  {n} (family {family(n)}), used by {referenced[n]}", file=sys.stderr)
        sys.exit(1)
    scraped = {family(n) for n in referenced if n in samples}
    print(f"{len(referenced)} names ({len(scraped)} scraped families, "
          f"{len(recorded & set(referenced))} recorded, {len(PROMETHEUS_OWN & set(referenced))} Prometheus' own)")


if __name__ == "__main__":
    {"lint": lint, "check": check}[sys.argv[1]](*sys.argv[2:])
PY

# --- 2. The dashboard's shape, and every query parses -------------------------
summary="$(python3 "$TMP/names.py" lint "$DASHBOARD" "$TMP/dashboard-queries.yml")" ||
  die "$DASHBOARD does not hold together"
pass "$DASHBOARD: data source variable only, label_values variables, unique ids, no overlap ($summary)"
promtool check rules "$TMP/dashboard-queries.yml" >"$TMP/check-dashboard.txt" 2>&1 || {
  cat "$TMP/check-dashboard.txt" >&2
  die "a dashboard query does not parse (numbers are query indexes in panel order)"
}
pass "every dashboard query parses (promtool, Grafana's variables substituted)"

# --- 3. A live daemon's /metrics has every name queried -----------------------
SM_PORT="$(free_port)"
# Nothing listens there: deliveries fail with connect_refused and are
# retried, so the outbox has a pending row and its receiver's series.
REFUSED_PORT="$(free_port)"
mkdir -p "$TMP/probes" "$TMP/state"
cat >"$TMP/config.toml" <<TOML
[daemon]
listen = "127.0.0.1:$SM_PORT"
instance = "ci"
location = "loopback"
state_dir = "$TMP/state"

[environments.sandbox]
base_url = "builtin:sandbox"

[alerting]
group_wait = "1s"
default_receivers = ["hook"]

[alerting.receivers.hook]
type = "webhook"
url = "http://127.0.0.1:$REFUSED_PORT/hook"
timeout = "1s"
TOML
cat >"$TMP/probes/ok.toml" <<'TOML'
name = "rules-ok"
schedule = "every 1s"
timeout = "500ms"
environments = ["sandbox"]
thresholds = ["p(95) < 250ms"]
slo = { objective = "99%", window = "7d", sli = "availability" }
[http]
url = "/health"
TOML
cat >"$TMP/probes/failing.toml" <<'TOML'
name = "rules-failing"
schedule = "every 1s"
timeout = "500ms"
environments = ["sandbox"]
slo = { objective = "99.9%", window = "30d", sli = "availability" }
[alert]
fire_after = 1
[http]
url = "/status/500"
expect = ["status == 200"]
TOML
cat >"$TMP/probes/cert.toml" <<'TOML'
name = "rules-cert"
schedule = "every 2s"
timeout = "1s"
environments = ["sandbox"]
[tls]
address = "{{ vars.sandbox_tls }}"
server_name = "localhost"
ca_file = "{{ vars.sandbox_ca_file }}"
TOML
"$BIN" check --config "$TMP/config.toml" >/dev/null || die "the test config does not check"
"$BIN" --config "$TMP/config.toml" --log-format json >"$TMP/synthmon.log" 2>&1 &
PIDS+=($!)
METRICS="http://127.0.0.1:$SM_PORT/metrics"

deadline=$((SECONDS + 30))
until curl -fsS "http://127.0.0.1:$SM_PORT/readyz" >/dev/null 2>&1; do
  ((SECONDS < deadline)) || { tail -20 "$TMP/synthmon.log" >&2; die "timed out waiting for synthmon /readyz"; }
  sleep 0.5
done
# SLO gauges come with the first computation (3 s after start), the
# outbox's with the first notification: wait for every name, then say
# which are missing.
deadline=$((SECONDS + 60))
until curl -fsS "$METRICS" >"$TMP/metrics.txt" 2>/dev/null &&
  python3 "$TMP/names.py" check "$DASHBOARD" "$RULES" "$TMP/metrics.txt" >"$TMP/names.txt" 2>"$TMP/missing.txt"; do
  if ((SECONDS >= deadline)); then
    cat "$TMP/missing.txt" >&2
    die "metric names the dashboard or the rules query are not in a live daemon's /metrics (above)"
  fi
  sleep 1
done
pass "every metric name the dashboard and the rules query is in the live /metrics: $(cat "$TMP/names.txt")"
