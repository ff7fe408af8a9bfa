#!/usr/bin/python3
"""Greedy generation with a key/value cache in PyTorch (Python), the loop a
user would write, on the same checkpoint and prompts as
`retort bench generate` (tools/bench/generate.sh runs both).

  /usr/bin/python3 tools/bench/pytorch_generate.py --checkpoint=DIR --batch_size=8 \
      --prompt_tokens=32 --max_new_tokens=96 --seed=1 --threads=1

Reads config.json and the safetensors weights with the independent
reference's reader (tests/models/llama_reference.py), builds the Llama
forward pass in float32 (RMSNorm, rotary attention with grouped-query heads,
SwiGLU; the llama family only), prefills the prompts and decodes one token at
a time from cached keys and values. Prints one JSON line with tokens/s and
the generated tokens. Uses Debian's python3-torch (1.13.1, the same LibTorch
kernels the C++ build links).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "models"))
import llama_reference as ref  # noqa: E402


def prompts(batch, length, vocab, seed):
    """The same ids `retort bench generate` draws (a 64-bit LCG)."""
    x, out, mask = seed, [], (1 << 64) - 1
    for _ in range(batch):
        row = []
        for _ in range(length):
            x = (x * 6364136223846793005 + 1442695040888963407) & mask
            row.append((x >> 33) % vocab)
        out.append(row)
    return out


class Model:
    def __init__(self, c, w):
        assert c["model_type"] == "llama", "this loop implements the llama family only"
        self.c = c
        self.w = {k: v.float() for k, v in w.items()}
        self.nh, self.nkv = c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = ref.head_dim(c)
        cos, sin = ref.rope_cos_sin(c["max_position_embeddings"], self.hd, c["rope_theta"],
                                    c.get("rope_scaling"))
        self.cos, self.sin = cos.float(), sin.float()
        self.eps = c["rms_norm_eps"]

    def norm(self, x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w[name]

    def step(self, tokens, start, cache):
        """tokens [B, T] at positions start.. -> logits of the last [B, V]."""
        w, B, T = self.w, tokens.shape[0], tokens.shape[1]
        x = w["model.embed_tokens.weight"][tokens]
        cos, sin = self.cos[start:start + T], self.sin[start:start + T]
        for i in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self.norm(x, p + "input_layernorm.weight")
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(B, T, self.nh, self.hd).transpose(1, 2)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).view(B, T, self.nkv, self.hd).transpose(1, 2)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).view(B, T, self.nkv, self.hd).transpose(1, 2)
            q = q * cos + ref.rotate_half(q) * sin
            k = k * cos + ref.rotate_half(k) * sin
            if i in cache:
                k = torch.cat([cache[i][0], k], 2)
                v = torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
            kk = ref.repeat_kv(k, self.nh // self.nkv)
            vv = ref.repeat_kv(v, self.nh // self.nkv)
            scores = q @ kk.transpose(2, 3) / math.sqrt(self.hd)
            if T > 1:
                total = kk.shape[2]
                mask = torch.ones(T, total, dtype=torch.bool).triu(total - T + 1)
                scores = scores.masked_fill(mask, float("-inf"))
            out = (torch.softmax(scores, -1) @ vv).transpose(1, 2).reshape(B, T, self.nh * self.hd)
            x = x + out @ w[p + "self_attn.o_proj.weight"].T
            m = self.norm(x, p + "post_attention_layernorm.weight")
            x = x + (F.silu(m @ w[p + "mlp.gate_proj.weight"].T) * (m @ w[p + "mlp.up_proj.weight"].T)) \
                @ w[p + "mlp.down_proj.weight"].T
        x = self.norm(x[:, -1], "model.norm.weight")
        return x @ w["lm_head.weight"].T

    def generate(self, ids, new):
        cache, tokens = {}, torch.tensor(ids, dtype=torch.long)
        logits = self.step(tokens, 0, cache)
        out, start = [], tokens.shape[1]
        for i in range(new):
            nxt = logits.argmax(-1)
            out.append(nxt)
            if i + 1 == new:
                break
            logits = self.step(nxt.unsqueeze(1), start, cache)
            start += 1
        return torch.stack(out, 1).tolist()


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--checkpoint", required=True)
    a.add_argument("--batch_size", type=int, default=8)
    a.add_argument("--prompt_tokens", type=int, default=32)
    a.add_argument("--max_new_tokens", type=int, default=96)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--threads", type=int, default=1)
    args = a.parse_args()
    torch.set_num_threads(args.threads)
    c, w = ref.load(args.checkpoint)
    model = Model(c, w)
    ids = prompts(args.batch_size, args.prompt_tokens, c["vocab_size"], args.seed)
    with torch.inference_mode():
        model.generate(ids, 2)  # warm-up
        start = time.perf_counter()
        tokens = model.generate(ids, args.max_new_tokens)
        seconds = time.perf_counter() - start
    rate = args.batch_size * args.max_new_tokens / seconds
    print(json.dumps({"framework": "pytorch", "seconds": seconds, "tokens_per_second": rate,
                      "threads": args.threads, "tokens": tokens}))


if __name__ == "__main__":
    main()
