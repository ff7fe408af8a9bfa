#!/usr/bin/python3
"""Build figures from the sources alone: for every project header, how many
translation units (.cc files) include it, directly or through other project
headers, i.e. how many recompile when it is touched; and the lines of code
per folder.

  tools/dev/include_impact.py [ROOT] [--top N] [--json OUT]

Only #include "..." lines that name a file under ROOT count (system and
third-party headers are ignored, as are generated protobuf headers, which
are listed by name)."""
import argparse
import json
import os
import re

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root", nargs="?", default=".")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--json")
    a = p.parse_args()
    root = os.path.abspath(a.root)
    files = {}
    cmake_dirs = set()
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith((".", "build"))]
        if "CMakeLists.txt" in names and d != root:
            cmake_dirs.add(os.path.relpath(d, root))
        for n in names:
            if n.endswith((".cc", ".h")):
                path = os.path.relpath(os.path.join(d, n), root)
                files[path] = INCLUDE.findall(open(os.path.join(d, n), errors="ignore").read())
    closure = {}

    def headers_of(path, seen):
        for inc in files.get(path, []):
            if inc in files and inc not in seen:
                seen.add(inc)
                headers_of(inc, seen)
        return seen

    units = [f for f in files if f.endswith(".cc") and not f.startswith("tests/fuzz")]
    for u in units:
        closure[u] = headers_of(u, set())
    count = {}
    for u, hs in closure.items():
        for h in hs:
            count[h] = count.get(h, 0) + 1
    top = sorted(count.items(), key=lambda kv: -kv[1])[: a.top]
    # Lines per library: each folder with its own CMakeLists.txt counts the
    # files it holds itself (a nested library's files count for that one);
    # tests/ counts whole.
    libraries = sorted(d for d in cmake_dirs if not d.startswith("tests"))
    lines = {}
    for f in files:
        if not f.endswith((".cc", ".h")):
            continue
        owner = "tests" if f.startswith("tests/") else max(
            (lib for lib in libraries if f.startswith(lib + "/")), key=len, default=None)
        if owner is None:
            continue
        lines[owner] = lines.get(owner, 0) + sum(1 for _ in open(os.path.join(root, f),
                                                                  errors="ignore"))
    out = {"translation_units": len(units),
           "most_included": [{"header": h, "units": n} for h, n in top],
           "lines": lines}
    for name in ("teacher/teacher.h", "models/causal_lm.h", "client/teacher_client.h",
                 "trainer/task.h", "trainer/training_loop.h", "trainer/classifier/classifier_trainer.h"):
        if name in files:
            out.setdefault("selected", {})[name] = count.get(name, 0)
    print(json.dumps(out, indent=2))
    if a.json:
        json.dump(out, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
