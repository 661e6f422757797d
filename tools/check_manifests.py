#!/usr/bin/python3
"""check_manifests.py BIN_DIR OPENAPI_JSON MANIFEST.yaml... — the Kubernetes manifests against
the binaries they run, so that the two cannot drift apart:

- every container's binary exists in BIN_DIR, and every --flag it is given (in args, in an
  exec probe, or on a `cirrus ...` line of a /bin/sh -c script) is one its own --help lists
  (`cirrus SUBCOMMAND --help` for the tool's subcommands);
- every containerPort is a port the container binds (--bind tcp://HOST:P, --http HOST:P), every
  exec probe's endpoint and httpGet probe's port is a containerPort, every httpGet path is a
  route the gateway serves (its OpenAPI document, plus /healthz, /readyz, /metrics);
- every Service selects some pod template and names only ports those pods expose;
- every volumeMount names a volume or a volumeClaimTemplate; every configMap volume names a
  ConfigMap of the manifests; every cluster map in a ConfigMap is JSON whose endpoints name a
  Service (or a StatefulSet pod through its headless Service: NAME-i.SERVICE, i < replicas)
  and one of its ports.
Prints each problem; exit 1 when there is one."""
import json
import re
import shlex
import subprocess
import sys

import yaml

GATEWAY_EXTRA = {"/healthz", "/readyz", "/metrics", "/", "/index.html", "/openapi.json"}
problems = []
help_cache = {}


def problem(where, what):
    problems.append(f"{where}: {what}")


def help_text(bin_dir, argv):
    key = tuple(argv)
    if key not in help_cache:
        try:
            out = subprocess.run([f"{bin_dir}/{argv[0]}", *argv[1:], "--help"], capture_output=True,
                                 text=True, timeout=20)
            help_cache[key] = out.stdout + out.stderr if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            help_cache[key] = None
    return help_cache[key]


def check_command(where, bin_dir, argv):
    """argv: a full command line. Checks the binary and each --flag against its help."""
    if not argv:
        return
    binary = argv[0].rsplit("/", 1)[-1]
    if not binary.startswith("cirrus"):
        return
    words = [binary]
    rest = argv[1:]
    if binary == "cirrus":  # global flags may come first; the first bare word is the command
        i = 0
        while i < len(rest) and rest[i].startswith("--"):
            i += 2 if rest[i] in ("--endpoint", "--timeout", "--log") else 1
        if i < len(rest):
            words.append(rest[i])
    text = help_text(bin_dir, words)
    if text is None:
        problem(where, f"`{' '.join(words)} --help` fails: no such binary or command")
        return
    globals_ = help_text(bin_dir, ["cirrus"]) if binary == "cirrus" else ""
    for a in rest:
        if a.startswith("--"):
            flag = a.split("=", 1)[0]
            if not re.search(re.escape(flag) + r"\b", text + (globals_ or "")):
                problem(where, f"{' '.join(words)}: flag {flag} is not in its --help")


def script_commands(script):
    """The `cirrus...` command lines of a shell script (continuation lines joined)."""
    joined = script.replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("cirrus"):
            try:
                yield shlex.split(line, comments=True)
            except ValueError as e:
                yield ["cirrus", f"--unparsable-{e}"]


def bound_ports(argv):
    ports = set()
    for i, a in enumerate(argv):
        if a in ("--bind", "--http", "--worker-bind") and i + 1 < len(argv):
            m = re.search(r":(\d+)$", argv[i + 1])
            if m:
                ports.add(int(m.group(1)))
    return ports


def pod_templates(docs):
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            yield d, spec["template"]


def check_container(where, bin_dir, c, routes):
    argv = list(c.get("command", [])) + list(c.get("args", []))
    if argv[:2] == ["/bin/sh", "-c"]:
        for cmd in script_commands(argv[2] if len(argv) > 2 else ""):
            check_command(where, bin_dir, cmd)
        bound = set()
    else:
        check_command(where, bin_dir, argv)
        bound = bound_ports(argv)
    ports = {p["containerPort"] for p in c.get("ports", [])}
    for p in ports - bound:
        problem(where, f"containerPort {p} is not bound by the command ({sorted(bound)})")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        pr = c.get(probe)
        if not pr:
            continue
        if "exec" in pr:
            cmd = pr["exec"]["command"]
            check_command(f"{where} {probe}", bin_dir, cmd)
            for i, a in enumerate(cmd):
                if a == "--endpoint":
                    m = re.search(r":(\d+)$", cmd[i + 1])
                    if not m or int(m.group(1)) not in ports:
                        problem(where, f"{probe} talks to {cmd[i + 1]}, not a containerPort")
        if "httpGet" in pr:
            hg = pr["httpGet"]
            if hg.get("port") not in ports:
                problem(where, f"{probe} httpGet port {hg.get('port')} is not a containerPort")
            if hg.get("path") not in routes:
                problem(where, f"{probe} httpGet path {hg.get('path')} is not a gateway route")
    return ports


