#!/usr/bin/python3
"""An independent reference for the Hugging Face Llama layout, for the tests:
written from the safetensors specification and from transformers'
modeling_llama.py (LlamaRMSNorm, LlamaRotaryEmbedding with rotate_half,
repeat_kv, LlamaAttention, LlamaMLP), with only Python's standard library
and Debian's python3-torch (not our C++ code, not transformers). The same
block's relatives, from their modeling files: Qwen2 (q/k/v_proj with bias),
Qwen3 (q_norm/k_norm: RMSNorm over head_dim of each head before the rotation),
Mistral (sliding window: key j is masked for query i when j <= i - window),
and Llama 3's rope_scaling "llama3" (_compute_llama3_parameters in
modeling_rope_utils.py). --config sets "model_type" and the fields.

  llama_reference.py write DIR [--seed S] [--config JSON] [--dtype f32|bf16|f16] [--shards N]
      writes DIR/config.json (the LlamaConfig layout) and DIR/model.safetensors
      (random weights under the transformers tensor names), or with N > 1
      N shards model-0000i-of-0000N.safetensors and model.safetensors.index.json
      (transformers' sharded layout); `logits` reads either
  llama_reference.py logits DIR TOKENS_JSON OUT_JSON
      runs the forward pass in float64 for a batch of equal-length token id
      lists and writes {"logits": [[[...]]], "shape": [B, T, V]}
  llama_reference.py selftest
"""
import json
import math
import os
import struct
import sys
import tempfile

import torch

DEFAULTS = {"vocab_size": 97, "hidden_size": 64, "intermediate_size": 172,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 64, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False}
FIXED = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
         "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
         "torch_dtype": "float32", "initializer_range": 0.02, "use_cache": True,
         "rope_scaling": None, "attention_dropout": 0.0, "pretraining_tp": 1}
DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}
NAMES = {v: k for k, v in DTYPES.items()}
FAMILY = {"llama": {}, "qwen2": {"architectures": ["Qwen2ForCausalLM"], "use_sliding_window": False,
                                 "sliding_window": None, "max_window_layers": 2},
          "qwen3": {"architectures": ["Qwen3ForCausalLM"], "use_sliding_window": False,
                    "sliding_window": None},
          "mistral": {"architectures": ["MistralForCausalLM"], "sliding_window": None}}
