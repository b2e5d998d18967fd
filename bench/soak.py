#!/usr/bin/env python3
"""synthmon soak: the daemon with 500 probes for a while, watched for growth.

    bash bench/soak.sh [minutes]          (default 30; builds release first)
    SOAK_SYNTHMON=/path/to/synthmon python3 bench/soak.py [minutes]

Everything runs on 127.0.0.1: `synthmon sandbox` is the target, a small
webhook receiver in this script takes the alerts (one route answers 200,
the other 500 one time in five, so the outbox retries), and the daemon runs
SOAK_PROBES probes (default 500) of every kind every 5-15 s, a third of
them faulty on purpose (500s, stalls, refused connections, redirect loops,
an expired certificate, SERVFAIL, NOT_SERVING, a breached latency
threshold, a flapping error rate), plus two small workloads.

About every SOAK_SAMPLE seconds (default 2; jittered ±50% so the samples
do not keep one phase against the whole-second schedules) it records the daemon's RSS
(/proc/PID/status VmRSS), open fds (/proc/PID/fd), live tokio tasks
(`synthmon_runtime_tasks` on /metrics), outbox depth (the sum of
`synthmon_outbox_pending`) and probe runs; SOAK_CSV=FILE keeps every
sample. The first 20% of the run (at least a minute) is warm-up. "start" is
the mean of the samples in the first window after warm-up and "end" the
mean of the last window (each 10% of the run, at least a minute): a single
sample of tasks or fds counts the runs that happen to be in flight (a few
dozen at most, so one connection is 4%), not a trend. RSS, fds and tasks
pass when end grows less than 5% over start; the outbox passes when it
stays bounded (end mean at most 10 notifications). The least-squares slope
over everything after warm-up is printed beside it, per hour of run. Exit
status 1 on any FAIL or when the daemon dies.
"""

import ctypes
import http.server
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHMON = os.environ.get("SOAK_SYNTHMON") or os.path.join(ROOT, "target", "release", "synthmon")
PROBES = int(os.environ.get("SOAK_PROBES", "500"))
SAMPLE = float(os.environ.get("SOAK_SAMPLE", "2"))
CSV = os.environ.get("SOAK_CSV")
KEEP = os.environ.get("SOAK_KEEP") == "1"
LIMIT = 5.0  # percent growth allowed for RSS, fds and tasks
OUTBOX_BOUND = 10  # notifications pending at the end (mean of the window)
TICKS = os.sysconf("SC_CLK_TCK")
SANDBOX_VARS = ("sandbox_tcp", "sandbox_tls", "sandbox_tls_expired", "sandbox_ca_file",
                "sandbox_grpc", "sandbox_dns")


def say(msg):
    print(msg, flush=True)


