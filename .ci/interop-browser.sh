#!/usr/bin/env bash
# Interop with a real browser: the daemon's status page in Debian's
# chromium, headless.
#
#   .ci/interop-browser.sh [PATH-TO-SYNTHMON-BINARY]   (default target/release/synthmon)
#
# A daemon on 127.0.0.1 probes the built-in sandbox (five pairs, one of
# them failing, one a flow with steps), and once every pair has runs:
#   1. `chromium --headless --dump-dom /` (the DOM after the page's own
#      script ran) lists every probe × environment of /api/v1/probes with
#      the same state, in the row's data-state and as the badge's text;
#   2. no console message: chromium logs every console message of the page
#      to stderr with --enable-logging=stderr --v=0 as `…:CONSOLE…] "text",
#      source: URL (line)`; any such line, and any `Uncaught` exception or
#      `Refused to …` (a Content-Security-Policy violation: the page allows
#      only its own inline style and script, by hash) fails the run. The
#      check is shown to work first: a page with a deliberate error must be
#      caught;
#   3. the detail page of the flow shows its steps' waterfall and the
#      failing pair's detail page links its failures, without console
#      messages either;
#   4. the page's one script ran (it marks <html class="js">), so the
#      policy's hash of it is right; with JavaScript off (the profile's
#      content setting) it did not, and the DOM lists the same pairs with
#      the same states;
#   5. screenshots kept as CI artifacts: target/status-page.png (1280×2000),
#      target/status-page-phone.png (390×1400) and, with the browser asked
#      for a dark colour scheme (--force-dark-mode), target/status-page-dark.png,
#      whose background must be dark where the light one is light
#      (prefers-color-scheme).
#
# KEEP_TMP=1 keeps the scratch directory (config, logs, the dumped DOMs).
#
# Installs chromium with apt when it is missing (apt-get update first) and
# fails loudly if it is still missing. Every wait has a deadline; every
# chromium run is bounded by `timeout`.
set -euo pipefail

