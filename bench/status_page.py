#!/usr/bin/env python3
"""Bench phase: how long the daemon takes to serve its status page, `/`,
with 1,000 probes and a month of history.

    python3 bench/status_page.py [PATH-TO-SYNTHMON]   (default target/release/synthmon)

1. A daemon with N = 1000 HTTP probes against the built-in sandbox (each
   every 10 s, one in 50 failing, one in 10 with an SLO) runs for
   SEED_SECONDS so every pair has runs, minute rows and latency snapshots
   written by synthmon itself; then it is stopped.
2. The history is aged to what a month of that daemon leaves (python's
   sqlite3, the daemon stopped): for every pair, an hour row per hour of
   the last 30 days and a minute row per minute of the last 25 hours,
   each a copy of one of the pair's own stored minutes (its counts and
   latency snapshot, scaled to the hour), the roll-up mark set so the
   writer has nothing to redo. Older minutes and runs are not added: no
   query of the page reads them.
3. The daemon starts again on that history (probing on: 100 runs/s) and
   `/` is fetched with curl: once cold (the first request computes the
   uptimes and sparklines the page then keeps), 20 times back to back, and
   20 times 2 s apart (so the kept figures' background refresh runs during
   them). Reported: curl's time_starttransfer (the page is rendered before
   its first byte leaves: server time plus loopback), median and p95 of
   each series, the page's size plain and gzipped, and, for comparison,
   the same for `/api/v1/probes` (which reads every uptime on every
   request) and one pair's detail page.

The issue's target: `/` in at most 100 ms with 1,000 probes (server
time). Everything listens on 127.0.0.1 and every wait has a deadline.
"""

import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PROBES = 1000
INTERVAL_S = 10
SEED_SECONDS = 40
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what, pred, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"status_page: timed out waiting for {what}")