def die(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """Runs in each child before exec: SIGKILL it if this script dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# --- the webhook receiver -------------------------------------------------

class Hook(http.server.BaseHTTPRequestHandler):
    counts = {}
    lock = threading.Lock()
    rng = random.Random(13)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with Hook.lock:
            fail = self.path == "/flaky" and Hook.rng.random() < 0.2
            key = (self.path, 500 if fail else 200)
            Hook.counts[key] = Hook.counts.get(key, 0) + 1
        self.send_response(500 if fail else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


# --- the probes -----------------------------------------------------------

def header(name, every, env, timeout, severity, key, alert=""):
    return (f'name = "{name}"\nschedule = "every {every}s"\nenvironments = ["{env}"]\n'
            f'timeout = "{timeout}"\nseverity = "{severity}"\ntags = ["soak", "{key}"]\n'
            f"{alert}")


ALERT = '\n[alert]\nfire_after = 2\nresolve_after = 2\nrepeat_interval = "1m"\n'
FLAPPING = '\n[alert]\nfire_after = 1\nresolve_after = 1\nrepeat_interval = "1m"\n'

# (key, weight, environment ("http" or "extra"), timeout, body after the header)
KINDS = [
    ("http-ok", 2, "http", "2s",
     '\n[http]\nurl = "/health"\nexpect = ["status == 200", "json.status == \'ok\'"]\n'),
    ("http-json", 1, "http", "2s",
     '\n[http]\nurl = "/json"\nexpect = ["has(json.service.name)", "size(json.items) > 0",'
     ' "timings.total < duration(\'1s\')"]\n'),
    ("http-post", 1, "http", "2s",
     '\n[http]\nmethod = "POST"\nurl = "/echo"\n'
     'json = { item = "{{ choice([\'widget\', \'gadget\']) }}", quantity = "{{ int(1, 5) }}",'
     ' email = "{{ email() }}", ref = "{{ synthetic_id() }}" }\n'
     'expect = ["status == 200", "json.quantity >= 1", "json.ref.startsWith(\'synth-\')"]\n'),
    ("http-500", 1, "http", "2s", '\n[http]\nurl = "/status/500"\n'),
    ("http-flaky", 1, "http", "2s",
     '\n[http]\nurl = "/latency?dist=uniform&min_ms=1&max_ms=30&error_rate=0.3"\n'),
    ("http-slow", 1, "http", "2s",
     'thresholds = ["p(95) < 200ms"]\n\n[http]\nurl = "/delay/250"\n'),
    ("http-stall", 1, "http", "1s", '\n[http]\nurl = "/stall"\n'),
    ("http-redirect", 1, "http", "2s",
     '\n[http]\nurl = "/redirect/3"\nexpect = ["status == 200"]\n'),
    ("http-redirect-loop", 1, "http", "2s",
     '\n[http]\nurl = "/redirect-loop"\nmax_redirects = 5\n'),
    ("http-refused", 1, "http", "2s", '\n[http]\nurl = "http://127.0.0.1:{closed}/health"\n'),
    ("http-gzip", 1, "http", "2s",
     '\n[http]\nurl = "/gzip/4096"\nexpect = ["status == 200", "size(body) == 4096"]\n'),
    ("tcp", 1, "extra", "2s",
     '\n[tcp]\naddress = "{{ vars.sandbox_tcp }}"\nbanner = true\nsend = "soak\\n"\n'
     'expect = ["banner.startsWith(\'220 \')", "response == \'soak\'"]\n'),
    ("tls-ok", 1, "extra", "2s",
     '\n[tls]\naddress = "{{ vars.sandbox_tls }}"\nserver_name = "localhost"\n'
     'ca_file = "{{ vars.sandbox_ca_file }}"\nexpect = ["tls.days_left > 14"]\n'),
    ("tls-expired", 1, "extra", "2s",
     '\n[tls]\naddress = "{{ vars.sandbox_tls_expired }}"\nserver_name = "localhost"\n'
     'ca_file = "{{ vars.sandbox_ca_file }}"\n'),
    ("dns", 1, "extra", "2s",
     '\n[dns]\nserver = "{{ vars.sandbox_dns }}"\nname = "api.sandbox.test"\ntype = "A"\n'
     'expect = ["answers.exists(a, a.type == \'A\' && a.data == \'127.0.0.1\')"]\n'),
    ("dns-servfail", 1, "extra", "2s",
     '\n[dns]\nserver = "{{ vars.sandbox_dns }}"\nname = "servfail.sandbox.test"\n'),
    ("grpc-ok", 1, "extra", "2s",
     '\n[grpc]\naddress = "{{ vars.sandbox_grpc }}"\nservice = "orders"\n'),
    ("grpc-down", 1, "extra", "2s",
     '\n[grpc]\naddress = "{{ vars.sandbox_grpc }}"\nservice = "payments"\n'),
    ("flow", 1, "http", "4s",
     '\n[flow]\nteardown_timeout = "2s"\n'
     '\n[[flow.steps]]\nname = "create"\nmethod = "POST"\nurl = "/api/orders"\n'
     'json = { item = "{{ choice([\'widget\', \'gadget\']) }}", quantity = "{{ int(1, 5) }}" }\n'
     'expect = ["status == 201"]\ncapture = { order_id = "json.id" }\n'
     '\n[[flow.steps]]\nname = "wait-processed"\nurl = "/api/orders/{{ vars.order_id }}"\n'
     'until = "status == 200 && json.status == \'processed\'"\nuntil_interval = "100ms"\n'
     '\n[[flow.teardown]]\nname = "delete"\nmethod = "DELETE"\n'
     'url = "/api/orders/{{ vars.order_id }}"\nexpect = ["status == 204"]\n'),
    ("stream", 1, "http", "2s",
     '\n[stream]\nurl = "/events?count=3&interval_ms=20"\nmin_events = 3\nmax_gap = "500ms"\n'),
    ("websocket", 1, "http", "2s",
     '\n[websocket]\nurl = "/ws/echo"\nsend = [{ text = "soak {{ probe }}" }]\n'
     'expect = ["count == 1", "close.code == 1000"]\n'),
    ("command", 1, "http", "2s",
     '\n[command]\nprogram = "sh"\nargs = ["-c", \'printf "{\\"depth\\": %d}" 3\']\n'
     'expect = ["exit_code == 0", "json.depth < 100"]\n'),
]

WORKLOADS = [
    ("workload-http", "http", "2s",
     '\n[workload]\nrequests = 20\nrate = 20\nmax_concurrency = 10\n'
     '\n[http]\nurl = "/health"\n'),
    ("workload-flow", "http", "3s",
     '\n[workload]\nrequests = 10\nrate = 10\nmax_concurrency = 10\n'
     '\n[flow]\nteardown_timeout = "2s"\n'
     '\n[[flow.steps]]\nname = "create"\nmethod = "POST"\nurl = "/api/orders"\n'
     'json = { item = "gizmo", quantity = "{{ iteration % 5 + 1 }}" }\n'
     'expect = ["status == 201"]\ncapture = { order_id = "json.id" }\n'
     '\n[[flow.teardown]]\nname = "delete"\nmethod = "DELETE"\n'
     'url = "/api/orders/{{ vars.order_id }}"\nexpect = ["status == 204"]\n'),
]

# Keys whose probes fail on purpose (their alerts feed the outbox).
FAULTY = {"http-500", "http-slow", "http-stall", "http-redirect-loop", "http-refused",
          "tls-expired", "dns-servfail", "grpc-down"}


def write_config(d, listen, target, extra_env, hooks, closed):
    """config.toml and PROBES probe files; returns {kind: count}."""
    probes_dir = os.path.join(d, "probes")
    os.makedirs(probes_dir)
    extra = ""
    if extra_env is None:
        # `synthmon sandbox` did not print its other listeners: the kinds
        # that need them use the daemon's built-in sandbox.
        extra = '\n[environments.extra]\nbase_url = "builtin:sandbox"\n'
    with open(os.path.join(d, "config.toml"), "w") as f:
        f.write(
            f'[daemon]\nlisten = "{listen}"\nprobes = ["probes/*.toml"]\nstate_dir = "state"\n'
            'instance = "soak"\ndrain_timeout = "5s"\n\n'
            f'[environments.http]\nbase_url = "{target}"\n'
        )
        if extra_env is not None:
            pairs = ", ".join(f'{k} = "{v}"' for k, v in sorted(extra_env.items()))
            f.write(f"variables = {{ {pairs} }}\n")
        f.write(extra)
        f.write(
            '\n[alerting]\ngroup_wait = "2s"\ndefault_receivers = ["ok"]\n'
            f'\n[alerting.receivers.ok]\ntype = "webhook"\nurl = "{hooks}/ok"\ntimeout = "2s"\n'
            f'\n[alerting.receivers.flaky]\ntype = "webhook"\nurl = "{hooks}/flaky"\ntimeout = "2s"\n'
            '\n[[alerting.routes]]\nseverity = "critical"\nreceivers = ["flaky"]\ncontinue = true\n'
            '\n[[alerting.routes]]\nreceivers = ["ok"]\n'
        )
    envs = {"http": "http", "extra": "http" if extra_env is not None else "extra"}
    cycle = [k for k in KINDS for _ in range(k[1])]
    counts = {}
    for i in range(PROBES):
        every = 5 + (i * 7) % 11  # 5..15 s, spread
        if i < len(WORKLOADS):
            key, env, timeout, body = WORKLOADS[i]
            every = 15
            alert = ALERT
        else:
            key, _, env, timeout, body = cycle[i % len(cycle)]
            alert = FLAPPING if key == "http-flaky" else ALERT
        severity = "critical" if key in FAULTY and i % 2 else "warning"
        name = f"{key}-{i:03d}"
        text = header(name, every, envs[env], timeout, severity, key)
        text += body.replace("{closed}", str(closed)) + alert
        with open(os.path.join(probes_dir, f"{name}.toml"), "w") as f:
            f.write(text)
        counts[key] = counts.get(key, 0) + 1
    return counts


# --- sampling -------------------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def metric_sum(body, name, labels=""):
    """The sum of every sample of `name` whose label set contains `labels`."""
    total, found = 0.0, False
    for line in body.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        rest = line[len(name):]
        if not (rest.startswith(" ") or rest.startswith("{")) or labels not in rest:
            continue
        try:
            total += float(line.rsplit(" ", 1)[1])
            found = True
        except ValueError:
            pass
    return total if found else None


def sample(pid, metrics_url, t0):
    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        body = r.read().decode()
    tasks = metric_sum(body, "synthmon_runtime_tasks")
    if tasks is None:
        die("no synthmon_runtime_tasks on /metrics: this build predates the gauge")
    return {
        "t": time.monotonic() - t0,
        "rss": rss_kib(pid),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "tasks": tasks,
        "outbox": metric_sum(body, "synthmon_outbox_pending") or 0.0,
        "runs": metric_sum(body, "synthmon_runs_total") or 0.0,
        "failed": metric_sum(body, "synthmon_runs_total", 'result="failure"') or 0.0,
        "delivered": metric_sum(body, "synthmon_notifications_total", 'result="delivered"') or 0.0,
        "retried": metric_sum(body, "synthmon_notifications_total", 'result="retried"') or 0.0,
        "missed": metric_sum(body, "synthmon_missed_runs_total") or 0.0,
        "overlaps": metric_sum(body, "synthmon_skipped_overlaps_total") or 0.0,
        "cpu": cpu_seconds(pid),
    }


def window(samples, lo, hi):
    return [s for s in samples if lo <= s["t"] <= hi]


def slope_per_hour(samples, key):
    """Least-squares slope of `key` over time, per hour."""
    xs = [s["t"] / 3600 for s in samples]
    ys = [s[key] for s in samples]
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


# --- the run --------------------------------------------------------------

def start_sandbox(procs):
    """`synthmon sandbox` on an ephemeral port: (base URL, its other
    listeners' variables if it prints them, else None)."""
    proc = subprocess.Popen(
        [SYNTHMON, "sandbox", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=die_with_parent,
    )
    procs.append(proc)
    lines = []

    def read():
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()

    def parse():
        base, found = None, {}
        for line in list(lines):
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                base = m.group(1).rstrip("/")
            for name in SANDBOX_VARS:
                v = re.search(rf"\b{name}\b\s*[=:]?\s*\"?([^\s\"]+)", line)
                if v:
                    found[name] = v.group(1)
        return base, found

    deadline = time.monotonic() + 15
    base, found = parse()
    while not base and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        base, found = parse()
    if not base:
        die("synthmon sandbox did not print its address")
    # The other listeners may be printed after the base URL.
    deadline = time.monotonic() + 1
    while len(found) < len(SANDBOX_VARS) and time.monotonic() < deadline:
        time.sleep(0.1)
        base, found = parse()
    return base, (found if len(found) == len(SANDBOX_VARS) else None)


def main():
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    if minutes < 2:
        die("run at least 2 minutes (1 minute of warm-up, then the windows)")
    if not os.access(SYNTHMON, os.X_OK):
        die(f"no synthmon binary at {SYNTHMON}: build first (cargo build --release)")
    duration = minutes * 60
    warmup = max(60.0, 0.2 * duration)
    span = max(60.0, 0.1 * duration)
    span = min(span, (duration - warmup) / 2)

    procs = []
    hook_server = None
    tmp = tempfile.mkdtemp(prefix="synthmon-soak-")
    failed = True

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        target, extra_env = start_sandbox(procs)
        with urllib.request.urlopen(f"{target}/health", timeout=5):
            pass
        hook_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=hook_server.serve_forever, daemon=True).start()
        hooks = f"http://127.0.0.1:{hook_server.server_address[1]}"
        listen = f"127.0.0.1:{free_port()}"
        counts = write_config(tmp, listen, target, extra_env, hooks, free_port())

        env = dict(os.environ, NO_COLOR="1")
        env.setdefault("SYNTHMON_LOG", "synthmon=warn")
        log = open(os.path.join(tmp, "daemon.log"), "w")
        check = subprocess.run([SYNTHMON, "--config", os.path.join(tmp, "config.toml"), "check"],
                               capture_output=True, text=True, env=env, timeout=60)
        if check.returncode != 0:
            die(f"synthmon check refused the soak config:\n{check.stdout}{check.stderr}")
        daemon = subprocess.Popen(
            [SYNTHMON, "--config", os.path.join(tmp, "config.toml"), "--log-format", "json", "run"],
            stdout=log, stderr=log, env=env, preexec_fn=die_with_parent,
        )
        procs.append(daemon)
        metrics_url = f"http://{listen}/metrics"
        deadline = time.monotonic() + 30
        while True:
            if daemon.poll() is not None:
                die(f"the daemon exited with {daemon.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://{listen}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                die("the daemon was not ready within 30 s")
            time.sleep(0.2)

        mix = ", ".join(f"{k} {n}" for k, n in counts.items())
        say(f"# synthmon soak: {PROBES} probes every 5-15 s for {minutes:g} min, "
            f"{os.cpu_count()} CPUs, everything on 127.0.0.1")
        say(f"# target {target}; tcp/tls/grpc/dns "
            + ("on the same sandbox process" if extra_env is not None
               else "on the daemon's built-in sandbox (synthmon sandbox does not print them)"))
        say(f"# mix: {mix}")
        say(f"# warm-up {warmup:.0f} s; start/end = means of the {span:.0f} s after warm-up "
            f"and of the last {span:.0f} s; a sample every {SAMPLE:g} s ± 50%; work dir {tmp}")
        say(f"{'t':>6} {'RSS MiB':>8} {'fds':>5} {'tasks':>6} {'outbox':>6} {'runs':>8} "
            f"{'failed':>7} {'notified':>8} {'cpu %':>6}")

        t0 = time.monotonic()
        samples = []
        prev = None
        every = max(1, round(30 / SAMPLE))  # a progress line every ~30 s
        jitter = random.Random(7)
        while True:
            now = time.monotonic() - t0
            if daemon.poll() is not None:
                die(f"the daemon exited with {daemon.returncode} after {now:.0f} s; see {log.name}")
            s = sample(daemon.pid, metrics_url, t0)
            samples.append(s)
            if (len(samples) - 1) % every == 0 or s["t"] >= duration:
                cpu = 100 * (s["cpu"] - prev["cpu"]) / max(s["t"] - prev["t"], 1e-9) if prev else 0
                prev = s
                say(f"{s['t']:6.0f} {s['rss'] / 1024:8.1f} {s['fds']:5d} {s['tasks']:6.0f} "
                    f"{s['outbox']:6.0f} {s['runs']:8.0f} {s['failed']:7.0f} "
                    f"{s['delivered']:8.0f} {cpu:6.1f}")
            if s["t"] >= duration:
                break
            pause = jitter.uniform(0.5, 1.5) * SAMPLE
            time.sleep(max(0.0, min(pause, duration - (time.monotonic() - t0))))

        start = window(samples, warmup, warmup + span)
        end = window(samples, duration - span, duration + SAMPLE)
        after = window(samples, warmup, duration + SAMPLE)
        if not start or not end:
            die("too few samples: lower SOAK_SAMPLE or run longer")
        say("")
        if CSV:
            with open(CSV, "w") as f:
                f.write(",".join(samples[0]) + "\n")
                for x in samples:
                    f.write(",".join(f"{v:.3f}" if isinstance(v, float) else str(v)
                                     for v in x.values()) + "\n")
        if min(len(start), len(end)) < 20:
            say(f"(only {min(len(start), len(end))} samples per window: tasks and fds move by a few "
                "runs in flight, so a run this short judges them coarsely; soak 10 min or more)")
        say(f"| measure | start (mean, t={start[0]['t']:.0f}-{start[-1]['t']:.0f} s) "
            f"| end (mean, t={end[0]['t']:.0f}-{end[-1]['t']:.0f} s) | growth | slope per hour "
            "| max after warm-up | verdict |")
        say("|---|---|---|---|---|---|---|")
        verdicts = []
        for key, label, scale, fmt in [("rss", "RSS (MiB)", 1 / 1024, "{:.1f}"),
                                       ("fds", "open fds", 1, "{:.1f}"),
                                       ("tasks", "tokio tasks", 1, "{:.1f}")]:
            a = statistics.fmean(x[key] for x in start)
            b = statistics.fmean(x[key] for x in end)
            growth = 100 * (b - a) / a if a else 0.0
            trend = 100 * slope_per_hour(after, key) / a if a else 0.0
            peak = max(x[key] for x in after)
            ok = growth < LIMIT
            verdicts.append(ok)
            say(f"| {label} | {fmt.format(a * scale)} | {fmt.format(b * scale)} | {growth:+.1f}% "
                f"| {trend:+.1f}% | {fmt.format(peak * scale)} | {'PASS' if ok else 'FAIL'} |")
        a = statistics.fmean(x["outbox"] for x in start)
        b = statistics.fmean(x["outbox"] for x in end)
        peak = max(x["outbox"] for x in after)
        ok = b <= OUTBOX_BOUND
        verdicts.append(ok)
        say(f"| outbox pending | {a:.1f} | {b:.1f} | bounded (≤ {OUTBOX_BOUND}) | — | {peak:.0f} "
            f"| {'PASS' if ok else 'FAIL'} |")
        last, first = samples[-1], samples[0]
        elapsed = max(last["t"] - first["t"], 1e-9)
        cpu = 100 * (last["cpu"] - first["cpu"]) / elapsed
        hooks_seen = ", ".join(f"{p} {c}: {n}" for (p, c), n in sorted(Hook.counts.items()))
        say("")
        say(f"probe runs: {last['runs']:.0f} ({last['runs'] / last['t']:.1f}/s), failed "
            f"{last['failed']:.0f} ({100 * last['failed'] / max(last['runs'], 1):.0f}%), "
            f"missed slots {last['missed']:.0f}, skipped overlaps {last['overlaps']:.0f}")
        say(f"notifications: delivered {last['delivered']:.0f}, retried {last['retried']:.0f}; "
            f"webhook requests {hooks_seen or 'none'}")
        say(f"daemon CPU: {cpu:.1f}% of one core on average")
        failed = not all(verdicts)
        say(f"soak: {'FAIL' if failed else 'PASS'} (growth < {LIMIT:g}% for RSS, fds and tasks; "
            f"outbox ≤ {OUTBOX_BOUND})")
    finally:
        # The daemon first (it drains its runs), then the sandbox (which
        # stops on SIGINT).
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM if p is not procs[0] else signal.SIGINT)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if hook_server is not None:
            hook_server.shutdown()
        if KEEP or failed:
            print(f"soak: work dir kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
