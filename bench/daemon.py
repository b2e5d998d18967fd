#!/usr/bin/env python3
"""Bench phase: the daemon's cost per scheduled probe, its memory, its
schedule lag, and how true its timings are, each against a peer measured
in the same sitting where there is one.

    python3 bench/daemon.py [PATH-TO-SYNTHMON]    (or through bench/run.py)

Alone, it starts its own `synthmon sandbox` and blackbox_exporter (on
ephemeral loopback ports) and measures blackbox's cost per probe with wrk
for a few seconds; through run.py it uses run.py's and phase 3's.

Every daemon runs `synthmon run` on a temporary config (its state
directory in the same temporary directory) with HTTP probes of the
standalone sandbox's /health, one file per probe (the style of
metrics_size.py and status_page.py), default settings otherwise:

  - cpu(): 1,000 probes every 1 s (1,000 runs/s). After WARM_S, utime +
    stime over WINDOW_S divided by the runs completed in that span
    (`synthmon_runs_total` scraped before and after); its VmRSS at the end;
    `synthmon_schedule_lag_seconds` between the two scrapes: p99 by
    histogram_quantile() and the share of runs within 1 ms.
  - small(): 10 probes every 1 s, VmRSS after SMALL_S.
  - large(): 10,000 probes every 60 s (slots spread over the minute),
    VmRSS once every pair has run once (or LARGE_DEADLINE_S).
  - timing(): p50 of the sandbox's /delay/50 (it answers after 50 ms) on
    fresh connections, one at a time, as each tool times a request, in
    TIMING_REPS alternating rounds (medians of the rounds):
      wrk -c1 -t1 with `Connection: close`: from just before its write of
        the request (the connection already up) to the response's last
        byte, parsed;
      a synthmon --once workload at TIMING_RATE/s (one request in flight
        at a time, as wrk's): its `service` p50, from just before the
        request's first write to the arrival of the response's last byte
        (the row's figure, like wrk's); beside it, the `latency` p50 that
        thresholds judge, from each request's intended send time (so with
        the sender's lag, up to ~1 ms of timer tick, and the connect);
      blackbox_exporter over sequential /probe calls: its processing +
        transfer phases (from Go's connection being ready, before the
        write, to the body's end: the peer figure), and
        probe_duration_seconds (the whole probe, connect included).

Everything listens on 127.0.0.1 and every wait has a deadline.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

WARM_S = 5
WINDOW_S = 10
CPU_PROBES = 1000
SMALL_PROBES = 10
SMALL_S = 10
LARGE_PROBES = 10_000
LARGE_DEADLINE_S = 75
LAG_TARGET_S = 0.001
DELAY_MS = 50
TIMING_S = 6
# 10/s: a request every 100 ms, each answered (~51 ms) before the next
# leaves, one at a time as wrk's; at 20/s they overlapped the target's
# timers and its answers were bimodal.
TIMING_RATE = 10
TIMING_REPS = 3
BLACKBOX_CALLS = 30


class Daemon:
    """`synthmon run` with N HTTP probes of the sandbox's /health, in a
    temporary directory that holds the config, probes, state and log."""

    def __init__(self, binary, sandbox, probes, schedule, timeout):
        self.binary, self.sandbox = binary, sandbox
        self.probes, self.schedule, self.timeout = probes, schedule, timeout
        self.proc = None
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-daemon-")
        self.dir = self.tmp.name

    def _write(self, port):
        with open(os.path.join(self.dir, "config.toml"), "w") as f:
            f.write(
                f'[daemon]\nlisten = "127.0.0.1:{port}"\n'
                f'state_dir = "{os.path.join(self.dir, "state")}"\n'
                'probes = ["probes/*.toml"]\n\n'
                f'[environments.bench]\nbase_url = "http://{self.sandbox}"\n'
            )
        probes = os.path.join(self.dir, "probes")
        if os.path.isdir(probes):
            return
        os.makedirs(probes)
        for i in range(self.probes):
            with open(os.path.join(probes, f"p{i:05d}.toml"), "w") as f:
                f.write(
                    f'name = "health-{i:05d}"\nschedule = "{self.schedule}"\n'
                    f'timeout = "{self.timeout}"\nenvironments = ["bench"]\n'
                    '[http]\nurl = "/health"\n'
                )

    def __enter__(self):
        t = time.monotonic()
        for _ in range(3):
            port = common.free_port()
            self._write(port)
            self.url = f"http://127.0.0.1:{port}"
            self.log = open(os.path.join(self.dir, "daemon.log"), "ab")
            self.proc = common.spawn(
                [self.binary, "run", "--config", os.path.join(self.dir, "config.toml"),
                 "--log-format", "json"],
                cwd=self.dir, stdout=self.log, stderr=self.log,
            )
            try:
                common.wait_http(self.url + "/readyz", 60, self.proc)
                self.started = time.monotonic()
                self.setup_s = self.started - t  # probe files written, config loaded, armed
                return self
            except RuntimeError:
                common.stop(self.proc)
                self.log.close()
        raise RuntimeError(f"the daemon did not start:\n{self.log_tail()}")

    def __exit__(self, *exc):
        common.stop(self.proc, timeout=30)
        self.log.close()
        self.tmp.cleanup()

    def log_tail(self, n=2000):
        try:
            with open(os.path.join(self.dir, "daemon.log"), errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {self.proc.returncode}:\n{self.log_tail()}")

    def scrape(self):
        """(/metrics text, monotonic time at the middle of the scrape)."""
        self.alive()
        t0 = time.monotonic()
        # As Prometheus scrapes: gzip accepted.
        text = common.get(self.url + "/metrics", timeout=60, gzipped=True)
        return text, (t0 + time.monotonic()) / 2

    def runs(self, text):
        return common.metric_sum(text, "synthmon_runs_total") or 0.0


def _lag(before, after):
    """The schedule-lag histogram between two scrapes: [(le, count)]."""
    b0 = dict(common.buckets(before, "synthmon_schedule_lag_seconds"))
    return [(le, c - b0.get(le, 0.0))
            for le, c in common.buckets(after, "synthmon_schedule_lag_seconds")]


def cpu(binary, sandbox):
    """1,000 probes every 1 s: CPU per run, VmRSS, schedule lag."""
    with Daemon(binary, sandbox, CPU_PROBES, "every 1s", "500ms") as d:
        time.sleep(WARM_S)
        m0, t0 = d.scrape()
        c0, w0 = common.cpu_seconds(d.proc.pid), time.monotonic()
        time.sleep(WINDOW_S)
        c1, w1 = common.cpu_seconds(d.proc.pid), time.monotonic()
        m1, t1 = d.scrape()
        rss = common.rss_kib(d.proc.pid)
        hwm = common.peak_rss_kib(d.proc.pid)
    runs = d.runs(m1) - d.runs(m0)
    # The scrapes fall just outside the CPU window: count the runs of the
    # window at the rate between the scrapes.
    rate = runs / max(t1 - t0, 1e-9)
    in_window = rate * (w1 - w0)
    lag = _lag(m0, m1)
    total = lag[-1][1] if lag else 0.0
    within = next((c for le, c in lag if abs(le - LAG_TARGET_S) < 1e-12), None)
    p99 = common.histogram_quantile(0.99, lag)
    failed = (common.metric_sum(m1, "synthmon_runs_total", 'result="failure"') or 0) - (
        common.metric_sum(m0, "synthmon_runs_total", 'result="failure"') or 0)
    return {
        "probes": CPU_PROBES,
        "runs": runs,
        "runs_per_s": rate,
        "failed_runs": failed,
        "cpu_seconds": c1 - c0,
        "cpu_per_run_s": (c1 - c0) / max(in_window, 1),
        "cpu_share_of_one_core": (c1 - c0) / max(w1 - w0, 1e-9),
        "rss_kib": rss,
        "peak_rss_kib": hwm,
        "lag_buckets": [["+Inf" if le == float("inf") else le, c] for le, c in lag],
        "lag_runs": total,
        "lag_p99_s": p99,
        "lag_within_1ms": (within / total) if within is not None and total else None,
        "lag_target_met": (within is not None and total > 0 and within >= 0.99 * total),
        "skipped_overlaps": common.metric_sum(m1, "synthmon_skipped_overlaps_total"),
        "missed_runs": common.metric_sum(m1, "synthmon_missed_runs_total"),
    }


def small(binary, sandbox):
    """10 probes every 1 s: VmRSS after SMALL_S (scraped at its middle and end)."""
    with Daemon(binary, sandbox, SMALL_PROBES, "every 1s", "500ms") as d:
        time.sleep(SMALL_S / 2)
        d.scrape()
        time.sleep(max(0.0, d.started + SMALL_S - time.monotonic()))
        m, _ = d.scrape()
        return {"probes": SMALL_PROBES, "seconds": SMALL_S, "runs": d.runs(m),
                "rss_kib": common.rss_kib(d.proc.pid),
                "peak_rss_kib": common.peak_rss_kib(d.proc.pid)}


def _history_runs(path):
    """Runs in the daemon's history (read-only, without touching the daemon)."""
    import sqlite3
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT count(*) FROM runs").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def large(binary, sandbox):
    """10,000 probes every 60 s: VmRSS once all have run once. Progress is
    read from the history file, not /metrics, so that waiting does not
    render a 10,000-probe scrape every second; one scrape at the end (its
    VmRSS before and after it both reported)."""
    with Daemon(binary, sandbox, LARGE_PROBES, "every 60s", "5s") as d:
        history = os.path.join(d.dir, "state", "history.sqlite")
        deadline = d.started + LARGE_DEADLINE_S
        stored = 0
        while time.monotonic() < deadline:
            d.alive()
            stored = _history_runs(history)
            if stored >= LARGE_PROBES:
                break
            time.sleep(2)
        before = common.rss_kib(d.proc.pid)
        m, _ = d.scrape()
        after = common.rss_kib(d.proc.pid)
        return {"probes": LARGE_PROBES, "setup_s": d.setup_s,
                "seconds": time.monotonic() - d.started,
                "runs_stored": stored, "runs": d.runs(m),
                "rss_kib_before_scrape": before, "rss_kib": after,
                "metrics_bytes": len(m.encode()),
                "peak_rss_kib": common.peak_rss_kib(d.proc.pid)}


