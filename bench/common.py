"""Helpers shared by the bench scripts (stdlib only): processes and their
/proc figures, the sandbox and blackbox_exporter on ephemeral loopback
ports, wrk, and Prometheus text parsing.

Every child is started with PR_SET_PDEATHSIG, so it dies with the script
even when the script is killed; callers still stop it in a `finally`.
"""

import ctypes
import gzip
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")
BLACKBOX_BIN = "prometheus-blackbox-exporter"


def default_binary(argv=None):
    """argv[1], else BENCH_SYNTHMON, else target/release/synthmon."""
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and not argv[1].startswith("-"):
        return os.path.abspath(argv[1])
    return os.path.abspath(os.environ.get("BENCH_SYNTHMON")
                           or os.path.join(ROOT, "target", "release", "synthmon"))


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


def require(binary, tools=("wrk", BLACKBOX_BIN)):
    """Exits non-zero, saying what is missing, without the binary or a peer."""
    if not os.access(binary, os.X_OK):
        die(f"no synthmon binary at {binary} (cargo build --release, or set BENCH_SYNTHMON)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        die(f"missing peer(s): {', '.join(missing)} — bash bench/run.sh installs them "
            f"(apt-get install {' '.join(missing)})")


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(args, **kw):
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(args, preexec_fn=_die_with_parent, **kw)


def stop(proc, timeout=15):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid):
    return _status_kib(pid, "VmHWM")


def watch(proc, deadline=None):
    """Samples `proc` every 50 ms until it exits or the monotonic
    `deadline` passes: (its last CPU seconds, its peak RSS in KiB)."""
    cpu, rss = 0.0, 0
    while proc.poll() is None and (deadline is None or time.monotonic() < deadline):
        try:
            cpu = cpu_seconds(proc.pid)
            rss = max(rss, peak_rss_kib(proc.pid))
        except OSError:
            pass
        time.sleep(0.05)
    return cpu, rss


def get(url, timeout=10, gzipped=False):
    """The body as text; with gzipped, asked for as Prometheus asks for
    /metrics (Accept-Encoding: gzip) and decompressed here."""
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
        if r.headers.get("Content-Encoding", "") == "gzip":
            body = gzip.decompress(body)
        return body.decode()


