#!/usr/bin/env bash
# Offline checks of the deployment forms in deploy/ (docs/deployment.md),
# run by .ci/run:
#   1. every Kubernetes overlay renders (kubectl kustomize, or kustomize);
#   2. every rendered object validates against the Kubernetes schemas,
#      strictly (unknown fields are errors), for the oldest and newest
#      Kubernetes versions the manifests target (kubernetes-validate from
#      PyPI ships the schemas; nothing is fetched);
#   3. every edge and client configuration the manifests mount is laid out
#      as its pod would see it, with a throwaway PKI in place of the
#      Secrets, and passed to the binary's own `check`, once per pod;
#   4. the systemd units pass `systemd-analyze verify` (any output at all
#      counts as a failure) and `systemd-analyze security` (exposure at
#      most 2.0), against a scratch root holding the units as shipped and,
#      at the paths they name, copies of the real binaries;
#   5. the Grafana dashboard is JSON and queries only metrics
#      docs/operations.md documents (tests/tests/dashboard.rs checks them
#      against the registry itself); the Containerfile's COPY sources exist.
# Steps 3 and 4 use the built binaries tunnel-server, tunnel-client and
# certs from TETHER_BIN_DIR (default: target/debug, else target/release;
# `cargo test --workspace` builds all three). Needs: bash, python3 with
# PyYAML, kubernetes-validate, kubectl (or kustomize), systemd-analyze.
# Exits non-zero on the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS=(1.30.0 1.37.0)
BIN_DIR=${TETHER_BIN_DIR:-}
if [ -z "$BIN_DIR" ]; then
  for d in target/debug target/release; do
    if [ -x "$d/tunnel-server" ] && [ -x "$d/tunnel-client" ] && [ -x "$d/certs" ]; then
      BIN_DIR=$d && break
    fi
  done
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }
die() { printf 'deploy/check.sh: %s\n' "$*" >&2; exit 1; }

for tool in python3 systemd-analyze; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (.ci/run installs it)"
done
# As a module of the same python3 that runs the helpers below (PyYAML).
validate=(python3 -m kubernetes_validate)
"${validate[@]}" --version >/dev/null 2>&1 \
  || die "kubernetes-validate is missing: python3 -m pip install kubernetes-validate (.ci/run installs it)"
if command -v kubectl >/dev/null 2>&1; then
  kustomize=(kubectl kustomize)
elif command -v kustomize >/dev/null 2>&1; then
  kustomize=(kustomize build)
else
  die "neither kubectl nor kustomize is installed"
fi
[ -n "$BIN_DIR" ] || die "no built binaries: run cargo build -p tunnel-server -p tunnel-client -p certs, or set TETHER_BIN_DIR"
BIN_DIR=$(cd "$BIN_DIR" && pwd)
for b in tunnel-server tunnel-client certs; do
  [ -x "$BIN_DIR/$b" ] || die "TETHER_BIN_DIR=$BIN_DIR has no executable $b"
done
echo "binaries: $BIN_DIR"