def _once_workload(binary, sandbox, path, rate, seconds):
    with tempfile.TemporaryDirectory(prefix="bench-once-") as d:
        os.makedirs(os.path.join(d, "probes"))
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write('[daemon]\nprobes = ["probes/*.toml"]\n\n'
                    f'[environments.bench]\nbase_url = "http://{sandbox}"\n')
        with open(os.path.join(d, "probes", "delay.toml"), "w") as f:
            f.write('name = "delay"\nenvironments = ["bench"]\nschedule = "every 1h"\n'
                    f'timeout = "5s"\n\n[workload]\nduration = "{seconds}s"\nrate = {rate}\n'
                    f'max_concurrency = 8\n\n[http]\nurl = "{path}"\n')
        out = subprocess.run(
            [binary, "--config", os.path.join(d, "config.toml"), "--once", "--output", "json"],
            capture_output=True, text=True, timeout=seconds + 60)
    try:
        return json.loads(out.stdout)["results"][0]
    except (json.JSONDecodeError, KeyError, IndexError):
        raise RuntimeError(f"synthmon --once printed no JSON report:\n{out.stdout}\n{out.stderr}")


def _timing_round(binary, sandbox, blackbox, path):
    """One round of timing(): each tool's figures, in ms."""
    w = common.wrk(f"http://{sandbox}{path}", TIMING_S, 1, threads=1,
                   headers=["Connection: close"])
    result = _once_workload(binary, sandbox, path, TIMING_RATE, TIMING_S)
    service = result["workload"].get("service")
    if not service:
        raise RuntimeError("the synthmon workload reported no service time")
    durations, phases, served = [], [], []
    url = common.probe_url(blackbox, f"http://{sandbox}{path}")
    for _ in range(BLACKBOX_CALLS):
        text = common.get(url)
        durations.append(common.metric_sum(text, "probe_duration_seconds"))
        phases.append(common.metric_sum(text, "probe_http_duration_seconds"))
        served.append(sum(common.metric_sum(text, "probe_http_duration_seconds", f'phase="{p}"') or 0
                          for p in ("processing", "transfer")))
    return {
        "wrk_p50_ms": w["p50_ms"],
        "wrk_requests": w["requests"],
        "synthmon_service_p50_ms": service["p50"] * 1000,
        "synthmon_latency_p50_ms": result["latency"]["p50"] * 1000,
        "synthmon_requests": result["workload"]["sent"],
        "synthmon_failed": result["workload"]["failed"],
        "synthmon_max_lag_ms": (result["workload"].get("max_lag") or 0) * 1000,
        "blackbox_service_p50_ms": statistics.median(served) * 1000,
        "blackbox_p50_ms": statistics.median(durations) * 1000,
        "blackbox_phases_p50_ms": statistics.median(phases) * 1000,
    }