def _get(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _write_config(d, port):
    with open(os.path.join(d, "config.toml"), "w") as f:
        f.write(
            f'[daemon]\nlisten = "127.0.0.1:{port}"\nstate_dir = "state"\n'
            'probes = ["probes/*.toml"]\nmax_concurrent_runs = 256\n'
            '[environments.sandbox]\nbase_url = "builtin:sandbox"\n'
        )
    os.makedirs(os.path.join(d, "probes"), exist_ok=True)
    for i in range(PROBES):
        url = "/status/500" if i % 50 == 7 else "/health"
        slo = 'slo = { objective = "99%" }\n' if i % 10 == 3 else ""
        with open(os.path.join(d, "probes", f"p{i:04}.toml"), "w") as f:
            f.write(
                f'name = "p{i:04}"\nschedule = "every {INTERVAL_S}s"\ntimeout = "5s"\n'
                f'environments = ["sandbox"]\ntags = ["team-{i % 8}"]\n{slo}'
                f'[http]\nurl = "{url}"\n'
            )


def _start(binary, d, port):
    log = open(os.path.join(d, "daemon.log"), "ab")
    # The page logs each computation of its kept figures at debug level.
    env = dict(os.environ, SYNTHMON_LOG="info,synthmon::daemon::page=debug")
    p = subprocess.Popen(
        [binary, "--config", os.path.join(d, "config.toml"), "--log-format", "json"],
        cwd=d,
        stdout=log,
        stderr=log,
        env=env,
    )
    _wait("the daemon's /readyz", lambda: _get(f"http://127.0.0.1:{port}/readyz", 2), 60)
    return p


def _stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _age(path):
    """Adds a month of hour rows and 25 hours of minute rows per pair."""
    now_ms = int(time.time() * 1000)
    now_hour = now_ms // HOUR_MS
    now_min = now_ms // MINUTE_MS
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    samples = {}
    for series, runs, failed, degraded, hist in db.execute(
        "SELECT m.series, m.runs, m.failed, m.degraded, m.hist FROM minutes m "
        "JOIN series s ON s.id = m.series WHERE s.step = '' AND m.runs > 0 "
        "ORDER BY m.minute"
    ):
        if hist is not None or series not in samples:
            samples[series] = (runs, failed, degraded, hist)
    hours, minutes = [], []
    for series, (runs, failed, degraded, hist) in samples.items():
        # A minute of this pair holds ~60 / INTERVAL_S runs.
        per_min = max(1, 60 // INTERVAL_S)
        r, f, g = per_min, per_min if failed else 0, 0
        for h in range(now_hour - 30 * 24, now_hour):
            hours.append((series, h, r * 60, f * 60, g, hist))
        for m in range(now_min - 25 * 60, now_min - 1):
            minutes.append((series, m, r, f, g, hist))
    with db:
        db.executemany(
            "INSERT OR REPLACE INTO hours (series, hour, runs, failed, degraded, hist) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            hours,
        )
        db.executemany(
            "INSERT OR IGNORE INTO minutes (series, minute, runs, failed, degraded, hist) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            minutes,
        )
        db.execute(
            "INSERT OR REPLACE INTO marks (name, value) VALUES ('rolled_to', ?)", (now_hour,)
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return len(samples), len(hours), len(minutes)


def _curl(url, compressed=False):
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer} %{size_download}", "--max-time", "60"]
    if compressed:
        args.append("--compressed")
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=90).stdout.split()
    if not out or out[0] != "200":
        sys.exit(f"status_page: GET {url} answered {out}")
    return float(out[1]) * 1000.0, int(out[2])


def _series(url, n, gap=0.0):
    times = []
    for _ in range(n):
        t, _ = _curl(url)
        times.append(t)
        time.sleep(gap)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
    return statistics.median(times), p95, times[-1]


def _ms(debug):
    """A Rust `Duration`'s Debug text (`12.3ms`, `1.2s`, `950µs`) in ms."""
    text = str(debug)
    for unit, scale in (("ms", 1.0), ("µs", 1e-3), ("ns", 1e-6), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float("nan")


def report(binary):
    """Runs the phase, prints it; returns its figures (times in ms)."""
    fig = {"probes": PROBES}
    with tempfile.TemporaryDirectory() as d:
        port = _free_port()
        _write_config(d, port)
        print(f"status page: {PROBES} probes every {INTERVAL_S}s; seeding the history for {SEED_SECONDS}s")
        p = _start(binary, d, port)
        time.sleep(SEED_SECONDS)
        _stop(p)
        pairs, hours, minutes = _age(os.path.join(d, "state", "history.sqlite"))
        size = sum(
            os.path.getsize(os.path.join(d, "state", f))
            for f in os.listdir(os.path.join(d, "state"))
            if f.startswith("history.sqlite")
        )
        print(
            f"  aged: {pairs} pairs, {hours:,} hour rows (30 days), {minutes:,} minute rows (25 h); "
            f"history.sqlite {size / 2**20:.0f} MiB"
        )
        fig["history_mib"] = size / 2**20
        p = _start(binary, d, port)
        try:
            base = f"http://127.0.0.1:{port}"
            cold, plain = _curl(base + "/")
            _, gz = _curl(base + "/", compressed=True)
            print(f"  /: cold (computes every uptime and sparkline) {cold:.0f} ms; "
                  f"{plain / 1024:.0f} KiB, {gz / 1024:.0f} KiB gzipped")
            fig.update(cold_ms=cold, page_kib=plain / 1024, page_gzip_kib=gz / 1024)
            med, p95, worst = _series(base + "/", 20)
            fig.update(median_ms=med, p95_ms=p95, max_ms=worst)
            print(f"  /: 20 back to back: median {med:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms")
            med, p95, worst = _series(base + "/", 20, gap=2.0)
            print(f"  /: 20 at 2 s intervals (background refreshes among them): "
                  f"median {med:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms")
            fig.update(refreshing_median_ms=med, refreshing_p95_ms=p95, refreshing_max_ms=worst)
            med, p95, worst = _series(base + "/?state=failing", 10)
            print(f"  /?state=failing: median {med:.1f} ms, p95 {p95:.1f} ms")
            fig.update(failing_median_ms=med, failing_p95_ms=p95)
            med, p95, worst = _series(base + "/probes/p0003/sandbox", 10)
            print(f"  /probes/p0003/sandbox (24 h chart, 30 days of changes): median {med:.1f} ms, p95 {p95:.1f} ms")
            fig.update(detail_median_ms=med, detail_p95_ms=p95)
            med, p95, worst = _series(base + "/api/v1/probes", 5)
            print(f"  /api/v1/probes (every uptime read per request), for comparison: "
                  f"median {med:.0f} ms, p95 {p95:.0f} ms")
            fig.update(api_median_ms=med, api_p95_ms=p95)
        finally:
            _stop(p)
        took, served = [], []
        with open(os.path.join(d, "daemon.log"), errors="replace") as f:
            for line in f:
                if "status page" not in line:
                    continue
                fields = json.loads(line).get("fields", {})
                if fields.get("message") == "status page figures computed":
                    took.append(f'{fields.get("took")} (uptimes {fields.get("uptimes")})')
                elif fields.get("message") == "status page served" and fields.get("pairs") == PROBES:
                    served.append((_ms(fields.get("read")), _ms(fields.get("render"))))
        print(f"  kept figures computed {len(took)} times: " + ", ".join(took))
        if served:
            print(f"  inside the daemon, the {len(served)} whole pages: reading median "
                  f"{statistics.median(r for r, _ in served):.1f} ms, rendering median "
                  f"{statistics.median(r for _, r in served):.1f} ms")
            fig.update(read_median_ms=statistics.median(r for r, _ in served),
                       render_median_ms=statistics.median(r for _, r in served))
    return fig


if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(root, "target", "release", "synthmon")
    if not os.access(binary, os.X_OK):
        sys.exit(f"status_page: no synthmon binary at {binary} (cargo build --release)")
    report(binary)
