"""Review-like English texts with a long tail of lengths, as user traffic to a classifier looks.

Real reviews are mostly short (a line or two) with a few long ones; a benchmark of uniform
lengths hides what length-aware batching and admission have to deal with. Word counts follow a
log-normal law (median ~18 words, ~90 % under 40) with a tail of long ones (4 % of 120 to 380
words), so with a real WordPiece tokenizer the texts run from about 8 to 512 tokens. Sentences are built from ordinary
review phrases (whole words of a real vocabulary), seeded, so every run sends the same texts.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

SUBJECTS = ["The battery", "This blender", "The hotel room", "Our waiter", "The delivery", "The screen",
            "The sound quality", "The customer service", "This jacket", "The app", "The pasta", "The seller",
            "Setup", "The instruction manual", "The price", "The keyboard", "Shipping", "The fabric",
            "The camera", "Check-in", "The staff", "The mattress", "This book", "The ending", "The charger"]
VERDICTS = ["works exactly as described", "stopped working after two weeks", "is much better than I expected",
            "was a complete waste of money", "feels cheap and flimsy", "is sturdy and well made",
            "arrived broken", "exceeded every expectation", "was friendly and helpful", "took forever",
            "is worth every penny", "is disappointing", "could be better for the price", "is excellent",
            "was rude and slow", "is comfortable even after hours", "keeps crashing", "is easy to use",
            "smells strange", "looks great in our living room", "is far too loud", "was cold and bland"]
ASIDES = ["to be honest", "after a month of daily use", "compared with the previous model", "for what it costs",
          "according to my wife", "on the second try", "in my experience", "unfortunately",
          "surprisingly", "as other reviewers said", "despite the mixed reviews", "without any doubt"]
#: The VERDICTS that praise (label 1, POSITIVE); the others complain (label 0, NEGATIVE). The
#: benchmark classifier's head (bench/minilm.py) is fitted on sentences labelled this way, so its
#: labels mean something and its logit margins are those of a trained head.
POSITIVE_VERDICTS = frozenset({
    "works exactly as described", "is much better than I expected", "is sturdy and well made",
    "exceeded every expectation", "was friendly and helpful", "is worth every penny", "is excellent",
    "is comfortable even after hours", "is easy to use", "looks great in our living room"})
CLOSINGS = ["I would buy it again.", "Would not recommend.", "Five stars from me.", "Returning it tomorrow.",
            "Highly recommended for families.", "Avoid this one.", "Good value overall.",
            "We will definitely come back.", "I contacted support twice and heard nothing.",
            "It does the job, nothing more."]

#: Most word counts are log-normal (median exp(MU) words) ...
MU, SIGMA = math.log(18), 0.6
MIN_WORDS = 4
#: ... and a few are long: uniform in LONG_WORDS.
LONG_SHARE, LONG_WORDS = 0.04, (120, 380)


def labelled_sentence(rng: random.Random, subjects: Sequence[str] = SUBJECTS) -> tuple[str, int]:
    """One review sentence, sometimes with an aside, and its label (1: its verdict praises)."""
    subject, verdict = rng.choice(subjects), rng.choice(VERDICTS)
    words = f"{subject} {verdict}"
    if rng.random() < 0.4:
        words = f"{words}, {rng.choice(ASIDES)}"
    return words + ".", int(verdict in POSITIVE_VERDICTS)


def sentence(rng: random.Random) -> str:
    """One review sentence, sometimes with an aside."""
    return labelled_sentence(rng)[0]


def review(rng: random.Random) -> str:
    """One review of about the drawn number of words (sentences added until it is reached)."""
    if rng.random() < LONG_SHARE:
        target = rng.randint(*LONG_WORDS)
    else:
        target = max(MIN_WORDS, round(rng.lognormvariate(MU, SIGMA)))
    parts: list[str] = []
    count = 0
    while count < target:
        part = rng.choice(CLOSINGS) if parts and rng.random() < 0.15 else sentence(rng)
        parts.append(part)
        count += len(part.split())
    return " ".join(parts)


def reviews(count: int, seed: int = 0) -> list[str]:
    """``count`` reviews, the same for the same seed."""
    rng = random.Random(seed)
    return [review(rng) for _ in range(count)]


def write_bodies(path: Path, model: str, count: int = 512, seed: int = 0) -> Path:
    """One JSON ``/predict`` body per line, the file the wrk script cycles through."""
    path.write_text("".join(json.dumps({"model_name": model, "data": text}) + "\n"
                            for text in reviews(count, seed)))
    return path
