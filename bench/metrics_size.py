#!/usr/bin/env python3
"""Bench phase: how big /metrics is per probe, and how exact its p95 is.

    python3 bench/metrics_size.py [PATH-TO-SYNTHMON]    (or through bench/run.py)

Starts `synthmon run` with N = 1000 HTTP probes (a p95 and an error-rate
threshold each, `instance` and `location` set) on the built-in sandbox,
plus one workload probe whose target answers after a lognormal delay
(median 200 ms, sigma 0.3: p95 = 200 ms x e^(1.645 x 0.3) = 328 ms), waits
until every probe has run, and scrapes /metrics twice: as text, and gzipped
as Prometheus asks for it. Reports

  - bytes per (probe, environment): the whole scrape over N, as text and
    as sent gzipped;
  - the p95 of the lognormal probe read two ways: `histogram_quantile(0.95)`
    over its buckets (Prometheus' linear interpolation, computed here the
    same way) against the exact `synthmon_latency_seconds{quantile="0.95"}`
    (the window's nearest-rank p95 within 1 %: tests/suite/metrics.rs pins
    that against seeded samples), which is the p95 error of reading
    percentiles from the buckets; and both against the distribution's
    p95, for context only: 600 requests carry ~2.5 % of sampling noise, and
    on a busy machine the sandbox's timers and the run queue add their own
    delay to every request.

Everything listens on 127.0.0.1 and every wait has a deadline.
"""

import gzip
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PROBES = 1000
DEADLINE = 90
MEDIAN_MS = 200.0
SIGMA = 0.3
REQUESTS = 600
TRUE_P95 = MEDIAN_MS / 1000 * math.exp(1.6448536 * SIGMA)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, gzipped=False):
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read(), r.headers.get("Content-Encoding", "")


def _value(text, name, *must):
    for line in text.splitlines():
        if line.startswith(name) and all(m in line for m in must):
            return float(line.rsplit(" ", 1)[1])
    return None