def timing(binary, sandbox, blackbox):
    """p50 of /delay/50 as wrk, synthmon and blackbox_exporter time it (see
    the module's docstring): the median over TIMING_REPS rounds of each
    figure and of each difference from the same round's wrk."""
    path = f"/delay/{DELAY_MS}"
    rounds = [_timing_round(binary, sandbox, blackbox, path) for _ in range(TIMING_REPS)]

    def med(f):
        return statistics.median(f(r) for r in rounds)

    out = {key: med(lambda r, k=key: r[k]) for key in rounds[0]}
    out.update({
        "delay_ms": DELAY_MS,
        "rate": TIMING_RATE,
        "rounds": rounds,
        "blackbox_calls": BLACKBOX_CALLS,
        # The row: what wrk measures (write to last byte) against the same.
        "synthmon_minus_wrk_ms": med(lambda r: r["synthmon_service_p50_ms"] - r["wrk_p50_ms"]),
        "blackbox_minus_wrk_ms": med(lambda r: r["blackbox_service_p50_ms"] - r["wrk_p50_ms"]),
        # Informative: the figures that also count the connection (and
        # synthmon's lag behind its intended send times).
        "synthmon_latency_minus_wrk_ms": med(lambda r: r["synthmon_latency_p50_ms"] - r["wrk_p50_ms"]),
        "blackbox_duration_minus_wrk_ms": med(lambda r: r["blackbox_p50_ms"] - r["wrk_p50_ms"]),
        "measures": {
            "wrk": "from before its write of the request (connection up) to the response's last byte",
            "synthmon_service": "workload `service`: from before the request's first write to the arrival "
                                "of the response's last byte (no connect)",
            "synthmon_latency": "workload `latency`: from the request's intended send time (sender lag, "
                                "connect and service)",
            "blackbox_service": "probe_http_duration_seconds processing + transfer: from the connection "
                                "being ready (before the write) to the body's end",
            "blackbox_duration": "probe_duration_seconds: the whole probe, connect included",
        },
    })
    return out


