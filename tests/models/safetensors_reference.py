#!/usr/bin/python3
"""An independent safetensors writer and checker for the tests, from the
format's specification with Python's struct and json and Debian's
python3-torch (not our C++ code).

  safetensors_reference.py write PATH   writes the reference tensors
  safetensors_reference.py check PATH   checks a file holds exactly them
"""
import json
import struct
import sys

import torch


def reference():
    return {
        "embed.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8,
        "norm.weight": torch.tensor([1.5, -2.25], dtype=torch.bfloat16),
        "half": torch.tensor([0.5, 65504.0, -1.0], dtype=torch.float16),
        "double": torch.tensor([[3.25]], dtype=torch.float64),
        "ids": torch.tensor([-7, 1 << 40], dtype=torch.int64),
        "i32": torch.tensor([-3, 5, 9], dtype=torch.int32),
        "bytes": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True], dtype=torch.bool),
        "scalar": torch.tensor(2.0, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }


NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
         torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def raw(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write(path):
    header, data = {"__metadata__": {"format": "pt", "source": "reference"}}, b""
    for name, t in sorted(reference().items()):
        blob = raw(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def check(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0, f"header length {n} is not 8-aligned"
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    ref = reference()
    names = [k for k in header if k != "__metadata__"]
    assert sorted(names) == sorted(ref), f"names {sorted(names)}"
    assert header.get("__metadata__") == {"format": "pt", "source": "retort"}, header.get("__metadata__")
    end = 0
    for name in sorted(names, key=lambda k: header[k]["data_offsets"][0]):
        entry, t = header[name], ref[name]
        begin, stop = entry["data_offsets"]
        assert begin == end, f"{name}: begins at {begin}, expected {end}"
        assert entry["dtype"] == NAMES[t.dtype], f"{name}: dtype {entry['dtype']}"
        assert entry["shape"] == list(t.shape), f"{name}: shape {entry['shape']}"
        assert data[begin:stop] == raw(t), f"{name}: bytes differ"
        end = stop
    assert end == len(data), "data region has trailing bytes"
    print("reference check passed:", len(names), "tensors")


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