step "1. kustomize: render every overlay (${kustomize[*]})"
mkdir -p "$work/render"
overlays=()
for dir in deploy/kubernetes/overlays/*/; do
  name=$(basename "$dir")
  overlays+=("$name")
  "${kustomize[@]}" "$dir" >"$work/render/$name.yaml"
  printf '%s: %s objects\n' "$name" "$(grep -c '^kind:' "$work/render/$name.yaml")"
done
[ ${#overlays[@]} -gt 0 ] || die "no overlay under deploy/kubernetes/overlays"

step "2. kubernetes-validate $("${validate[@]}" --version) --strict (Kubernetes ${K8S_VERSIONS[*]})"
for name in "${overlays[@]}"; do
  for v in "${K8S_VERSIONS[@]}"; do
    "${validate[@]}" --strict --quiet -k "$v" "$work/render/$name.yaml"
    printf '%s: valid against %s\n' "$name" "$v"
  done
done

step "3. the mounted configurations, checked by the binaries"
python3 - "$BIN_DIR" "$work/configs" "$work/render"/*.yaml <<'PY'
"""Lays out each Tether container's mounted files as its pod sees them and
runs `<binary> check --config …` on them, once per pod name.

ConfigMap data comes from the rendered manifests; Secret keys (which are not
in the repository) get throwaway files by name: `ca.pem` the CA, `*reset.key`
32 random bytes, `tunnel.pem`/`tunnel.key` the tunnel identity named after
the Secret (`tether-tunnel-<name>`), any other `<stem>.pem`/`<stem>.key` the
edge identity `<stem>`."""
import os, re, subprocess, sys
import yaml

bin_dir, root, renders = sys.argv[1], sys.argv[2], sys.argv[3:]
certs = os.path.join(bin_dir, "certs")
pki = os.path.join(root, "pki")
TD = "tether.example.com"
subprocess.run([certs, "ca", "create", "--trust-domain", TD, "--out", pki],
               check=True, stdout=subprocess.DEVNULL)
issued = {}

def identity(kind, name):
    """The (cert, key) paths of a throwaway identity."""
    if (kind, name) not in issued:
        subprocess.run([certs, "issue", "--ca-dir", pki, "--kind", kind,
                        "--name", name, "--out", pki],
                       check=True, stdout=subprocess.DEVNULL)
        stem = os.path.join(pki, f"{kind}-{name}")
        issued[(kind, name)] = (stem + ".pem", stem + ".key")
    return issued[(kind, name)]

def secret_file(secret, key):
    if key == "ca.pem":
        return open(os.path.join(pki, "ca.pem"), "rb").read()
    if key.endswith("reset.key"):
        return os.urandom(32)
    stem, ext = os.path.splitext(key)
    if ext not in (".pem", ".key"):
        sys.exit(f"secret {secret}: no stand-in for key {key!r}")
    if stem == "tunnel":
        m = re.fullmatch(r"tether-tunnel-([a-z0-9-]+)", secret)
        if not m:
            sys.exit(f"secret {secret}: a tunnel secret is named tether-tunnel-<name>")
        cert, keyf = identity("tunnel", m.group(1))
    else:
        cert, keyf = identity("edge", stem)
    return open(cert if ext == ".pem" else keyf, "rb").read()

def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def expand(s, pod):
    return s.replace("$(POD_NAME)", pod)

checked = failed = 0
for render in renders:
    overlay = os.path.splitext(os.path.basename(render))[0]
    docs = [d for d in yaml.safe_load_all(open(render)) if d]
    cms = {d["metadata"]["name"]: d.get("data", {})
           for d in docs if d["kind"] == "ConfigMap"}
    for wl in docs:
        if wl["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = wl["spec"]["template"]["spec"]
        name = wl["metadata"]["name"]
        if wl["kind"] == "StatefulSet":
            pods = [f"{name}-{i}" for i in range(wl["spec"].get("replicas", 1))]
        else:
            pods = [f"{name}-0123456789-abcde"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"] + spec.get("initContainers", []):
            binary = os.path.basename((c.get("command") or [""])[0])
            if binary not in ("tunnel-server", "tunnel-client"):
                continue
            for pod in pods:
                base = os.path.join(root, overlay, pod, c["name"])
                for m in c.get("volumeMounts", []):
                    mount = base + m["mountPath"]
                    os.makedirs(mount, exist_ok=True)
                    # (a volumeClaimTemplate's claim is in no volumes list)
                    vol = volumes.get(m["name"], {})
                    sources = vol.get("projected", {}).get("sources", [])
                    if "configMap" in vol:
                        sources = [{"configMap": vol["configMap"]}]
                    if "secret" in vol:
                        sources = [{"secret": vol["secret"]}]
                    for src in sources:
                        if "configMap" in src:
                            cm = src["configMap"]
                            data = cms[cm["name"]]
                            items = cm.get("items") or [{"key": k, "path": k} for k in data]
                            for it in items:
                                write(os.path.join(mount, it["path"]), data[it["key"]])
                        elif "secret" in src:
                            sec = src["secret"]
                            sname = sec.get("name") or sec.get("secretName")
                            if not sec.get("items"):
                                sys.exit(f"{overlay}/{name}: list the items of secret {sname}")
                            for it in sec["items"]:
                                write(os.path.join(mount, it["path"]), secret_file(sname, it["key"]))
                args = [expand(a, pod) for a in c.get("args", [])]
                config = args[args.index("--config") + 1]
                mounted = [m["mountPath"] for m in c.get("volumeMounts", [])
                           if config.startswith(m["mountPath"].rstrip("/") + "/")]
                if not mounted:
                    sys.exit(f"{overlay}/{name}/{c['name']}: --config {config} is on no volume")
                r = subprocess.run([os.path.join(bin_dir, binary), "check", "--config", base + config],
                                   capture_output=True, text=True)
                out = (r.stdout + r.stderr).strip().replace(base, "")
                checked += 1
                if r.returncode != 0:
                    failed += 1
                    print(f"FAIL {overlay} {pod}/{c['name']}: {binary} check --config {config}\n{out}")
                else:
                    print(f"ok   {overlay} {pod}/{c['name']}: {out}")
if checked == 0:
    sys.exit("no Tether container found in the rendered manifests")
if failed:
    sys.exit(f"{failed} of {checked} configurations failed their binary's check")
PY

step "4. systemd-analyze verify (deploy/systemd)"
sysroot="$work/sysroot"
mkdir -p "$sysroot/etc/systemd/system" "$sysroot/usr/lib/systemd" "$sysroot/usr/local/bin" "$sysroot/bin"
# The unit directories give verify the targets units depend on
# (sysinit.target, …); the units are verified byte for byte as shipped.
for d in /usr/lib/systemd/system /lib/systemd/system; do
  if [ -d "$d" ]; then cp -r "$d" "$sysroot/usr/lib/systemd/" && break; fi
done
cp deploy/systemd/*.service "$sysroot/etc/systemd/system/"
cp "$BIN_DIR/tunnel-server" "$BIN_DIR/tunnel-client" "$sysroot/usr/local/bin/"
# ExecReload's /bin/kill (procps): `command -v kill` names the shell builtin.
for k in /bin/kill /usr/bin/kill; do
  if [ -x "$k" ]; then cp "$k" "$sysroot/bin/kill" && break; fi
done
[ -x "$sysroot/bin/kill" ] || die "no kill binary (procps) for the units' ExecReload"
units=()
for u in deploy/systemd/*.service; do units+=("$(basename "$u")"); done
out=$(systemd-analyze verify --root="$sysroot" "${units[@]}" 2>&1) || {
  printf '%s\n' "$out"; die "systemd-analyze verify failed"; }
[ -z "$out" ] || { printf '%s\n' "$out"; die "systemd-analyze verify printed warnings"; }
printf '%s: verified\n' "${units[@]}"
# --threshold is in tenths: 20 is an exposure of 2.0 ("OK" ends at 3.9).
systemd-analyze security --offline=true --root="$sysroot" --threshold=20 "${units[@]}" \
  | grep 'Overall exposure' || die "a unit's exposure is above 2.0"

step "5. Grafana dashboard and Containerfile"
python3 - <<'PY'
import json, os, re, sys
dash = json.load(open("deploy/grafana/tether.json"))
ops = open("docs/operations.md").read()
documented = set(re.findall(r"`(tether_[a-z_]+)`", ops))
exprs = []
def walk(panels):
    for p in panels:
        walk(p.get("panels", []))
        for t in p.get("targets", []):
            exprs.append((p.get("title", "?"), t.get("expr", "")))
walk(dash.get("panels", []))
if not exprs:
    sys.exit("deploy/grafana/tether.json: no panel queries anything")
missing = []
for title, expr in exprs:
    for name in re.findall(r"tether_[a-z_]+", expr):
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if family not in documented:
            missing.append(f"{title}: {name}")
if missing:
    sys.exit("metrics not in docs/operations.md: " + ", ".join(missing))
print(f"deploy/grafana/tether.json: {len(exprs)} queries, every metric documented")
copies = 0
for line in open("deploy/container/Containerfile"):
    words = line.split()
    if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
        continue
    for src in [w for w in words[1:-1] if not w.startswith("--")]:
        if not os.path.exists(src):
            sys.exit(f"deploy/container/Containerfile: COPY source {src} does not exist")
        copies += 1
print(f"deploy/container/Containerfile: {copies} COPY sources present")
PY

printf '\ndeploy/check.sh: all checks passed\n'
