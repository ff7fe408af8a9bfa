"""A small learnable text corpus (sentences from a tiny grammar), the same
one the LM end-to-end tests use, for `retort data prepare --vocab_size=320`."""

import random

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
