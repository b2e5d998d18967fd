#!/usr/bin/env python3
"""Regenerates build/symbol-order.txt: the functions a running synthmon
calls, which build.rs hands to the linker so that they sit together at the
start of the binary's code.

    python3 build/symbol_order.py        (~10 minutes on 2 cores; needs valgrind)
    python3 build/symbol_order.py --check target/release/synthmon

Why: the kernel maps a program's code around every page it touches
(fault-around, 64 KiB or more), so the functions an idle daemon runs,
scattered through 17 MiB of `.text`, kept most of it resident. Laid out
together they are a few MiB (bench row 2 measures it).

How: the release binary (built first, with the file as it is: the order
changes where functions are, not which exist or their names) runs under
valgrind's callgrind, which names every function that ran, on 127.0.0.1
only and bounded in time, in tiers:

  1. the daemon's core: `synthmon run` (as the systemd unit and the
     Kubernetes manifests start it) with ten HTTP probes every second
     against a `synthmon sandbox` process, its `/readyz` and `/healthz`
     polled and `/metrics` scraped plain and gzipped;
  2. the rest of a daemon: the repository's config and every example
     probe, a failing probe whose alert goes to a webhook receiver started
     here, the status page and API, a reload on SIGHUP;
  3. the commands: `check`, `list`, `--once` over every example (with
     --output json, --junit and --html, on the built-in sandbox, whose
     code this tier covers) and workloads of fixed and generated requests.

The file lists tier 1's functions, those that ran most first, then each
later tier's others: every daemon maps the first stretch of the code, and
a daemon of HTTP probes little else. Functions that never ran keep the
linker's usual order after them.

A name the next build no longer defines (a dependency's update changes its
symbol hashes, and a change to Cargo.toml can change every one of
synthmon's own) is skipped without a warning: the order only goes stale,
which `--check` counts and bench row 2 shows. Regenerate it then.

`--check` says how much of the file a built binary still defines and fails
when its code does not start with the file's first function it defines
(the order was not applied); .ci/run runs it on its release build.
"""

