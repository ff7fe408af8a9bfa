"""A small learnable text corpus (sentences from a tiny grammar), the same
one the LM end-to-end tests use, for `retort data prepare --vocab_size=320`."""

import random
import subprocess

SUBJECTS = ["the king", "a shepherd", "the people", "his servant", "the prophet", "a woman",
            "the children", "my brother"]
VERBS = ["went up to", "spake unto", "looked upon", "came into", "departed from", "dwelt in",
         "blessed", "remembered"]
OBJECTS = ["the city", "the mountain", "the temple", "jerusalem", "the wilderness",
           "the house of god", "the river", "egypt"]


def write_grammar_text(path, lines=3000, seed=5):
    """Writes `lines` sentences to `path`; the same text for the same seed."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(lines):
            f.write("%s %s %s%s\n" % (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS),
                                      ", and it was good." if rng.random() < 1 / 3 else "."))


class Unavailable(Exception):
    """This retort build cannot tokenize (no SentencePiece: sanitizer builds)."""


def prepare(retort, text, out_dir):
    """Runs `retort data prepare` on `text` into `out_dir` (SentencePiece,
    vocabulary 320). Raises Unavailable where the build has no SentencePiece,
    RuntimeError with retort's output on any other failure."""
    argv = [retort, "data", "prepare", "--text=" + text, "--vocab_size=320",
            "--validation_fraction=0.1", "--out_dir=" + out_dir]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode == 0:
        return
    if "SentencePiece is not available" in p.stdout or "this build has no SentencePiece" in p.stdout:
        raise Unavailable(p.stdout.strip().splitlines()[-1])
    raise RuntimeError("retort data prepare failed: " + p.stdout[-2000:])