def _buckets(text, family, *must):
    out = []
    for line in text.splitlines():
        if line.startswith(family + "_bucket{") and all(m in line for m in must):
            le = re.search(r'le="([^"]+)"', line).group(1)
            out.append((math.inf if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    return sorted(out)


def histogram_quantile(q, buckets):
    """Prometheus' bucketQuantile: linear inside the bucket holding q x count."""
    total = buckets[-1][1]
    rank = q * total
    b = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    start, below = (0.0, 0.0) if b == 0 else buckets[b - 1]
    end, upto = buckets[b]
    return start + (end - start) * (rank - below) / (upto - below)


def _write_config(d, port):
    os.makedirs(os.path.join(d, "probes"))
    with open(os.path.join(d, "config.toml"), "w") as f:
        f.write(
            f'[daemon]\nlisten = "127.0.0.1:{port}"\nprobes = ["probes/*.toml"]\n'
            f'state_dir = "{os.path.join(d, "state")}"\n'
            'instance = "vm-1"\nlocation = "eu-west"\n\n'
            '[environments.production]\nbase_url = "builtin:sandbox"\n'
        )
    for i in range(PROBES):
        with open(os.path.join(d, "probes", f"p{i:04d}.toml"), "w") as f:
            f.write(
                f'name = "orders-api-{i:04d}"\nschedule = "every 20s"\ntimeout = "2s"\n'
                'environments = ["production"]\n'
                'thresholds = ["p(95) < 300ms", "error_rate < 1%"]\n'
                '[http]\nurl = "/health"\n'
            )
    with open(os.path.join(d, "probes", "lognormal.toml"), "w") as f:
        f.write(
            'name = "lognormal"\nschedule = "every 20s"\ntimeout = "2s"\n'
            'environments = ["production"]\nthresholds = ["p(95) < 1s"]\n'
            f"[workload]\nrequests = {REQUESTS}\nrate = 100\n"
            f'[http]\nurl = "/latency?dist=lognormal&median_ms={MEDIAN_MS:g}&sigma={SIGMA:g}"\n'
        )


def run(synthmon_bin):
    """Runs the phase; returns its figures as a dict."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with tempfile.TemporaryDirectory() as d:
        _write_config(d, port)
        proc = subprocess.Popen(
            [synthmon_bin, "--config", os.path.join(d, "config.toml"), "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + DEADLINE
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"synthmon exited with {proc.returncode}")
                try:
                    text = _get(url)[0].decode()
                except OSError:
                    text = ""
                ran = sum(1 for line in text.splitlines() if line.startswith("synthmon_runs_total{"))
                # The workload's every request, in its histogram (an older
                # build has no synthmon_latency_seconds to wait for).
                timed = _value(text, "synthmon_probe_duration_seconds_count{", 'probe="lognormal"')
                if ran >= PROBES + 1 and (timed or 0) >= REQUESTS:
                    break
                if time.time() > deadline:
                    raise RuntimeError(f"only {ran} of {PROBES + 1} probes ran within {DEADLINE}s")
                time.sleep(0.5)
            plain, _ = _get(url)
            packed, encoding = _get(url, gzipped=True)
            text = plain.decode()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    if encoding != "gzip":
        # An older build: what gzip would have made of it.
        packed = gzip.compress(plain, 1)
    buckets = _buckets(text, "synthmon_probe_duration_seconds", 'probe="lognormal"')
    from_buckets = histogram_quantile(0.95, buckets)
    exact = _value(text, "synthmon_latency_seconds{", 'probe="lognormal"', 'quantile="0.95"')
    off = (lambda x, ref: None if x is None or ref is None else (x - ref) / ref)
    return {
        "probes": PROBES,
        "bytes_per_probe": len(plain) / PROBES,
        "gzip_bytes_per_probe": len(packed) / PROBES,
        "served_gzip": encoding == "gzip",
        "buckets": [b for b, _ in buckets],
        "true_p95": TRUE_P95,
        "histogram_p95": from_buckets,
        "histogram_p95_error": off(from_buckets, TRUE_P95),
        "exact_p95": exact,
        "exact_p95_error": off(exact, TRUE_P95),
        "histogram_vs_exact": off(from_buckets, exact),
    }


def report(synthmon_bin):
    """Runs the phase and prints it as the other phases print."""
    r = run(synthmon_bin)
    print(f"\n/metrics with {r['probes']} probes: {r['bytes_per_probe']:.0f} B per "
          f"(probe, environment) as text, {r['gzip_bytes_per_probe']:.0f} B gzipped"
          f"{'' if r['served_gzip'] else ' (computed: this build does not serve gzip)'}")
    if r["exact_p95"] is None:
        print(f"p95 of a lognormal target (median {MEDIAN_MS:g} ms, sigma {SIGMA:g}): "
              f"histogram_quantile(0.95) {r['histogram_p95'] * 1000:.1f} ms (buckets "
              f"{r['buckets']}); this build exports no exact percentile; the distribution's "
              f"p95 is {r['true_p95'] * 1000:.1f} ms ({r['histogram_p95_error'] * 100:+.1f} %)")
        return r
    print(f"p95 of a lognormal target (median {MEDIAN_MS:g} ms, sigma {SIGMA:g}): "
          f"synthmon_latency_seconds (exact) {r['exact_p95'] * 1000:.1f} ms, "
          f"histogram_quantile(0.95) {r['histogram_p95'] * 1000:.1f} ms: "
          f"{r['histogram_vs_exact'] * 100:+.1f} % off (buckets {r['buckets']}); "
          f"the distribution's p95 is {r['true_p95'] * 1000:.1f} ms "
          f"(exact {r['exact_p95_error'] * 100:+.1f} %, histogram "
          f"{r['histogram_p95_error'] * 100:+.1f} %: sampling and machine noise)")
    return r


if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    report(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "release", "synthmon"))
