#!/usr/bin/python3
"""The PyTorch (Python) training loop retort's trainer is compared against.

Same model, optimizer, schedule, batch size, data layout (whole dataset as one
in-memory tensor, batches gathered with index_select) and thread count as
`retort train` / `retort distill`, so the difference is the loop itself.

  /usr/bin/python3 tools/bench/pytorch_loop.py --mode=train --hidden=1200,1200 --dropout=0.5
  /usr/bin/python3 tools/bench/pytorch_loop.py --mode=distill --hidden=64 \
      --teacher_hidden=1200,1200 --steps=200

Prints one JSON line: {"mode", "samples_per_second", ...}. Uses Debian's
python3-torch (1.13.1, the same LibTorch kernels the C++ build links).
"""
import argparse
import gzip
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3])]
    return torch.frombuffer(bytearray(data[4 + 4 * len(dims):]), dtype=torch.uint8).reshape(dims)


def mlp(hidden, dropout):
    layers, width = [nn.Flatten()], 784
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        width = h
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["train", "distill"], default="train")
    p.add_argument("--hidden", default="1200,1200")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--teacher_hidden", default="1200,1200")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    x = read_idx(a.data_dir + "/train-images-idx3-ubyte.gz").float().div_(255).sub_(0.286).div_(0.353)
    x = x.unsqueeze(1).contiguous()
    y = read_idx(a.data_dir + "/train-labels-idx1-ubyte.gz").long()
    model = mlp([int(h) for h in a.hidden.split(",")], a.dropout)
    teacher = None
    if a.mode == "distill":
        teacher = mlp([int(h) for h in a.teacher_hidden.split(",")], 0.5).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    t = a.temperature
    warm = 20
    start = None
    for step in range(a.steps + warm):
        if step == warm:
            start = time.perf_counter()
        idx = torch.randint(0, x.shape[0], (a.batch_size,))
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / (a.steps + warm)))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        if teacher is not None:
            with torch.inference_mode():
                lt = F.log_softmax(teacher(xb) / t, 1)
            ls = F.log_softmax(logits / t, 1)
            kl = (lt.exp() * (lt - ls)).sum(1).mean()
            loss = a.alpha * t * t * kl + (1 - a.alpha) * loss
        loss.backward()
        opt.step()
        loss.item()
    elapsed = time.perf_counter() - start
    print(json.dumps({"mode": a.mode, "hidden": a.hidden, "threads": a.threads,
                      "batch_size": a.batch_size, "steps": a.steps,
                      "samples_per_second": a.steps * a.batch_size / elapsed}))


if __name__ == "__main__":
    main()
