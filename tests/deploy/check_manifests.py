#!/usr/bin/python3
"""Checks the deployment files in deploy/ against the retort binary.

- yamllint (deploy/.yamllint) passes on every YAML file;
- every container running the retort image passes only flags that
  `retort help <command>` lists, to a command that exists;
- a trainer's --teachers=dns:///NAME:PORT names a headless Service that
  exposes PORT and selects the teacher pods;
- teacher pods are ready only when gRPC health reports retort.v1.Teacher.

usage: check_manifests.py RETORT_BINARY DEPLOY_DIR
"""
import pathlib
import re
import subprocess
import sys

import yaml

TWO_WORD = {"teacher", "bench"}


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def containers(doc):
    spec = doc.get("spec", {})
    templates = [spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")]
    # Kubeflow's PyTorchJob: one template per replica type.
    for replica in spec.get("pytorchReplicaSpecs", {}).values():
        templates.append(replica.get("template"))
    return [c for t in templates if t for c in t.get("spec", {}).get("containers", [])]


def check_launcher(f, c):
    """A container whose command starts ranks must do it through torchrun
    running the retort binary itself (--no_python)."""
    command = " ".join(c.get("command", []))
    if not command:
        return
    if "torch.distributed.run" not in command and "torchrun" not in command:
        fail(f"{f}: container {c['name']} runs `{command}`, not torchrun")
    if "--no_python" not in command and "--no-python" not in command:
        fail(f"{f}: torchrun in container {c['name']} needs --no_python to run retort")
    if not re.search(r"(^|\s)retort($|\s)", command):
        fail(f"{f}: torchrun in container {c['name']} does not start retort")


def main():
    binary, deploy = sys.argv[1], pathlib.Path(sys.argv[2])
    files = sorted(deploy.rglob("*.yaml"))
    if not files:
        fail(f"no YAML files under {deploy}")
    lint = subprocess.run(["yamllint", "-s", "-c", str(deploy / ".yamllint")] + [str(f) for f in files],
                          capture_output=True, text=True)
    if lint.returncode != 0:
        fail("yamllint:\n" + lint.stdout + lint.stderr)

    docs = []
    for f in files:
        docs += [(f, d) for d in yaml.safe_load_all(f.read_text()) if d]
    help_cache = {}
    services = {d["metadata"]["name"]: d for f, d in docs if d.get("kind") == "Service"}
    checked = 0
    for f, doc in docs:
        for c in containers(doc):
            if not c.get("image", "").startswith("retort"):
                continue
            check_launcher(f, c)
            args = c.get("args", [])
            words = args[:2] if args and args[0] in TWO_WORD else args[:1]
            command = " ".join(words)
            if command not in help_cache:
                out = subprocess.run([binary, "help", command], capture_output=True, text=True)
                if out.returncode != 0:
                    fail(f"{f}: `retort {command}` is not a command: {out.stderr.strip()}")
                help_cache[command] = out.stdout
            for arg in args[len(words):]:
                name = arg.split("=", 1)[0]
                if not name.startswith("--") or f"  {name} (default" not in help_cache[command]:
                    fail(f"{f}: `retort {command}` has no flag {name}")
                checked += 1
                m = re.fullmatch(r"--teachers=dns:///([^:/]+):(\d+)", arg)
                if m:
                    svc = services.get(m.group(1))
                    if svc is None:
                        fail(f"{f}: {arg} names no Service in {deploy}")
                    if svc["spec"].get("clusterIP") != "None":
                        fail(f"{f}: Service {m.group(1)} must be headless (clusterIP: None)")
                    if int(m.group(2)) not in [p["port"] for p in svc["spec"]["ports"]]:
                        fail(f"{f}: Service {m.group(1)} does not expose port {m.group(2)}")
            if words == ["teacher", "serve"]:
                probe = c.get("readinessProbe", {}).get("grpc", {})
                if probe.get("service") != "retort.v1.Teacher":
                    fail(f"{f}: teacher containers need a gRPC readiness probe on retort.v1.Teacher")
    if checked == 0:
        fail("no retort containers found")
    print(f"ok: {len(files)} files, {checked} flags checked against {binary}")


if __name__ == "__main__":
    main()