import glob
import http.server
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
OUT = os.path.join(ROOT, "build", "symbol-order.txt")
BINARY = os.path.join(ROOT, "target", "release", "synthmon")
# A daemon under callgrind runs ~50x slower than it would: long enough for
# every probe's first runs, scrapes and a reload.
CORE_SECONDS = 30
DAEMON_SECONDS = 40


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _callgrind(out_dir, tier):
    """The command prefix that runs a program under callgrind, its
    output named after the tier and the process."""
    return ["valgrind", "--tool=callgrind", "--demangle=no", "--compress-strings=no",
            "--compress-pos=no", "--dump-instr=no", "--fair-sched=yes",
            f"--callgrind-out-file={os.path.join(out_dir, tier)}.%p.out"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    """The alert webhook's receiver: takes every POST with 200."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


def _get(url, gzipped=False):
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as r:
            return r.read()
    except OSError:
        return b""


def _sandbox():
    """`synthmon sandbox` (not traced) on an ephemeral port: (process, base
    URL, its variables as `--set` arguments for the `sandbox` environment)."""
    proc = subprocess.Popen([BINARY, "sandbox", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base, sets = None, []
    for line in proc.stdout:
        m = re.match(r"^sandbox listening on (\S+)", line)
        if m:
            base = m.group(1)
        m = re.match(r"^\s+vars\.(\w+)\s+(\S+)", line)
        if m:
            sets += ["--set", f"environments.sandbox.variables.{m.group(1)}={m.group(2)}"]
        if "sandbox_tls_wrong_host" in line:
            break
    if base is None or not sets:
        proc.kill()
        sys.exit("synthmon sandbox did not print its address and variables")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, base, sets


def _stop(proc, sig, timeout=120):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _http_probes(probes, names, env):
    """An HTTP probe of /health every second for each of `names`."""
    for name in names:
        with open(os.path.join(probes, f"{name}.toml"), "w") as f:
            f.write(f'name = "{name}"\nenvironments = ["{env}"]\nschedule = "every 1s"\n'
                    'timeout = "800ms"\n'
                    'thresholds = ["p(95) < 300ms", "error_rate < 1%"]\n'
                    '[http]\nurl = "/health"\n')


def _daemon(out_dir, tier, config, seconds, extra_args, visit):
    """`synthmon run` under callgrind for `seconds`, calling visit(base_url,
    process, seconds left) every few seconds; stopped with SIGTERM."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*_callgrind(out_dir, tier), BINARY, "run", "--config", config, "--log-format", "json",
         "--set", f"daemon.listen=127.0.0.1:{port}", *extra_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.time() + seconds
        while time.time() < end:
            time.sleep(3)
            if proc.poll() is not None:
                sys.exit(f"the {tier} daemon exited early with {proc.returncode}")
            visit(base, proc, end - time.time())
    finally:
        _stop(proc, signal.SIGTERM)


def _core_tier(out_dir, sandbox_url):
    with tempfile.TemporaryDirectory(prefix="symbol-order-") as d:
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(f'[daemon]\nprobes = ["probes/*.toml"]\nstate_dir = "{d}/state"\n\n'
                    f'[environments.bench]\nbase_url = "{sandbox_url}"\n')
        os.makedirs(os.path.join(d, "probes"))
        _http_probes(os.path.join(d, "probes"), [f"health-{i}" for i in range(10)], "bench")

        # What every deployment asks of it: the kubelet's or a load
        # balancer's health checks, and Prometheus' scrape.
        def scrape(base, _proc, _left):
            _get(base + "/readyz")
            _get(base + "/healthz")
            _get(base + "/metrics", gzipped=True)
            _get(base + "/metrics")

        _daemon(out_dir, "1-core", os.path.join(d, "config.toml"), CORE_SECONDS, [], scrape)


def _daemon_tier(out_dir, sandbox_url, sets):
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="symbol-order-") as d:
        shutil.copy(os.path.join(ROOT, "config.toml"), d)
        shutil.copytree(os.path.join(ROOT, "probes"), os.path.join(d, "probes"))
        with open(os.path.join(d, "config.toml"), "a") as f:
            f.write("\n[alerting]\ngroup_wait = \"1s\"\ndefault_receivers = [\"hook\"]\n\n"
                    "[alerting.receivers.hook]\ntype = \"webhook\"\n"
                    f"url = \"http://127.0.0.1:{receiver.server_address[1]}/hook\"\n")
        probes = os.path.join(d, "probes")
        _http_probes(probes, ["reloaded"], "sandbox")
        with open(os.path.join(probes, "failing.toml"), "w") as f:
            f.write('name = "failing"\nenvironments = ["sandbox"]\nschedule = "every 1s"\n'
                    'timeout = "800ms"\n[alert]\nfire_after = 1\nresolve_after = 1\n'
                    '[http]\nurl = "/status/503"\n')
        reloaded = []

        def visit(base, proc, left):
            _get(base + "/metrics", gzipped=True)
            for path in ("/", "/healthz", "/readyz", "/api/v1/probes", "/api/v1/slos",
                         "/api/v1/silences", "/api/v1/probes/failing/sandbox/runs",
                         "/api/v1/probes/failing/sandbox/latency"):
                _get(base + path)
            if not reloaded and left < DAEMON_SECONDS / 2:
                os.remove(os.path.join(probes, "reloaded.toml"))
                proc.send_signal(signal.SIGHUP)
                reloaded.append(True)

        try:
            _daemon(out_dir, "2-daemon", os.path.join(d, "config.toml"), DAEMON_SECONDS,
                    ["--set", f"daemon.state_dir={d}/state",
                     "--set", f"environments.sandbox.base_url={sandbox_url}", *sets], visit)
        finally:
            receiver.shutdown()