def measure(binary, sandbox, blackbox, say=print):
    """Every phase of this file: a dict of their figures (a phase that
    failed has {"error": ...})."""
    out = {}
    for name, fn, args in (("cpu", cpu, (binary, sandbox)),
                           ("small", small, (binary, sandbox)),
                           ("large", large, (binary, sandbox)),
                           ("timing", timing, (binary, sandbox, blackbox))):
        t = time.monotonic()
        try:
            out[name] = fn(*args)
        except Exception as e:  # noqa: BLE001 - one phase's failure is reported, the rest run
            out[name] = {"error": f"{type(e).__name__}: {e}"}
        out[name]["wall_s"] = time.monotonic() - t
        say(f"  daemon.{name}: {_summary(name, out[name])} ({out[name]['wall_s']:.0f}s)")
    return out


def _summary(name, f):
    if "error" in f:
        return "ERROR " + f["error"].splitlines()[0]
    if name == "cpu":
        p99 = "n/a" if f["lag_p99_s"] is None else f"{f['lag_p99_s'] * 1000:.3f} ms"
        within = "n/a" if f["lag_within_1ms"] is None else f"{f['lag_within_1ms'] * 100:.1f} %"
        return (f"{f['runs']:.0f} runs ({f['runs_per_s']:.0f}/s, {f['failed_runs']:.0f} failed), "
                f"{f['cpu_per_run_s'] * 1e6:.1f} µs CPU per run ({f['cpu_share_of_one_core'] * 100:.0f} % "
                f"of a core), VmRSS {f['rss_kib'] / 1024:.1f} MiB, schedule lag p99 {p99}, "
                f"{within} within 1 ms")
    if name == "small":
        return f"{f['probes']} probes, {f['runs']:.0f} runs, VmRSS {f['rss_kib'] / 1024:.1f} MiB"
    if name == "large":
        return (f"{f['probes']} probes (set up in {f['setup_s']:.0f}s), {f['runs']:.0f} runs in "
                f"{f['seconds']:.0f}s, VmRSS "
                f"{f['rss_kib_before_scrape'] / 1024:.1f} MiB before a scrape, "
                f"{f['rss_kib'] / 1024:.1f} MiB after one ({f['metrics_bytes'] / 2**20:.1f} MiB of text)")
    return (f"/delay/{f['delay_ms']} p50, medians of {len(f['rounds'])} rounds, "
            f"from the request's write to the response's last byte: wrk {f['wrk_p50_ms']:.3f} ms, "
            f"synthmon service {f['synthmon_service_p50_ms']:.3f} ms "
            f"({f['synthmon_minus_wrk_ms']:+.3f}), blackbox processing+transfer "
            f"{f['blackbox_service_p50_ms']:.3f} ms ({f['blackbox_minus_wrk_ms']:+.3f}); "
            f"with the connect: synthmon latency from the intended send time "
            f"{f['synthmon_latency_p50_ms']:.3f} ms ({f['synthmon_latency_minus_wrk_ms']:+.3f}, "
            f"at {f['rate']}/s), blackbox probe_duration {f['blackbox_p50_ms']:.3f} ms "
            f"({f['blackbox_duration_minus_wrk_ms']:+.3f})")


