"""Independent verification of Retort's training checkpoints.

Contract: a checkpoint directory ``ckpt-<12-digit step>`` is valid when its
MANIFEST.json parses, names the same step, and every file it lists exists with
the listed size and SHA-256 (checkpoint/checkpoint_store.h). This module does
not trust Retort's own verdict; the soak scans the checkpoints before every
restart and compares the one Retort resumed from with this scan.
"""

import hashlib
import json
import os
import re

_CKPT = re.compile(r"^ckpt-(\d{12})$")


def verify(path):
    """(True, "") for a valid checkpoint, else (False, why)."""
    m = _CKPT.match(os.path.basename(path.rstrip("/")))
    if not m:
        return False, "not a ckpt-<step> directory"
    try:
        with open(os.path.join(path, "MANIFEST.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        return False, "manifest unreadable: %s" % e
    if manifest.get("step") != int(m.group(1)):
        return False, "manifest step %r, directory step %d" % (manifest.get("step"), int(m.group(1)))
    files = manifest.get("files") or {}
    if not files:
        return False, "manifest lists no files"
    for name, want in files.items():
        p = os.path.join(path, name)
        try:
            size = os.path.getsize(p)
        except OSError:
            return False, "%s missing" % name
        if size != want.get("bytes"):
            return False, "%s has %d bytes, manifest says %s" % (name, size, want.get("bytes"))
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != want.get("sha256"):
            return False, "%s sha256 differs from the manifest" % name
    return True, ""


def scan(root):
    """{step: {"valid": bool, "why": str, "dir": path}} for every ckpt-* in root."""
    out = {}
    try:
        names = os.listdir(root)
    except OSError:
        return out
    for name in names:
        m = _CKPT.match(name)
        if not m:
            continue
        path = os.path.join(root, name)
        ok, why = verify(path)
        out[int(m.group(1))] = {"valid": ok, "why": why, "dir": path}
    return out


def newest_valid(scanned):
    steps = [s for s, v in scanned.items() if v["valid"]]
    return max(steps) if steps else 0


def corrupt_newest(root, rng, keep_valid=1):
    """Flips one byte in the middle of a data file of the newest valid
    checkpoint (bit rot), provided `keep_valid` valid ones remain older than
    it; returns (step, file) or None."""
    scanned = scan(root)
    if sum(1 for v in scanned.values() if v["valid"]) < 1 + keep_valid:
        return None
    step = newest_valid(scanned)
    path = scanned[step]["dir"]
    data_files = sorted(n for n in os.listdir(path) if n != "MANIFEST.json")
    if not data_files:
        return None
    name = data_files[int(rng.random() * len(data_files))]
    p = os.path.join(path, name)
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    return step, name