def _command_tier(out_dir):
    config = os.path.join(ROOT, "config.toml")

    def run(*args):
        done = subprocess.run([*_callgrind(out_dir, "3-command"), BINARY, *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=600)
        # 1 is a probe that failed, which training may see; 2 is a usage or
        # config error, which would leave the tier untrained.
        if done.returncode not in (0, 1):
            sys.exit(f"synthmon {' '.join(args[2:])} exited with {done.returncode}:\n"
                     f"{done.stderr[-2000:]}")

    with tempfile.TemporaryDirectory(prefix="symbol-order-") as d:
        run("--config", config, "check")
        run("--config", config, "list")
        run("--config", config, "--once", "--output", "json",
            "--junit", os.path.join(d, "junit.xml"), "--html", os.path.join(d, "report.html"))
        os.makedirs(os.path.join(d, "probes"))
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write('[daemon]\nprobes = ["probes/*.toml"]\n\n'
                    '[environments.load]\nbase_url = "builtin:sandbox"\n')
        shapes = {
            "fresh": '[http]\nurl = "/health"\n',
            "kept": 'keep_alive = true\n[http]\nurl = "/health"\n',
            "post": ('[http]\nmethod = "POST"\nurl = "/echo"\n'
                     'json = { item = "{{ choice([\'widget\', \'gadget\']) }}", '
                     'quantity = "{{ zipf(10, 1.2) }}", customer = "{{ name() }}", '
                     'email = "{{ email() }}", ref = "{{ synthetic_id() }}" }\n'),
        }
        for name, rest in shapes.items():
            with open(os.path.join(d, "probes", f"{name}.toml"), "w") as f:
                f.write(f'name = "{name}"\nenvironments = ["load"]\nschedule = "every 1h"\n'
                        'timeout = "5s"\nthresholds = ["p(99) < 500ms"]\n\n'
                        '[workload]\nrate = 100\nduration = "3s"\n' + rest)
        run("--config", os.path.join(d, "config.toml"), "--once")


def _ran(out_dir, tier):
    """{function: instructions it ran itself} over a tier's callgrind files."""
    files = glob.glob(os.path.join(out_dir, f"{tier}.*.out"))
    if not files:
        sys.exit(f"tier {tier} wrote no callgrind output")
    cost = {}
    for path in files:
        name, inclusive = None, False
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("fn="):
                    name = line[3:].strip()
                    cost.setdefault(name, 0)
                elif line.startswith("calls="):
                    # The next cost line is the call's, not the function's own.
                    inclusive = True
                elif name is not None and line[:1].isdigit():
                    if not inclusive:
                        parts = line.split()
                        if len(parts) > 1 and parts[1].isdigit():
                            cost[name] += int(parts[1])
                    inclusive = False
    return cost


def _code_symbols(binary, numeric=False):
    flags = ["--defined-only"] + (["--numeric-sort"] if numeric else [])
    out = subprocess.run(["nm", *flags, binary], capture_output=True, text=True,
                         check=True).stdout
    return [p[2] for p in (line.split() for line in out.splitlines())
            if len(p) == 3 and p[1] in "tTwW"]


def check(binary):
    """Exit status 1 when `binary`'s code does not start with the order."""
    with open(OUT) as f:
        listed = [line.strip() for line in f if line.strip()]
    code = _code_symbols(binary, numeric=True)
    defined = set(code)
    present = [n for n in listed if n in defined]
    print(f"{binary}: defines {len(present)} of the {len(listed)} functions "
          f"{os.path.relpath(OUT, ROOT)} lists")
    if not present:
        sys.exit("none of the listed functions is defined: regenerate the file")
    # The order's first function leads the code, give or take the few the
    # linker places before any ordered section.
    if present[0] not in code[:16]:
        sys.exit(f"the order was not applied: {present[0]} is not among the first "
                 f"functions of the code ({', '.join(code[:4])}, ...)")
    print(f"applied: the code starts with {present[0]}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is missing (apt-get install valgrind)")
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    defined = set(_code_symbols(BINARY))
    with tempfile.TemporaryDirectory(prefix="symbol-order-") as out_dir:
        sandbox, sandbox_url, sets = _sandbox()
        try:
            _core_tier(out_dir, sandbox_url)
            _daemon_tier(out_dir, sandbox_url, sets)
        finally:
            _stop(sandbox, signal.SIGINT)
        _command_tier(out_dir)
        tiers = [_ran(out_dir, t) for t in ("1-core", "2-daemon", "3-command")]
    order, seen = [], set()
    for tier in tiers:
        for name in sorted(tier, key=lambda n: -tier[n]):
            if name in defined and name not in seen:
                order.append(name)
                seen.add(name)
    with open(OUT, "w") as f:
        f.write("".join(n + "\n" for n in order))
    print(f"{os.path.relpath(OUT, ROOT)}: {len(order)} functions; the tiers ran "
          f"{', '.join(str(len(t)) for t in tiers)} (libraries' included), "
          f"{len(defined)} are defined")


if __name__ == "__main__":
    main()
