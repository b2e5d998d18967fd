#!/usr/bin/env python3
"""Bench phase: what the run history costs the daemon, and how big it gets.

    python3 bench/history.py [PATH-TO-SYNTHMON] [SECONDS]   (or through bench/run.py)

Runs the same daemon twice, one after the other, for SECONDS each (default
60): N = 1000 HTTP probes against the built-in sandbox, each every 10 s
(100 runs/s), once with `[daemon.history] enabled = false` and once with
the history on. Reports, as ratios of the two runs in the same sitting:

  - CPU time (utime + stime from /proc) per run, history on / off;
  - peak RSS, history on minus off;
  - the history file (with its WAL) after the run: bytes per stored run,
    then extrapolated to a day and to the steady state of the default
    retention (runs 7 days, minute snapshots 48 h, hour snapshots 400
    days) for 1,000 probes at one run per 10 s.

Everything listens on 127.0.0.1 and every wait has a deadline.
"""

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

PROBES = 1000
INTERVAL_S = 10


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_stats(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
    return cpu, rss


def _metric(port, name):
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    ]
    # A labelled counter is summed over its series.
    return sum(values) if values else None


def run(binary, seconds, history):
    with tempfile.TemporaryDirectory() as d:
        port = _free_port()
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(
                f'[daemon]\nlisten = "127.0.0.1:{port}"\nstate_dir = "state"\n'
                f'probes = ["probes/*.toml"]\nmax_concurrent_runs = 256\n'
                f"[daemon.history]\nenabled = {'true' if history else 'false'}\n"
                '[environments.sandbox]\nbase_url = "builtin:sandbox"\n'
            )
        os.mkdir(os.path.join(d, "probes"))
        for i in range(PROBES):
            with open(os.path.join(d, "probes", f"p{i:04}.toml"), "w") as f:
                f.write(
                    f'name = "p{i:04}"\nschedule = "every {INTERVAL_S}s"\ntimeout = "5s"\n'
                    'environments = ["sandbox"]\n[http]\nurl = "/health"\n'
                )
        proc = subprocess.Popen(
            [binary, "run", "--config", os.path.join(d, "config.toml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=d,
        )
        try:
            deadline = time.time() + 30
            while _metric(port, "synthmon_build_info") is None:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("the daemon did not start")
                time.sleep(0.2)
            # Warm up one full interval, then measure.
            time.sleep(INTERVAL_S)
            cpu0, _ = _proc_stats(proc.pid)
            runs0 = _metric(port, "synthmon_runs_total") or 0
            time.sleep(seconds)
            cpu1, rss = _proc_stats(proc.pid)
            runs1 = _metric(port, "synthmon_runs_total") or 0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        stored = 0
        size = 0
        db = os.path.join(d, "state", "history.sqlite")
        if history and os.path.exists(db):
            # The WAL is bounded (checkpointed every ~4 MB): fold it in and
            # measure the file itself.
            with sqlite3.connect(db) as c:
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                stored = c.execute("SELECT count(*) FROM runs").fetchone()[0]
            size = os.path.getsize(db)
        return {
            "cpu": cpu1 - cpu0,
            "runs": max(runs1 - runs0, 1),
            "rss": rss,
            "stored": stored,
            "bytes": size,
        }


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/synthmon")
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    off = run(binary, seconds, False)
    on = run(binary, seconds, True)
    per_run_off = off["cpu"] / off["runs"]
    per_run_on = on["cpu"] / on["runs"]
    print(f"history phase: {PROBES} probes every {INTERVAL_S}s, {seconds}s measured each")
    print(f"  CPU per run: history on / off = {per_run_on / per_run_off:.2f}x "
          f"({per_run_on * 1e6:.0f} vs {per_run_off * 1e6:.0f} CPU-us)")
    print(f"  peak RSS: on - off = {(on['rss'] - off['rss']) / 2**20:+.1f} MiB "
          f"({on['rss'] / 2**20:.1f} vs {off['rss'] / 2**20:.1f} MiB)")
    if on["stored"]:
        per_run = on["bytes"] / on["stored"]
        day_runs = PROBES * 86400 / INTERVAL_S
        print(f"  file: {per_run:.0f} B per stored run (with its minute share)")
        print(f"  1,000 probes at 1 run / 10 s: ~{per_run * day_runs / 2**30:.2f} GiB per day, "
              f"steady state ~{per_run * day_runs * 7 / 2**30:.1f} GiB (runs kept 7 days)")


if __name__ == "__main__":
    main()
