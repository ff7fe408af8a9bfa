#!/usr/bin/python3
"""The PyTorch (Python) training loop retort's trainer is compared against.

Same model, optimizer, schedule, batch size, data layout (whole dataset as one
in-memory tensor, batches gathered with index_select) and thread count as
`retort train` / `retort distill`, so the difference is the loop itself.

  /usr/bin/python3 tools/bench/pytorch_loop.py --mode=train --hidden=1200,1200 --dropout=0.5
  /usr/bin/python3 tools/bench/pytorch_loop.py --mode=distill --hidden=64 \
      --teacher_hidden=1200,1200 --steps=200
  /usr/bin/python3 tools/bench/pytorch_loop.py --mode=lm --model=d=128,layers=2,heads=4,ffn=344 \
      --batch_size=16 --seq_len=128 --vocab=4096 [--teacher_model=d=256,layers=4,heads=8,ffn=688 --top_k=64]

--mode=lm is a Llama (RMSNorm, rotary attention, SwiGLU, tied embeddings) as
`retort lm train` builds it, trained on next-token cross-entropy, or
distilled from a Llama teacher's top-k log-probabilities plus the tail
mass (the k + 1 bucket forward KL of trainer/lm/lm_distillation_loss.h), with
AdamW, the cosine schedule and gradient clipping at 1.

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


def parse_model(spec, vocab, seq_len):
    c = {"d": 128, "layers": 2, "heads": 4, "ffn": 344}
    for item in spec.split(","):
        if "=" in item:
            k, v = item.split("=")
            c[k] = int(v)
    c["vocab"], c["ctx"] = vocab, seq_len
    return c


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["d"], c["ffn"]
        self.heads, self.hd = c["heads"], d // c["heads"]
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
        self.down = nn.Linear(f, d, bias=False)
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)

    def forward(self, x, cos, sin, mask):
        B, T, d = x.shape
        h = self.n1(x)
        q, k, v = (m(h).view(B, T, self.heads, self.hd).transpose(1, 2)
                   for m in (self.q, self.k, self.v))

        def rope(t):
            t1, t2 = t[..., : self.hd // 2], t[..., self.hd // 2:]
            return t * cos + torch.cat([-t2, t1], -1) * sin
        q, k = rope(q), rope(k)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, d)
        x = x + self.o(y)
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed = nn.Embedding(c["vocab"], c["d"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["d"])
        hd, T = c["d"] // c["heads"], c["ctx"]
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(T).float(), inv)
        emb = torch.cat([f, f], -1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1), persistent=False)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T], self.mask[:T, :T])
        return self.norm(x) @ self.embed.weight.t()  # tied head


def lm_loop(a):
    c = parse_model(a.model, a.vocab, a.seq_len)
    model = Llama(c)
    teacher = None
    if a.teacher_model:
        teacher = Llama(parse_model(a.teacher_model, a.vocab, a.seq_len)).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    t, warm, start = a.temperature, 5, None
    data = torch.randint(0, a.vocab, (4096, a.seq_len + 1))
    for step in range(a.steps + warm):
        if step == warm:
            start = time.perf_counter()
        seq = data.index_select(0, torch.randint(0, data.shape[0], (a.batch_size,)))
        x, y = seq[:, :-1], seq[:, 1:].reshape(-1)
        lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / (a.steps + warm)))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        z = model(x).reshape(-1, a.vocab)
        loss = F.cross_entropy(z, y)
        if teacher is not None:
            with torch.no_grad():
                lt = F.log_softmax(teacher(x).reshape(-1, a.vocab) / t, -1)
                v, i = lt.topk(a.top_k, -1)
                tail = lt.scatter(-1, i, float("-inf")).logsumexp(-1)
            ls = F.log_softmax(z / t, -1)
            qs, qtail = ls.gather(-1, i), ls.scatter(-1, i, float("-inf")).logsumexp(-1)
            kl = (v.exp() * (v - qs)).sum(-1) + tail.exp() * (tail - qtail)
            loss = a.alpha * t * t * kl.mean() + (1 - a.alpha) * loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
    elapsed = time.perf_counter() - start
    print(json.dumps({"mode": "lm", "model": a.model, "teacher_model": a.teacher_model,
                      "top_k": a.top_k, "threads": a.threads, "batch_size": a.batch_size,
                      "seq_len": a.seq_len, "steps": a.steps,
                      "tokens_per_second": a.steps * a.batch_size * a.seq_len / elapsed}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["train", "distill", "lm"], default="train")
    p.add_argument("--model", default="d=128,layers=2,heads=4,ffn=344")
    p.add_argument("--teacher_model", default="")
    p.add_argument("--top_k", type=int, default=64)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=4096)
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
    if a.mode == "lm":
        lm_loop(a)
        return
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