def check_volumes(where, tmpl_spec, claim_names, configmaps):
    vols = {v["name"]: v for v in tmpl_spec.get("volumes", [])}
    for c in tmpl_spec.get("containers", []):
        for m in c.get("volumeMounts", []):
            if m["name"] not in vols and m["name"] not in claim_names:
                problem(where, f"volumeMount {m['name']} names no volume")
    for v in vols.values():
        if "configMap" in v and v["configMap"]["name"] not in configmaps:
            problem(where, f"volume {v['name']} names ConfigMap {v['configMap']['name']}, "
                           "which the manifests do not define")


def check_map(where, text, services, statefulsets):
    try:
        m = json.loads(text)
    except ValueError as e:
        problem(where, f"cluster map is not JSON: {e}")
        return
    eps = [e for g in m.get("groups", []) for e in g] + m.get("encoders", [])
    if m.get("jobs"):
        eps.append(m["jobs"])
    for ep in eps:
        mm = re.fullmatch(r"tcp://([^:]+):(\d+)", ep)
        if not mm:
            problem(where, f"endpoint {ep} is not tcp://HOST:PORT")
            continue
        host, port = mm.group(1), int(mm.group(2))
        parts = host.split(".")
        if len(parts) >= 2 and parts[1] in services:  # pod of a StatefulSet via its Service
            pod = re.fullmatch(r"(.+)-(\d+)", parts[0])
            ss = statefulsets.get(pod.group(1)) if pod else None
            if not ss or ss["spec"].get("serviceName") != parts[1] or \
                    int(pod.group(2)) >= ss["spec"].get("replicas", 1):
                problem(where, f"endpoint {ep}: no such StatefulSet pod behind {parts[1]}")
            svc = services[parts[1]]
        elif parts[0] in services:
            svc = services[parts[0]]
        else:
            problem(where, f"endpoint {ep}: host {host} is no Service of the manifests")
            continue
        if port not in {p["port"] for p in svc["spec"]["ports"]}:
            problem(where, f"endpoint {ep}: Service {svc['metadata']['name']} has no port {port}")


def main():
    bin_dir, openapi = sys.argv[1], sys.argv[2]
    with open(openapi) as f:
        routes = set(json.load(f)["paths"]) | GATEWAY_EXTRA
    docs = []
    for path in sys.argv[3:]:
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    statefulsets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    exposed = []  # (labels, ports) of every pod template
    n_containers = 0
    for d, tmpl in pod_templates(docs):
        name = f"{d['kind']}/{d['metadata']['name']}"
        spec = tmpl["spec"]
        claims = {c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates", [])}
        ports = set()
        for c in spec["containers"]:
            ports |= check_container(f"{name} container {c['name']}", bin_dir, c, routes)
            n_containers += 1
        check_volumes(name, spec, claims, configmaps)
        exposed.append((tmpl.get("metadata", {}).get("labels", {}), ports))
    for s in services.values():
        sel = s["spec"].get("selector", {})
        pods = [p for labels, p in exposed if sel and all(labels.get(k) == v for k, v in sel.items())]
        if not pods:
            problem(f"Service/{s['metadata']['name']}", f"selector {sel} matches no pod template")
            continue
        for p in s["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            if not any(target in ports for ports in pods):
                problem(f"Service/{s['metadata']['name']}", f"port {target} is exposed by no "
                                                            "selected pod")
    for cm in configmaps.values():
        for key, text in cm.get("data", {}).items():
            if key.endswith(".json"):
                check_map(f"ConfigMap/{cm['metadata']['name']} {key}", text, services, statefulsets)
    for p in problems:
        print("manifest:", p)
    if n_containers == 0:
        print("manifest: no containers found: nothing was checked")
        return 1
    print(f"manifests: {n_containers} containers, {len(services)} services checked; "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
