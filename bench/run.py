#!/usr/bin/env python3
"""synthmon benchmark: load generation and probe cost, as ratios against
peers measured in the same run on the same machine.

    bash bench/run.sh            (installs wrk and blackbox_exporter if missing)

Everything runs on 127.0.0.1 against synthmon's own sandbox target, and
every phase is bounded in time. Figures are reported as ratios to the peer
measured seconds earlier under the same conditions, never as absolute
times: absolute numbers say more about the machine than about the tool.

Phases:
  1. HTTP load generation on fresh connections: wrk (Connection: close)
     vs a synthmon workload against the sandbox's /health. Both open a TCP
     connection per request, as a synthetic probe does.
  2. The same with JSON POSTs to the sandbox's /echo: wrk sends one static
     order body, synthmon generates all seven fields of every body from
     seeded templates (the cost of synthetic payloads).
  3. Probe cost: blackbox_exporter driven by wrk through /probe (each call
     is one HTTP probe of /health) vs synthmon's workload, as CPU time per
     probe (utime + stime from /proc) and peak RSS.
  4. /metrics size and histogram_quantile error (bench/metrics_size.py).
  5. Keep-alive load generation against wrk's defaults (bench/keepalive.py).
  6. The status page's server time at 1,000 probes (bench/status_page.py).
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# BENCH_SYNTHMON picks another build (e.g. an older commit's, to compare
# two versions against the same peers on the same machine).
SYNTHMON = os.environ.get("BENCH_SYNTHMON") or os.path.join(ROOT, "target", "release", "synthmon")
SANDBOX = "127.0.0.1:18181"
BLACKBOX = "127.0.0.1:19115"
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
TICKS = os.sysconf("SC_CLK_TCK")


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


def wait_http(url, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return
        except OSError:
            time.sleep(0.1)
    die(f"{url} did not come up within {seconds}s")


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def wrk(url, seconds, headers=(), script=None):
    args = ["wrk", "-t", "2", "-c", str(CONCURRENCY), "-d", f"{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 30)
    if out.returncode != 0:
        die(f"wrk failed: {out.stderr}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    socket_errors = re.search(r"Socket errors: (.*)", out.stdout)
    if not m:
        die(f"cannot read wrk's output:\n{out.stdout}")
    return float(m.group(1)), out.stdout, (errors.group(1) if errors else "0"), (
        socket_errors.group(1) if socket_errors else "none"
    )


# The body both tools POST in phase 3: wrk sends it as is, synthmon generates
# every field per request from seeded templates.
STATIC_ORDER = ('{"item": "widget", "quantity": 3, "customer": "Ada Lovelace", '
                '"email": "ada@example.test", "priority": "standard", "currency": "EUR", '
                '"ref": "synth-0123456789abcdef"}')
TEMPLATED_ORDER = (
    'method = "POST"\nurl = "/echo"\n'
    'json = { item = "{{ choice([\'widget\', \'gadget\', \'gizmo\']) }}", '
    'quantity = "{{ zipf(10, 1.2) }}", customer = "{{ name() }}", email = "{{ email() }}", '
    'priority = "{{ weighted({\'standard\': 9, \'express\': 1}) }}", '
    'currency = "{{ choice([\'EUR\', \'GBP\', \'USD\']) }}", ref = "{{ synthetic_id() }}" }\n'
)


def synthmon_workload(rate, seconds, http='url = "/health"\n'):
    """Runs a synthmon --once workload; returns (achieved ok/s, cpu s, peak RSS KiB, facts)."""
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "probes"))
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(
                '[daemon]\nprobes = ["probes/*.toml"]\n\n'
                f'[environments.bench]\nbase_url = "http://{SANDBOX}"\n'
            )
        with open(os.path.join(d, "probes", "load.toml"), "w") as f:
            f.write(
                'name = "load"\nenvironments = ["bench"]\nschedule = "every 1h"\n'
                'timeout = "5s"\n\n[workload]\n'
                f"duration = \"{seconds}s\"\nrate = {rate}\nmax_concurrency = {CONCURRENCY}\n\n"
                '[http]\n' + http
            )
        proc = subprocess.Popen(
            [SYNTHMON, "--config", os.path.join(d, "config.toml"), "--once", "--output", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        cpu, rss = 0.0, 0
        while proc.poll() is None:
            try:
                cpu = cpu_seconds(proc.pid)
                rss = max(rss, peak_rss_kib(proc.pid))
            except OSError:
                pass
            time.sleep(0.05)
        out, err = proc.communicate(timeout=seconds + 60)
        try:
            report = json.loads(out)
        except json.JSONDecodeError:
            die(f"synthmon did not print a JSON report:\n{out}\n{err}")
        result = report["results"][0]
        w = result["workload"]
        return w["ok"] / max(result["duration"], 1e-9), cpu, rss, w


def main():
    if not os.path.exists(SYNTHMON):
        die("build first: cargo build --release")
    for tool in ("wrk", "prometheus-blackbox-exporter"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            die(f"{tool} is missing (bench/run.sh installs it)")
    procs = []
    try:
        sandbox = subprocess.Popen(
            [SYNTHMON, "sandbox", "--listen", SANDBOX],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(sandbox)
        wait_http(f"http://{SANDBOX}/health")
        tmp = tempfile.mkdtemp()
        bb_config = os.path.join(tmp, "blackbox.yml")
        with open(bb_config, "w") as f:
            f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
        blackbox = subprocess.Popen(
            ["prometheus-blackbox-exporter", f"--config.file={bb_config}",
             f"--web.listen-address={BLACKBOX}", "--log.level=error"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(blackbox)
        wait_http(f"http://{BLACKBOX}/metrics")

        print(f"# synthmon benchmark ({SECONDS}s per phase, {CONCURRENCY} connections, "
              f"{os.cpu_count()} CPUs; everything on 127.0.0.1)\n")

        # 1. Load generation on fresh connections.
        wrk_rps, _, wrk_errors, wrk_sock = wrk(
            f"http://{SANDBOX}/health", SECONDS, headers=["Connection: close"]
        )
        # Ask for more than wrk managed, so the cap (not the rate) limits.
        rate = max(100, int(wrk_rps * 1.5))
        sm_rps, sm_cpu, sm_rss, facts = synthmon_workload(rate, SECONDS)

        # 2. The same on POSTs of an order body: static for wrk, generated
        # per request (seven templated fields) for synthmon.
        lua = os.path.join(tmp, "post.lua")
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\n'
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = '{STATIC_ORDER}'\n")
        post_rps, _, post_errors, _ = wrk(
            f"http://{SANDBOX}/echo", SECONDS, headers=["Connection: close"], script=lua
        )
        post_rate = max(100, int(post_rps * 1.5))
        sm_post_rps, _, _, post_facts = synthmon_workload(post_rate, SECONDS, TEMPLATED_ORDER)

        # 3. Probe cost against blackbox_exporter driven through /probe.
        target = f"http://{BLACKBOX}/probe?module=http_2xx&target=http%3A%2F%2F{SANDBOX}%2Fhealth"
        bb_cpu0 = cpu_seconds(blackbox.pid)
        bb_rps, _, bb_errors, _ = wrk(target, SECONDS)
        bb_cpu = cpu_seconds(blackbox.pid) - bb_cpu0
        bb_rss = peak_rss_kib(blackbox.pid)
        bb_probes = bb_rps * SECONDS
        bb_cpu_per_probe = bb_cpu / max(bb_probes, 1)
        sm_cpu_per_probe = sm_cpu / max(facts["ok"], 1)

        rows = [
            ("HTTP requests/s on fresh connections", "wrk -H 'Connection: close'",
             f"{sm_rps / wrk_rps:.2f}×"),
            ("JSON POSTs/s, synthmon generating each body", "wrk posting a static body",
             f"{sm_post_rps / post_rps:.2f}×"),
            ("probes/s (one HTTP check each)", "blackbox_exporter via /probe",
             f"{sm_rps / bb_rps:.2f}×"),
            ("CPU time per probe (lower is better)", "blackbox_exporter",
             f"{sm_cpu_per_probe / bb_cpu_per_probe:.2f}×"),
            ("peak RSS (lower is better)", "blackbox_exporter",
             f"{sm_rss / max(bb_rss, 1):.2f}×"),
        ]
        print("| measure | peer | synthmon ÷ peer |")
        print("|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} |")
        print()
        print(f"synthmon workload: asked {rate}/s for {SECONDS}s; sent {facts['sent']}, "
              f"dropped at the cap {facts['dropped']}, failed {facts['failed']}")
        print(f"synthmon POST workload: sent {post_facts['sent']}, dropped "
              f"{post_facts['dropped']}, failed {post_facts['failed']}; wrk POST non-2xx: {post_errors}")
        print(f"wrk non-2xx: {wrk_errors}, socket errors: {wrk_sock}; "
              f"blackbox /probe non-2xx: {bb_errors}")
        print("(synthmon measures latency from the intended send time and keeps "
              "per-request samples; wrk measures from the actual send.)")
        __import__("metrics_size").report(SYNTHMON)  # 4. /metrics size, p95 error (bench/metrics_size.py)
        __import__("keepalive").run(SYNTHMON, f"http://{SANDBOX}", SECONDS, CONCURRENCY)  # 5. keep-alive (bench/keepalive.py)
        __import__("status_page").report(SYNTHMON)  # 6. status page at 1,000 probes (bench/status_page.py)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