def wait_http(url, seconds=15, proc=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {seconds}s")


# --- the target and the peer -------------------------------------------------

def start_sandbox(binary):
    """`synthmon sandbox` on an ephemeral port: (process, "127.0.0.1:PORT")."""
    proc = spawn([binary, "sandbox", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    found = []

    def read():
        for line in proc.stdout:
            m = re.search(r"listening on http://(\S+)", line)
            if m and not found:
                found.append(m.group(1).rstrip("/"))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 15
    while not found and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not found:
        stop(proc)
        raise RuntimeError("synthmon sandbox did not print its address")
    wait_http(f"http://{found[0]}/health", proc=proc)
    return proc, found[0]


def start_blackbox():
    """blackbox_exporter with one http_2xx module on a free port:
    (process, "127.0.0.1:PORT")."""
    d = tempfile.mkdtemp(prefix="bench-blackbox-")
    config = os.path.join(d, "blackbox.yml")
    with open(config, "w") as f:
        f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
    for _ in range(3):
        addr = f"127.0.0.1:{free_port()}"
        proc = spawn([BLACKBOX_BIN, f"--config.file={config}", f"--web.listen-address={addr}",
                      "--log.level=error"])
        try:
            wait_http(f"http://{addr}/metrics", proc=proc)
            shutil.rmtree(d, ignore_errors=True)  # read at start, and reloaded only on SIGHUP
            return proc, addr
        except RuntimeError:
            stop(proc)
    shutil.rmtree(d, ignore_errors=True)
    raise RuntimeError("blackbox_exporter did not start")


def probe_url(blackbox, target):
    from urllib.parse import quote
    return f"http://{blackbox}/probe?module=http_2xx&target={quote(target, safe='')}"


def blackbox_idle_rss_kib(blackbox_proc, blackbox, sandbox):
    """VmRSS of a fresh blackbox_exporter after one /probe call."""
    get(probe_url(blackbox, f"http://{sandbox}/health"))
    time.sleep(0.5)
    return rss_kib(blackbox_proc.pid)


def version(args):
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else None


# --- wrk ---------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def wrk_ms(text):
    """A wrk duration (`50.31ms`, `980.00us`, `1.02s`) in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url, seconds, connections, threads=2, headers=(), script=None):
    """Runs wrk --latency; returns a dict: rps, requests, p50_ms, non_2xx,
    socket_errors, and its stdout."""
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 30)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if out.returncode != 0 or not rps:
        raise RuntimeError(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    total = re.search(r"(\d+) requests in", out.stdout)
    p50 = re.search(r"^\s*50%\s+(\S+)", out.stdout, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    sock = re.search(r"Socket errors: (.*)", out.stdout)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)) if total else None,
        "p50_ms": wrk_ms(p50.group(1)) if p50 else None,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sock.group(1) if sock else "none",
        "stdout": out.stdout,
    }


def blackbox_probe_cost(blackbox_proc, blackbox, sandbox, seconds, connections):
    """blackbox_exporter driven by wrk through /probe (one HTTP probe of the
    sandbox's /health per call): probes/s, CPU seconds per probe, peak RSS."""
    cpu0 = cpu_seconds(blackbox_proc.pid)
    w = wrk(probe_url(blackbox, f"http://{sandbox}/health"), seconds, connections)
    cpu = cpu_seconds(blackbox_proc.pid) - cpu0
    probes = w["requests"] or w["rps"] * seconds
    return {
        "probes_per_s": w["rps"],
        "probes": probes,
        "cpu_seconds": cpu,
        "cpu_per_probe_s": cpu / max(probes, 1),
        "peak_rss_kib": peak_rss_kib(blackbox_proc.pid),
        "non_2xx": w["non_2xx"],
    }


# --- Prometheus text -----------------------------------------------------------

def _lines(text, name):
    """Sample lines of metric `name` (exactly: `name{` or `name `)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            yield line


def metric_sum(text, name, *must):
    """The sum of a metric's samples (over its label sets) whose line
    contains every string in `must`; None when there is none."""
    values = [float(line.rsplit(" ", 1)[1]) for line in _lines(text, name)
              if all(m in line for m in must)]
    return sum(values) if values else None


def buckets(text, family, *must):
    """[(le, cumulative count)] of a histogram, sorted, +Inf last."""
    out = []
    for line in _lines(text, family + "_bucket"):
        if all(m in line for m in must):
            le = re.search(r'le="([^"]+)"', line).group(1)
            out.append((math.inf if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    return sorted(out)


def histogram_quantile(q, bucket_list):
    """Prometheus' bucketQuantile: linear inside the bucket that holds
    q x count (from 0 for the first); the highest finite bound when it falls
    in +Inf; None without observations."""
    if not bucket_list or bucket_list[-1][1] <= 0:
        return None
    total = bucket_list[-1][1]
    rank = q * total
    b = next(i for i, (_, c) in enumerate(bucket_list) if c >= rank)
    if math.isinf(bucket_list[b][0]):
        return bucket_list[-2][0] if len(bucket_list) > 1 else None
    start, below = (0.0, 0.0) if b == 0 else bucket_list[b - 1]
    end, upto = bucket_list[b]
    if upto == below:
        return end
    return start + (end - start) * (rank - below) / (upto - below)


# --- the results table -----------------------------------------------------------

def row(id, measure, figures, value, unit, peer, peer_value, target, met, ratio=True):
    """One row of the results: `value(figures)` is synthmon's figure, `met(value,
    peer_value, ratio)` judges `target` (text). ratio=False for a row whose
    peer figure is not comparable by division. A phase that failed (figures
    with "error", or none) gives a row with `error` and target_met false."""
    error = "not measured" if figures is None else figures.get("error")
    v = None
    if not error:
        try:
            v = value(figures)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            error = f"{type(e).__name__}: {e}"
    r = v / peer_value if ratio and v is not None and peer_value else None
    target_met = None
    if target:
        target_met = False
        if v is not None and (peer is None or not ratio or r is not None):
            target_met = bool(met(v, peer_value, r))
    out = {
        "id": id, "measure": measure,
        "synthmon": v, "unit": unit,
        "peer": peer, "peer_value": peer_value,
        "ratio": r,
        "target": target, "target_met": target_met,
    }
    if error:
        out["error"] = error.splitlines()[0] if error else error
    return out


def median_round(rounds, key):
    """The round whose `key` is the median of all rounds' (the lower middle
    one of an even count), as a dict with every round under "rounds": its
    figures stay those of one sitting, so its ratio is theirs."""
    ordered = sorted(rounds, key=key)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds"] = rounds
    return chosen


def fmt(v):
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _cell(text):
    return str(text).replace("|", "\\|")


def markdown_table(rows):
    lines = ["| # | measure | synthmon | peer | peer value | synthmon ÷ peer | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        unit = f" {r['unit']}" if r["unit"] else ""
        value = fmt(r["synthmon"]) + (unit if r["synthmon"] is not None else "")
        if r.get("error"):
            value = f"error: {r['error']}"
        peer_value = fmt(r["peer_value"]) + (unit if r["peer_value"] is not None else "")
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        met = {None: "—", True: "yes", False: "**no**"}[r["target_met"]]
        cells = [r["id"], r["measure"], value, r["peer"] or "—", peer_value if r["peer"] else "—",
                 ratio, r["target"] or "—", met]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)
