#!/usr/bin/env python3
"""synthmon benchmark: issue 14's table, every row measured side by side
with its peer in the same run on the same machine.

    bash bench/run.sh            (installs wrk and blackbox_exporter if missing)
    BENCH_SYNTHMON=/path/to/synthmon python3 bench/run.py

Everything runs on 127.0.0.1 (ephemeral ports) against synthmon's own
sandbox target, and every phase is bounded in time. Prints a markdown
table (synthmon's figure, the peer's, their ratio, the target and whether
it is met) and writes bench/results/latest.json and latest.md with a
description of the machine. Exit status 1 when a peer is missing or a
phase failed (its row then says why); a missed target is a result, not a
failure.

Phases, in order (see bench/README.md for the rows they feed):
  1. HTTP load generation on fresh connections: wrk (Connection: close)
     vs a synthmon --once workload against the sandbox's /health.
  2. The same with JSON POSTs to the sandbox's /echo: wrk sends one static
     order body, synthmon generates all seven fields of every body.
  3. Probe cost: blackbox_exporter driven by wrk through /probe.
  4. The daemon (bench/daemon.py): CPU per scheduled probe, RSS at 10,
     1,000 and 10,000 probes, schedule lag, timing truth.
  5. /metrics size and histogram_quantile error (bench/metrics_size.py).
  6. Keep-alive load generation against wrk's defaults, and a million
     requests through one workload (bench/keepalive.py).
  7. The status page's server time at 1,000 probes (bench/status_page.py).
"""

import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import daemon  # noqa: E402
import keepalive  # noqa: E402
import metrics_size  # noqa: E402
import status_page  # noqa: E402

ROOT = common.ROOT
# BENCH_SYNTHMON picks another build (e.g. an older commit's, to compare
# two versions against the same peers on the same machine).
SYNTHMON = common.default_binary([sys.argv[0]])
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
# The load rows (8a, 8b, 9a-9e) alternate their tools for this many rounds
# of SECONDS each and report the round with the median ratio: a shared
# virtual machine's speed drifts within a minute, and a ratio is only as
# good as the two runs being measured on the same machine state.
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "3")))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
# The million-request run takes ~20 s; BENCH_MILLION=0 leaves it out.
MILLION = os.environ.get("BENCH_MILLION", "1") != "0"
RESULTS = os.path.join(ROOT, "bench", "results")


# The body both tools POST in phase 2: wrk sends it as is, synthmon generates
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


