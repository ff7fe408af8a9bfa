#!/usr/bin/python3
"""A task with checkable answers, generated here: two-number addition as text.

  /usr/bin/python3 tools/bench/arith_data.py OUT [--digits=2] [--seed=1]

Writes into OUT:
  train.txt          one problem a line, "37+48=85" (every pair but the held-out ones)
  prompts_train.jsonl  {"prompt": "37+48=", "answer": "85"} for the training pairs
  prompts_eval.jsonl   the same for 500 held-out pairs never in train.txt
  tokenizer.json     a character-level tokenizer (digits, "+", "=", and <unk>, <s>,
                     </s>; a BPE model without merges) in Hugging Face's format
"""
import argparse
import json
import os
import random


def main():
    a = argparse.ArgumentParser()
    a.add_argument("out")
    a.add_argument("--digits", type=int, default=2)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--held_out", type=int, default=500)
    args = a.parse_args()
    os.makedirs(args.out, exist_ok=True)
    top = 10 ** args.digits
    pairs = [(x, y) for x in range(top) for y in range(top)]
    random.Random(args.seed).shuffle(pairs)
    held, train = pairs[:args.held_out], pairs[args.held_out:]

    def line(x, y):
        return f"{x}+{y}=", str(x + y)

    with open(os.path.join(args.out, "train.txt"), "w") as f:
        for x, y in train:
            p, s = line(x, y)
            f.write(p + s + "\n")
    for name, rows in (("prompts_train.jsonl", train), ("prompts_eval.jsonl", held)):
        with open(os.path.join(args.out, name), "w") as f:
            for x, y in rows:
                p, s = line(x, y)
                f.write(json.dumps({"prompt": p, "answer": s}) + "\n")
    specials = ["<unk>", "<s>", "</s>"]
    symbols = list("0123456789+=")
    vocab = {t: i for i, t in enumerate(specials + symbols)}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, t in enumerate(specials)],
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }
    with open(os.path.join(args.out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f, indent=1)
    print(json.dumps({"train": len(train), "held_out": len(held), "vocab": len(vocab)}))


if __name__ == "__main__":
    main()