BIN_ARG=""
if (($# > 0)); then BIN_ARG="$(realpath -m -- "$1")"; fi
cd "$(dirname "$0")/.."
. .ci/lib.sh
ROOT="$PWD"
BIN="${BIN_ARG:-$ROOT/target/release/synthmon}"


[ -x "$BIN" ] || die "no synthmon binary at $BIN (build it first)"
chromium_bin() { command -v chromium || command -v chromium-browser; }
if ! chromium_bin >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  apt-get clean
fi
CHROMIUM="$(chromium_bin)" || die "chromium is missing after installing it (apt-get install chromium)"
echo "$("$CHROMIUM" --version 2>/dev/null || echo chromium)"

scratch


# browser OUT-PREFIX ARGS...: one headless chromium run with its own
# profile, bounded to 60 s; stdout to OUT-PREFIX.out, its log to
# OUT-PREFIX.log.
browser() {
  local out=$1; shift
  timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu \
    --disable-dev-shm-usage --no-first-run --no-default-browser-check \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$TMP/profile-$(basename "$out")" \
    --enable-logging=stderr --v=0 "$@" >"$out.out" 2>"$out.log" ||
    die "chromium $* failed (exit $?): $(tail -5 "$out.log")"
}
# console_messages LOG: the lines of a chromium log that are the page's
# console messages, uncaught exceptions or refused resources.
console_messages() { grep -E 'CONSOLE|Uncaught|Refused to' "$1" || true; }
no_console_messages() {
  local found
  found="$(console_messages "$1")"
  [ -z "$found" ] || die "console messages on $2:
$found"
}

# The check of console messages is shown to catch one first.
cat >"$TMP/broken.html" <<'HTML'
<!doctype html><title>broken</title><script>console.error("deliberate console error"); undefinedFunction();</script>
HTML
browser "$TMP/broken" --dump-dom "file://$TMP/broken.html"
console_messages "$TMP/broken.log" | grep -q 'deliberate console error' ||
  die "chromium's log does not show console messages (the check would see nothing): $(tail -5 "$TMP/broken.log")"
console_messages "$TMP/broken.log" | grep -q 'Uncaught' ||
  die "chromium's log does not show uncaught exceptions: $(tail -5 "$TMP/broken.log")"
pass "chromium logs a page's console errors and uncaught exceptions (so their absence below means something)"

PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"
mkdir -p "$TMP/probes"
cat >"$TMP/config.toml" <<TOML
[daemon]
listen = "127.0.0.1:$PORT"
state_dir = "state"
instance = "ci"
location = "loopback"

[environments.sandbox]
base_url = "builtin:sandbox"

[environments.sandbox-eu]
base_url = "builtin:sandbox"
TOML
cat >"$TMP/probes/health.toml" <<'TOML'
name = "browser-health"
schedule = "every 1s"
timeout = "900ms"
environments = ["sandbox", "sandbox-eu"]
tags = ["web"]
slo = { objective = "99%" }
labels = { team = "<script>alert('label')</script>" }
[http]
url = "/health"
TOML
cat >"$TMP/probes/latency.toml" <<'TOML'
name = "browser-latency"
schedule = "every 1s"
timeout = "900ms"
environments = ["sandbox"]
tags = ["web"]
[http]
url = "/latency?dist=uniform&min_ms=5&max_ms=40"
TOML
cat >"$TMP/probes/journey.toml" <<'TOML'
name = "browser-journey"
schedule = "every 2s"
timeout = "1500ms"
environments = ["sandbox"]
tags = ["flow"]
[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "widget", quantity = 1 }
capture = { id = "json.id" }
[[flow.steps]]
name = "fetch"
url = "/api/orders/{{ vars.id }}"
[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{ vars.id }}"
TOML
# The failing one: the sandbox answers 500.
cat >"$TMP/probes/failing.toml" <<'TOML'
name = "browser-failing"
schedule = "every 1s"
timeout = "900ms"
environments = ["sandbox"]
tags = ["api"]
[http]
url = "/status/500"
TOML

(cd "$TMP" && exec "$BIN" --config "$TMP/config.toml" --log-format json) >"$TMP/synthmon.log" 2>&1 &
PIDS+=($!)
wait_for 30 "synthmon /readyz" curl -fsS "$URL/readyz"

# Every pair has a state, the failing one is failing, and the history holds
# latency samples (written every few seconds) for the sparklines.
all_have_runs() {
  curl -fsS "$URL/api/v1/probes" | python3 -c '
import json, sys
ps = json.load(sys.stdin)["probes"]
states = {(p["probe"], p["environment"]): p["state"] for p in ps}
ok = len(ps) == 5 and all(states.values()) and states[("browser-failing", "sandbox")] == "failing"
sys.exit(0 if ok else 1)' &&
    curl -fsS "$URL/api/v1/probes/browser-health/sandbox/latency?window=1h&step=1h" |
    python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["points"][0]["samples"] > 0 else 1)'
}
wait_for 40 "runs and latency samples of every pair in /api/v1/probes" all_have_runs
curl -fsS "$URL/api/v1/probes" >"$TMP/probes.json"

# same_pairs DOM-FILE WHAT: every pair of probes.json in the DOM's rows
# with the same state, as data-state and as the badge's text; no other row.
same_pairs() {
  python3 - "$TMP/probes.json" "$1" "$2" <<'PY'
import html.parser, json, sys
api_file, dom_file, what = sys.argv[1:4]
api = {(p["probe"], p["environment"]): p["state"] or "none" for p in json.load(open(api_file))["probes"]}
text = {"ok": "ok", "degraded": "degraded", "failing": "failing", "none": "no runs yet"}

class Rows(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.row, self.badge = {}, None, None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-probe" in a:
            self.row = (a["data-probe"], a["data-environment"])
            self.rows[self.row] = [a["data-state"], ""]
        elif tag == "span" and self.row and "badge" in a.get("class", "").split():
            self.badge = self.row
    def handle_endtag(self, tag):
        if tag == "span":
            self.badge = None
        elif tag == "tr":
            self.row = None
    def handle_data(self, data):
        if self.badge:
            self.rows[self.badge][1] += data

p = Rows()
p.feed(open(dom_file, encoding="utf-8").read())
problems = []
for pair, state in sorted(api.items()):
    if pair not in p.rows:
        problems.append(f"{pair} is missing")
        continue
    shown, badge = p.rows[pair]
    if shown != state or badge.strip() != text[state]:
        problems.append(f"{pair}: the API says {state}, the page {shown} / {badge.strip()!r}")
for pair in sorted(set(p.rows) - set(api)):
    problems.append(f"{pair} is on the page but not in the API")
if problems:
    sys.exit(f"{what}: " + "; ".join(problems))
print(f"{len(api)} pairs")
PY
}

browser "$TMP/overview" --dump-dom "$URL/"
grep -q '<table class="pairs">' "$TMP/overview.out" || die "the status page did not render: $(head -c 600 "$TMP/overview.out")"
# The page's one script ran (the policy's hash of it is right): it marks
# the document.
grep -q '<html lang="en" class="js">' "$TMP/overview.out" || die "the page's script did not run"
n="$(same_pairs "$TMP/overview.out" "the status page" 2>&1)" || die "$n"
pass "chromium renders / and it lists every probe × environment of /api/v1/probes with the same state ($n, one failing)"
no_console_messages "$TMP/overview.log" "/"
grep -q '<script>alert' "$TMP/overview.out" && die "a probe label became a script"
pass "no console message, error or CSP violation on /"

browser "$TMP/journey" --dump-dom "$URL/probes/browser-journey/sandbox"
for step in "whole run" create fetch delete; do
  grep -q "<th scope=\"row\">$step</th>" "$TMP/journey.out" || die "the flow's detail page has no waterfall row for $step"
done
grep -q '<svg class="chart"' "$TMP/journey.out" || die "the flow's detail page has no latency chart"
no_console_messages "$TMP/journey.log" "the flow's detail page"
browser "$TMP/failing" --dump-dom "$URL/probes/browser-failing/sandbox"
grep -q 'api/v1/artifacts/browser-failing/sandbox/' "$TMP/failing.out" ||
  grep -q 'api&#x2f;v1&#x2f;artifacts&#x2f;browser-failing' "$TMP/failing.out" ||
  die "the failing pair's detail page links no failure artifact"
no_console_messages "$TMP/failing.log" "the failing pair's detail page"
browser "$TMP/labelled" --dump-dom "$URL/probes/browser-health/sandbox"
grep -q '<script>alert' "$TMP/labelled.out" && die "a probe label became a script on its detail page"
grep -q "team=&lt;script&gt;alert('label')&lt;/script&gt;" "$TMP/labelled.out" ||
  die "the label is not shown as text on its detail page"
no_console_messages "$TMP/labelled.log" "a labelled pair's detail page"
pass "detail pages render (a flow's waterfall and chart, a failure's link, a hostile label as text) without console messages"

# JavaScript off: the profile's content setting blocks the page's scripts
# (--blink-settings=scriptEnabled=false would also stop the --dump-dom
# that headless chromium runs through DevTools, and --disable-javascript
# does not apply to headless pages).
mkdir -p "$TMP/profile-nojs/Default"
echo '{"profile": {"default_content_setting_values": {"javascript": 2}}}' >"$TMP/profile-nojs/Default/Preferences"
browser "$TMP/nojs" --dump-dom "$URL/"
grep -q '<html lang="en" class="js">' "$TMP/nojs.out" && die "the page's script ran with JavaScript off"
n="$(same_pairs "$TMP/nojs.out" "the status page with JavaScript off" 2>&1)" || die "$n"
no_console_messages "$TMP/nojs.log" "/ with JavaScript off"
pass "with JavaScript off the page lists the same pairs with the same states ($n)"

mkdir -p "$ROOT/target"
# png_check FILE WIDTH HEIGHT: a PNG of that size; prints the mean
# luminance (0–255) of its top-left 200×200 pixels (the page background).
png_check() {
  python3 - "$@" <<'PY'
import struct, sys, zlib
path, want_w, want_h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(f"{path} is not a PNG")
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, colour = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
if (w, h) != (want_w, want_h):
    sys.exit(f"{path} is {w}x{h}, expected {want_w}x{want_h}")
if depth != 8 or colour not in (2, 6):
    sys.exit(f"{path}: unexpected PNG format (depth {depth}, colour type {colour})")
bpp = 3 if colour == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, rows = bytearray(stride), []
for y in range(200):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line)
    prev = line
px = [(r[x * bpp], r[x * bpp + 1], r[x * bpp + 2]) for r in rows for x in range(200)]
print(round(sum(0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in px) / len(px)))
PY
}
SHOT="$ROOT/target/status-page.png"
rm -f "$SHOT"
browser "$TMP/shot" --hide-scrollbars --window-size=1280,2000 --screenshot="$SHOT" "$URL/"
[ -s "$SHOT" ] || die "no screenshot at $SHOT: $(tail -5 "$TMP/shot.log")"
light="$(png_check "$SHOT" 1280 2000)" || die "$light"
no_console_messages "$TMP/shot.log" "/ (screenshot)"
pass "screenshot kept: target/status-page.png (1280x2000, background luminance $light)"
PHONE="$ROOT/target/status-page-phone.png"
browser "$TMP/phone" --hide-scrollbars --window-size=390,1400 --screenshot="$PHONE" "$URL/"
png_check "$PHONE" 390 1400 >/dev/null || die "bad phone screenshot"
pass "screenshot kept: target/status-page-phone.png (390x1400)"
DARK="$ROOT/target/status-page-dark.png"
browser "$TMP/dark" --force-dark-mode --hide-scrollbars --window-size=1280,2000 --screenshot="$DARK" "$URL/"
dark="$(png_check "$DARK" 1280 2000)" || die "$dark"
((light > 200 && dark < 60)) ||
  die "prefers-color-scheme: background luminance $light (light) and $dark (dark); expected > 200 and < 60"
no_console_messages "$TMP/dark.log" "/ (dark screenshot)"
pass "screenshot kept: target/status-page-dark.png (prefers-color-scheme: dark gives a dark page, luminance $dark)"