def rows(d, bb_cpu_per_probe_s, bb_idle_rss_kib):
    """This file's rows of the results table (see common.row)."""
    row, out = common.row, []
    c, s, l, t = d.get("cpu"), d.get("small"), d.get("large"), d.get("timing")
    out.append(row("1", "daemon CPU per scheduled HTTP probe (fresh connection), 1,000 probes every 1 s",
                   c, lambda f: f["cpu_per_run_s"] * 1e6, "µs",
                   "blackbox_exporter (per /probe, driven by wrk)",
                   bb_cpu_per_probe_s * 1e6 if bb_cpu_per_probe_s else None,
                   "ratio ≤ 0.2", lambda v, p, r: r <= 0.2))
    out.append(row("2", "RSS, 10 probes every 1 s, after 10 s", s, lambda f: f["rss_kib"] / 1024, "MiB",
                   "blackbox_exporter idle (after one /probe)", bb_idle_rss_kib / 1024,
                   "ratio ≤ 1.0", lambda v, p, r: r <= 1.0))
    out.append(row("3", "RSS, 1,000 probes every 1 s (end of row 1)", c, lambda f: f["rss_kib"] / 1024, "MiB",
                   "blackbox_exporter idle (after one /probe)", bb_idle_rss_kib / 1024,
                   "ratio ≤ 2.0", lambda v, p, r: r <= 2.0))
    out.append(row("4", "RSS, 10,000 probes every 60 s, all run once (after one /metrics scrape, gzip as Prometheus asks)", l,
                   lambda f: f["rss_kib"] / 1024, "MiB", None, None,
                   "≤ 80 MiB", lambda v, p, r: v <= 80))
    out.append(row("6", "schedule lag p99 at 1,000 runs/s (histogram_quantile, row 1's daemon)", c,
                   lambda f: None if f["lag_p99_s"] is None else f["lag_p99_s"] * 1000, "ms", None, None,
                   "≤ 1 ms (count at le=0.001 ≥ 99 %)", lambda v, p, r: bool(c and c.get("lag_target_met"))))
    out.append(row("7", f"p50 of /delay/{DELAY_MS} minus wrk's p50, both from the request's write to the "
                   "response's last byte (workload `service`; fresh connections, one at a time)", t,
                   lambda f: f["synthmon_minus_wrk_ms"], "ms",
                   "blackbox_exporter processing + transfer phases", t and t.get("blackbox_minus_wrk_ms"),
                   "|synthmon − wrk| ≤ 0.1 ms", lambda v, p, r: abs(v) <= 0.1, ratio=False))
    return out


def main():
    binary = common.default_binary()
    common.require(binary)
    procs = []
    try:
        sb_proc, sandbox = common.start_sandbox(binary)
        procs.append(sb_proc)
        bb_proc, blackbox = common.start_blackbox()
        procs.append(bb_proc)
        idle = common.blackbox_idle_rss_kib(bb_proc, blackbox, sandbox)
        print(f"daemon phases: sandbox {sandbox}, blackbox_exporter {blackbox} "
              f"(idle VmRSS {idle / 1024:.1f} MiB)")
        figures = measure(binary, sandbox, blackbox)
        cost = common.blackbox_probe_cost(bb_proc, blackbox, sandbox, 5, 32)
        print(f"  blackbox_exporter via wrk: {cost['probes_per_s']:.0f} probes/s, "
              f"{cost['cpu_per_probe_s'] * 1e6:.0f} µs CPU per probe")
    finally:
        for p in procs:
            common.stop(p)
    print()
    print(common.markdown_table(rows(figures, cost["cpu_per_probe_s"], idle)))


if __name__ == "__main__":
    main()