def synthmon_workload(sandbox, rate, seconds, http='url = "/health"\n'):
    """A synthmon --once workload on fresh connections: a dict of ok/s, CPU
    seconds, peak RSS (KiB) and its workload facts."""
    with tempfile.TemporaryDirectory(prefix="bench-workload-") as d:
        os.makedirs(os.path.join(d, "probes"))
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write('[daemon]\nprobes = ["probes/*.toml"]\n\n'
                    f'[environments.bench]\nbase_url = "http://{sandbox}"\n')
        with open(os.path.join(d, "probes", "load.toml"), "w") as f:
            f.write('name = "load"\nenvironments = ["bench"]\nschedule = "every 1h"\n'
                    'timeout = "5s"\n\n[workload]\n'
                    f"duration = \"{seconds}s\"\nrate = {rate}\nmax_concurrency = {CONCURRENCY}\n\n"
                    '[http]\n' + http)
        proc = common.spawn(
            [SYNTHMON, "--config", os.path.join(d, "config.toml"), "--once", "--output", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            cpu, rss = common.watch(proc, time.monotonic() + seconds + 60)
            out, err = proc.communicate(timeout=10)
        finally:
            common.stop(proc)
    try:
        result = json.loads(out)["results"][0]
    except (json.JSONDecodeError, KeyError, IndexError):
        raise RuntimeError(f"synthmon did not print a JSON report:\n{out}\n{err}")
    w = result["workload"]
    return {"asked_rate": rate, "rps": w["ok"] / max(result["duration"], 1e-9),
            "cpu_seconds": cpu, "peak_rss_kib": rss, "sent": w["sent"], "ok": w["ok"],
            "dropped": w["dropped"], "failed": w["failed"],
            "cpu_per_request_s": cpu / max(w["ok"] + w["failed"], 1)}


def fresh(sandbox, path="/health", headers=("Connection: close",), script=None, http=None):
    """wrk, then synthmon asking 1.5x wrk's rate with the same concurrency
    cap (so the cap, not the rate, limits it), for ROUNDS rounds; the
    round with the median ratio, with every round's figures beside it."""
    rounds = []
    for _ in range(ROUNDS):
        w = common.wrk(f"http://{sandbox}{path}", SECONDS, CONCURRENCY, headers=headers,
                       script=script)
        s = synthmon_workload(sandbox, max(100, int(w["rps"] * 1.5)), SECONDS,
                              http or f'url = "{path}"\n')
        rounds.append({"wrk_rps": w["rps"], "wrk_non_2xx": w["non_2xx"],
                       "wrk_socket_errors": w["socket_errors"], "synthmon": s,
                       "ratio": s["rps"] / max(w["rps"], 1e-9)})
    return common.median_round(rounds, lambda r: r["ratio"])


def machine(binary):
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def git(*args):
        out = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model,
        "nproc": len(os.sched_getaffinity(0)),
        "kernel": f"{platform.system()} {platform.release()} {platform.version()}",
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "synthmon_commit": commit,
        "synthmon_tree_dirty": dirty,
        "synthmon_binary": binary,
        "synthmon_version": common.version([binary, "--version"]),
        "peers": {
            "wrk": common.version(["wrk", "-v"]),
            "blackbox_exporter": common.version([common.BLACKBOX_BIN, "--version"]),
        },
        "python": platform.python_version(),
    }


def rows(p, bb_idle_kib):
    row, o = common.row, []
    bb = p.get("blackbox", {})
    o += daemon.rows(p.get("daemon", {}), bb.get("cpu_per_probe_s"), bb_idle_kib)
    ms = p.get("metrics_size")
    o.append(row("5", "/metrics bytes per (probe, environment), text", ms,
                 lambda f: f["bytes_per_probe"], "B", None, None,
                 "≤ 1024 B", lambda v, _p, _r: v <= 1024))
    fr, po = p.get("fresh"), p.get("post")
    o.append(row("8a", f"HTTP requests/s, fresh connection per request, c{CONCURRENCY}", fr,
                 lambda f: f["synthmon"]["rps"], "req/s", "wrk -H 'Connection: close'",
                 fr and fr.get("wrk_rps"), "ratio ≥ 0.9", lambda _v, _p, r: r >= 0.9))
    o.append(row("8b", f"JSON POSTs/s, synthmon generating each body, fresh connections, c{CONCURRENCY}",
                 po, lambda f: f["synthmon"]["rps"], "req/s", "wrk posting a static body",
                 po and po.get("wrk_rps"), None, None))
    ka = p.get("keepalive")
    o.append(row("9a", f"HTTP requests/s, connections kept, c{CONCURRENCY}", ka,
                 lambda f: f["synthmon_rps"], "req/s", "wrk (keep-alive)",
                 ka and ka.get("wrk_rps"), "ratio ≥ 0.9", lambda _v, _p, r: r >= 0.9))
    o.append(row("9b", f"workload CPU per request, connections kept, c{CONCURRENCY}", ka,
                 lambda f: f["cpu_us_per_request"], "µs", None, None,
                 "≤ 12 µs", lambda v, _p, _r: v <= 12))
    o.append(row("9e", "the same requests/s as 9a, against wrk sending synthmon's request "
                 "(its seven tagging headers too, so the target parses the same bytes)", ka,
                 lambda f: f["synthmon_rps"], "req/s", "wrk (keep-alive), synthmon's headers",
                 ka and ka.get("wrk_tagged_rps"), None, None))
    floor = (ka or {}).get("floor", {})
    o.append(row("9c", f"bench/floor, a bare hyper client, connections kept, c{CONCURRENCY}: "
                 "a task per connection claims its own due requests", floor.get("tasks"),
                 lambda f: f["rps"], "req/s", "wrk (keep-alive)", ka and ka.get("wrk_rps"),
                 None, None))
    o.append(row("9d", "bench/floor as 9c, every connection a future of one task (synthmon's shape)",
                 floor.get("slots"), lambda f: f["rps"], "req/s", "wrk (keep-alive)",
                 ka and ka.get("wrk_rps"), None, None))
    mi = p.get("million", {"error": "skipped (BENCH_MILLION=0)"} if not MILLION else None)
    o.append(row("10", "peak RSS of one workload of 1,000,000 keep-alive requests", mi,
                 lambda f: f["peak_rss_kib"] / 1024, "MiB", None, None,
                 "≤ 50 MiB", lambda v, _p, _r: v <= 50))
    o.append(row("11", "histogram_quantile(0.95) vs exact p95 (lognormal, median 200 ms)", ms,
                 lambda f: f["histogram_vs_exact"] * 100, "%", None, None,
                 "|error| ≤ 5 %", lambda v, _p, _r: abs(v) <= 5))
    o.append(row("12a", "probes/s (one HTTP check each; synthmon: row 8a's workload)", fr,
                 lambda f: f["synthmon"]["rps"], "/s", "blackbox_exporter via /probe (wrk)",
                 bb.get("probes_per_s"), None, None))
    o.append(row("12b", "CPU per HTTP check, --once workload on fresh connections", fr,
                 lambda f: f["synthmon"]["cpu_per_request_s"] * 1e6, "µs",
                 "blackbox_exporter per /probe", bb.get("cpu_per_probe_s") and bb["cpu_per_probe_s"] * 1e6,
                 None, None))
    o.append(row("12c", "peak RSS under load (row 8a's workload)", fr,
                 lambda f: f["synthmon"]["peak_rss_kib"] / 1024, "MiB",
                 "blackbox_exporter after wrk via /probe",
                 bb.get("peak_rss_kib") and bb["peak_rss_kib"] / 1024, None, None))
    o.append(row("12d", "status page `/`, 1,000 probes, a month of history: median server time",
                 p.get("status_page"), lambda f: f["median_ms"], "ms", None, None,
                 "≤ 100 ms (issue 16)", lambda v, _p, _r: v <= 100))
    order = ["1", "2", "3", "4", "5", "6", "7", "8a", "8b", "9a", "9b", "9c", "9d", "9e", "10", "11",
             "12a", "12b", "12c", "12d"]
    return sorted(o, key=lambda r: order.index(r["id"]))


def _clean(x):
    """JSON-safe: infinities as "+Inf", NaN as null, floats rounded."""
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "+Inf" if x > 0 else "-Inf"
        return float(f"{x:.6g}")
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_results(doc, table):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump(_clean(doc), f, indent=2, ensure_ascii=False, allow_nan=False)
        f.write("\n")
    m = doc["machine"]
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(f"# synthmon benchmark, {m['date']}\n\n")
        f.write(f"- CPU: {m['cpu_model']}, nproc {m['nproc']}; kernel {m['kernel']}\n")
        f.write(f"- load average at start: {', '.join(str(x) for x in m['loadavg_at_start'])}\n")
        f.write(f"- synthmon: {m['synthmon_version']}, commit {m['synthmon_commit']}"
                f"{' (working tree modified)' if m['synthmon_tree_dirty'] else ''}, "
                f"binary {m['synthmon_binary']}\n")
        f.write(f"- peers: {m['peers']['wrk']}; {m['peers']['blackbox_exporter']}\n")
        s = doc["settings"]
        f.write(f"- BENCH_SECONDS={s['seconds']}, BENCH_ROUNDS={s['rounds']}, "
                f"BENCH_CONCURRENCY={s['concurrency']}, "
                f"BENCH_MILLION={int(s['million'])}; wall time {doc['wall_seconds']:.0f} s\n\n")
        f.write(table + "\n")
        if doc["errors"]:
            f.write("\nErrors:\n\n" + "".join(f"- {k}: {v}\n" for k, v in doc["errors"].items()))


def main():
    started = time.monotonic()
    common.require(SYNTHMON)
    desc = machine(SYNTHMON)
    phases, errors, timings = {}, {}, {}
    procs = []

    def phase(name, fn, *args):
        t = time.monotonic()
        print(f"\n## {name}", flush=True)
        try:
            phases[name] = fn(*args)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the other phases still run
            phases[name] = {"error": f"{type(e).__name__}: {e}"}
            errors[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"bench: phase {name} failed: {e}", file=sys.stderr)
        timings[name] = time.monotonic() - t
        print(f"({name}: {timings[name]:.0f}s)", flush=True)
        return phases[name]

    bb_idle = None
    try:
        sb_proc, sandbox = common.start_sandbox(SYNTHMON)
        procs.append(sb_proc)
        bb_proc, blackbox = common.start_blackbox()
        procs.append(bb_proc)
        bb_idle = common.blackbox_idle_rss_kib(bb_proc, blackbox, sandbox)
        print(f"# synthmon benchmark ({ROUNDS} rounds of {SECONDS}s per load phase, "
              f"{CONCURRENCY} connections, "
              f"{desc['nproc']} CPUs, load {desc['loadavg_at_start']}; everything on 127.0.0.1)")
        print(f"sandbox {sandbox}; blackbox_exporter {blackbox}, idle VmRSS {bb_idle / 1024:.1f} MiB")

        def show_load(f):
            s = f["synthmon"]
            print("rounds (synthmon ÷ wrk): "
                  + ", ".join(f"{r['ratio']:.2f}×" for r in f["rounds"]) + "; the median round:")
            print(f"wrk {f['wrk_rps']:.0f}/s (non-2xx {f['wrk_non_2xx']}, socket errors "
                  f"{f['wrk_socket_errors']}); synthmon asked {s['asked_rate']}/s: {s['rps']:.0f} ok/s, "
                  f"sent {s['sent']}, dropped at the cap {s['dropped']}, failed {s['failed']}: "
                  f"{f['ratio']:.2f}×")
            return f

        phase("fresh", lambda: show_load(fresh(sandbox)))
        with tempfile.TemporaryDirectory(prefix="bench-post-") as d:
            lua = os.path.join(d, "post.lua")
            with open(lua, "w") as f:
                f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                        f"wrk.body = '{STATIC_ORDER}'\n")
            phase("post", lambda: show_load(fresh(sandbox, "/echo", script=lua, http=TEMPLATED_ORDER)))

        def probe_cost():
            c = common.blackbox_probe_cost(bb_proc, blackbox, sandbox, SECONDS, CONCURRENCY)
            print(f"blackbox_exporter via wrk: {c['probes_per_s']:.0f} probes/s, "
                  f"{c['cpu_per_probe_s'] * 1e6:.0f} µs CPU per probe, peak RSS "
                  f"{c['peak_rss_kib'] / 1024:.1f} MiB, non-2xx {c['non_2xx']}")
            return c

        phase("blackbox", probe_cost)
        phase("daemon", daemon.measure, SYNTHMON, sandbox, blackbox)
        phase("metrics_size", metrics_size.report, SYNTHMON)
        phase("keepalive", keepalive.run, SYNTHMON, f"http://{sandbox}", SECONDS, CONCURRENCY,
              ROUNDS)
        if MILLION:
            ka = phases.get("keepalive", {})
            rate = keepalive.million_rate(ka) if "synthmon_rps" in ka else 50_000
            phase("million", keepalive.million, SYNTHMON, f"http://{sandbox}", CONCURRENCY, rate)
        phase("status_page", status_page.report, SYNTHMON)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the table still gets written
        errors["setup"] = str(e)
        print(f"bench: {e}", file=sys.stderr)
    finally:
        for p in procs:
            common.stop(p)

    for name, f in phases.items():
        if isinstance(f, dict) and name == "daemon":
            for sub, g in f.items():
                if isinstance(g, dict) and "error" in g:
                    errors[f"daemon.{sub}"] = g["error"].splitlines()[0]
    table_rows = rows(phases, bb_idle or 0)
    table = common.markdown_table(table_rows)
    wall = time.monotonic() - started
    print(f"\n# Results ({desc['date']}, {desc['cpu_model']}, nproc {desc['nproc']}, "
          f"load at start {desc['loadavg_at_start']}, {wall:.0f}s)\n")
    print(table)
    doc = {
        "machine": desc,
        "settings": {"seconds": SECONDS, "rounds": ROUNDS, "concurrency": CONCURRENCY,
                     "million": MILLION},
        "wall_seconds": wall,
        "phase_seconds": timings,
        "blackbox_idle_rss_kib": bb_idle,
        "rows": table_rows,
        "phases": phases,
        "errors": errors,
    }
    write_results(doc, table)
    print(f"\nwrote {os.path.relpath(RESULTS, os.getcwd())}/latest.json and latest.md")
    if errors:
        print(f"bench: {len(errors)} phase(s) failed: {', '.join(errors)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