CLI_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def save_safetensors(path, tensors):
    header, chunks, end = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in sorted(tensors.items()):
        t = t.contiguous()
        blob = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [end, end + len(blob)]}
        chunks.append(blob)
        end += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def load_safetensors(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header, data, out = json.loads(blob[8:8 + n]), blob[8 + n:], {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, stop = e["data_offsets"]
        dt = DTYPES[e["dtype"]]
        raw = bytearray(data[begin:stop])
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if raw else torch.zeros(0, dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.zeros(0, dtype=dt)
        out[name] = t.reshape(e["shape"]).float()
    return out


INDEX = "model.safetensors.index.json"


def save_weights(d, tensors, shards=1):
    """One model.safetensors, or `shards` files of about equal bytes and the index."""
    if shards <= 1:
        save_safetensors(os.path.join(d, "model.safetensors"), tensors)
        return
    names = sorted(tensors)
    total = sum(tensors[n].numel() * tensors[n].element_size() for n in names)
    groups, acc = [[] for _ in range(shards)], 0
    for n in names:  # by cumulative bytes: shard i takes what starts in its i-th of the total
        groups[min(shards - 1, acc * shards // total)].append(n)
        acc += tensors[n].numel() * tensors[n].element_size()
    weight_map = {}
    for i, group in enumerate(groups):
        f = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_safetensors(os.path.join(d, f), {n: tensors[n] for n in group})
        weight_map.update({n: f for n in group})
    with open(os.path.join(d, INDEX), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def load_weights(d):
    """model.safetensors, or every shard the index names (each tensor where it says)."""
    if not os.path.exists(os.path.join(d, INDEX)):
        return load_safetensors(os.path.join(d, "model.safetensors"))
    weight_map = json.load(open(os.path.join(d, INDEX)))["weight_map"]
    out = {}
    for f in sorted(set(weight_map.values())):
        part = load_safetensors(os.path.join(d, f))
        for n in part:
            assert weight_map.get(n) == f, f"{f} holds {n}, which the index puts in {weight_map.get(n)}"
        out.update(part)
    assert set(out) == set(weight_map), f"index names tensors no shard has: {set(weight_map) - set(out)}"
    return out


def shapes(c):
    V, H, I = c["vocab_size"], c["hidden_size"], c["intermediate_size"]
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = head_dim(c)
    s = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H]}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        s.update({p + "input_layernorm.weight": [H], p + "post_attention_layernorm.weight": [H],
                  p + "self_attn.q_proj.weight": [nh * hd, H], p + "self_attn.k_proj.weight": [nkv * hd, H],
                  p + "self_attn.v_proj.weight": [nkv * hd, H], p + "self_attn.o_proj.weight": [H, nh * hd],
                  p + "mlp.gate_proj.weight": [I, H], p + "mlp.up_proj.weight": [I, H],
                  p + "mlp.down_proj.weight": [H, I]})
        if c["model_type"] == "qwen2":
            s.update({p + "self_attn.q_proj.bias": [nh * hd], p + "self_attn.k_proj.bias": [nkv * hd],
                      p + "self_attn.v_proj.bias": [nkv * hd]})
        if c["model_type"] == "qwen3":
            s.update({p + "self_attn.q_norm.weight": [hd], p + "self_attn.k_norm.weight": [hd]})
    if not c["tie_word_embeddings"]:
        s["lm_head.weight"] = [V, H]
    return s


def write(d, seed=0, config=None, dtype=torch.float32, shards=1):
    c = dict(DEFAULTS, **(config or {}))
    c = {**FIXED, **FAMILY[c.get("model_type", "llama")], **c}
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes(c).items():  # insertion order is fixed, so seeds reproduce
        w = torch.randn(shape, generator=g) * 0.02
        if name.endswith("norm.weight"):  # around 1.0 but far enough that a missing weight shows
            w = 1.0 + torch.randn(shape, generator=g) * 0.25
        tensors[name] = w.to(dtype)
    save_weights(d, tensors, shards)
    return c


def load(d):
    c = json.load(open(os.path.join(d, "config.json")))
    w = {k: v.double() for k, v in load_weights(d).items()}
    if "lm_head.weight" not in w:
        assert c.get("tie_word_embeddings", False), "lm_head.weight missing and embeddings untied"
        w["lm_head.weight"] = w["model.embed_tokens.weight"]
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("model_type", "llama")
    return c, w


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama3_inv_freq(inv_freq, r):
    """transformers' _compute_llama3_parameters."""
    factor, low, high = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
    old = r["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def rope_cos_sin(T, hd, theta, scaling=None):
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    if scaling:
        assert scaling.get("rope_type", scaling.get("type")) == "llama3", scaling
        inv_freq = llama3_inv_freq(inv_freq, scaling)
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()  # [T, hd]


def repeat_kv(x, n_rep):  # [B, nkv, T, hd] -> [B, nkv*n_rep, T, hd], kv head j serves heads j*n_rep..
    B, nkv, T, hd = x.shape
    return x[:, :, None, :, :].expand(B, nkv, n_rep, T, hd).reshape(B, nkv * n_rep, T, hd)


def head_dim(c):
    # transformers: config.head_dim when set, hidden_size // heads otherwise
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def attention(x, w, p, c):
    B, T, H = x.shape
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = head_dim(c)
    q, k, v = (proj(x, w, p + n + "_proj") for n in "qkv")
    q, k, v = q.view(B, T, nh, hd), k.view(B, T, nkv, hd), v.view(B, T, nkv, hd)
    if c["model_type"] == "qwen3":  # Qwen3Attention: q_norm / k_norm on each head
        q = rms_norm(q, w[p + "q_norm.weight"], c["rms_norm_eps"])
        k = rms_norm(k, w[p + "k_norm.weight"], c["rms_norm_eps"])
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    cos, sin = rope_cos_sin(T, hd, c["rope_theta"], c.get("rope_scaling"))
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k, v = repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv)
    scores = q @ k.transpose(2, 3) / math.sqrt(hd)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    window = c.get("sliding_window") if c["model_type"] == "mistral" else None
    if window:
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        mask = mask | (j <= i - window)
    probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(B, T, nh * hd)
    return out @ w[p + "o_proj.weight"].T


def proj(x, w, name):
    y = x @ w[name + ".weight"].T
    return y + w[name + ".bias"] if name + ".bias" in w else y


def forward(c, w, tokens):
    x = w["model.embed_tokens.weight"][torch.tensor(tokens, dtype=torch.long)]
    eps = c["rms_norm_eps"]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = x + attention(rms_norm(x, w[p + "input_layernorm.weight"], eps), w, p + "self_attn.", c)
        m = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        act = torch.nn.functional.silu(m @ w[p + "mlp.gate_proj.weight"].T) * (m @ w[p + "mlp.up_proj.weight"].T)
        x = h + act @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    return x @ w["lm_head.weight"].T  # [B, T, V] float64


def logits(d, tokens_json, out_json):
    tokens = json.load(open(tokens_json))
    assert tokens and len({len(t) for t in tokens}) == 1, "need a batch of equal-length sequences"
    out = forward(*load(d), tokens)
    with open(out_json, "w") as f:
        json.dump({"logits": out.tolist(), "shape": list(out.shape)}, f)


def unrolled_attention(x, w, p, c):
    """Per batch, head and position with scalar rotary, no repeat_kv: an independent check."""
    B, T, H = x.shape
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = head_dim(c)
    half = hd // 2
    q_all, k_all, v_all = (proj(x, w, p + n + "_proj") for n in "qkv")
    out = torch.zeros(B, T, nh * hd, dtype=torch.float64)
    window = (c.get("sliding_window") if c["model_type"] == "mistral" else None) or T + 1

    def freq(j):  # one frequency at a time, the llama3 rule written out per case
        f = c["rope_theta"] ** (-2.0 * j / hd)
        r = c.get("rope_scaling")
        if not r:
            return f
        wl = 2 * math.pi / f
        old = r["original_max_position_embeddings"]
        if wl < old / r["high_freq_factor"]:
            return f
        if wl > old / r["low_freq_factor"]:
            return f / r["factor"]
        sm = (old / wl - r["low_freq_factor"]) / (r["high_freq_factor"] - r["low_freq_factor"])
        return (1 - sm) * f / r["factor"] + sm * f

    def norm(vec, name):
        if c["model_type"] != "qwen3":
            return vec
        scale = 1.0 / math.sqrt(float((vec * vec).mean()) + c["rms_norm_eps"])
        return vec * scale * w[p + name + ".weight"]

    def rot(vec, pos, name):
        vec = norm(vec, name)
        r = vec.clone()
        for j in range(half):
            a = pos * freq(j)
            r[j] = vec[j] * math.cos(a) - vec[j + half] * math.sin(a)
            r[j + half] = vec[j + half] * math.cos(a) + vec[j] * math.sin(a)
        return r
    for b in range(B):
        for h in range(nh):
            g = h // (nh // nkv)
            ks = [rot(k_all[b, s, g * hd:(g + 1) * hd], s, "k_norm") for s in range(T)]
            for t in range(T):
                q = rot(q_all[b, t, h * hd:(h + 1) * hd], t, "q_norm")
                seen = range(max(0, t - window + 1), t + 1)
                sc = [float(q @ ks[s]) / math.sqrt(hd) for s in seen]
                mx = max(sc)
                e = [math.exp(s_ - mx) for s_ in sc]
                for i, s in enumerate(seen):
                    out[b, t, h * hd:(h + 1) * hd] += e[i] / sum(e) * v_all[b, s, g * hd:(g + 1) * hd]
    return out @ w[p + "o_proj.weight"].T


def selftest():
    with tempfile.TemporaryDirectory() as d:
        c = write(d, seed=3)
        c2, w = load(d)
        assert c2 == c and set(w) == set(shapes(c)), "round trip: names or config differ"
        assert all(list(w[n].shape) == s for n, s in shapes(c).items()), "round trip: shapes"
        g = torch.Generator().manual_seed(3)
        first = torch.randn(shapes(c)["model.embed_tokens.weight"], generator=g) * 0.02
        assert torch.equal(w["model.embed_tokens.weight"], first.double()), "round trip: values"
        print("round trip ok:", len(w), "tensors")
        tokens = [[1, 5, 17, 42, 96, 3, 8], [2, 0, 11, 11, 60, 7, 33]]
        base = forward(c, w, tokens)
        assert list(base.shape) == [2, 7, 97] and torch.isfinite(base).all()
        changed = forward(c, w, [t[:4] + [9, 9, 9] for t in tokens])
        assert torch.equal(base[:, :4], changed[:, :4]), "causality: early logits changed"
        assert not torch.allclose(base[:, 4:], changed[:, 4:]), "later logits should change"
        print("causality ok")
        x = torch.randn(2, 7, 64, generator=g, dtype=torch.float64)
        for nkv, hd in ((4, None), (2, None), (1, None), (2, 8)):
            extra = {"head_dim": hd} if hd else {}
            c3 = write(d, seed=5, config=dict({"num_key_value_heads": nkv}, **extra))
            c3, w3 = load(d)
            p = "model.layers.1.self_attn."
            diff = (attention(x, w3, p, c3) - unrolled_attention(x, w3, p, c3)).abs().max().item()
            assert diff < 1e-12, f"attention nkv={nkv} head_dim={hd}: max diff {diff}"
            print(f"attention nh=4 nkv={nkv} head_dim={hd or 16} vs unrolled per-head: max diff {diff:.2e}")
        families = {"qwen2": {"model_type": "qwen2"},
                    "qwen3": {"model_type": "qwen3", "head_dim": 24},
                    "mistral": {"model_type": "mistral", "sliding_window": 3},
                    "llama3": {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}}
        for name, extra in families.items():
            c5 = write(d, seed=6, config=dict({"num_key_value_heads": 2}, **extra))
            c5, w5 = load(d)
            p = "model.layers.0.self_attn."
            diff = (attention(x, w5, p, c5) - unrolled_attention(x, w5, p, c5)).abs().max().item()
            assert diff < 1e-12, f"attention {name}: max diff {diff}"
            print(f"attention {name} vs unrolled per-head: max diff {diff:.2e}")
        # the features change the logits (so a test that ignored one would see it)
        write(d, seed=6)
        plain = forward(*load(d), tokens)
        for name, extra in families.items():
            write(d, seed=6, config=extra)
            other = forward(*load(d), tokens)
            assert other.shape == plain.shape
            if name != "qwen3":  # same tensors drawn: the feature alone changes the logits
                assert (other - plain).abs().max() > 1e-6, f"{name} changed nothing"
        print("each family's feature changes the logits")
        c4 = write(d, seed=7, config={"tie_word_embeddings": True}, dtype=torch.bfloat16)
        c4, w4 = load(d)
        assert torch.equal(w4["lm_head.weight"], w4["model.embed_tokens.weight"])
        with open(os.path.join(d, "t.json"), "w") as f:
            json.dump(tokens, f)
        logits(d, os.path.join(d, "t.json"), os.path.join(d, "o.json"))
        o = json.load(open(os.path.join(d, "o.json")))
        assert o["shape"] == [2, 7, 97] and len(o["logits"][1][6]) == 97
        print("tied bf16 load + logits CLI ok")
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d3:
        write(d1, seed=9)
        write(d3, seed=9, shards=3)
        assert len([f for f in os.listdir(d3) if f.startswith("model-")]) == 3
        (_, w1), (_, w3) = load(d1), load(d3)
        assert set(w1) == set(w3) and all(torch.equal(w1[n], w3[n]) for n in w1), "sharded != single"
        print("3 shards + index load as the single file ok")
    print("selftest passed")


def main(argv):
    if argv[0] == "write":
        opts = dict(zip(argv[2::2], argv[3::2]))
        assert set(opts) <= {"--seed", "--config", "--dtype", "--shards"}, f"unknown options {opts}"
        write(argv[1], int(opts.get("--seed", 0)), json.loads(opts.get("--config", "{}")),
              CLI_DTYPES[opts.get("--dtype", "f32")], int(opts.get("--shards", 1)))
    elif argv[0] == "logits":
        logits(*argv[1:4])
    elif argv[0] == "selftest":
        selftest()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:] or ["help"])
