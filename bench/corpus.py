"""The benchmark's inputs: sentences of 5 to 60 words, mixed like real traffic, reproducible."""

from __future__ import annotations

import json
import random
from pathlib import Path

from modeldeploy.testing import CORPUS

WORDS = sorted({word.strip(".,;") for sentence in CORPUS for word in sentence.split()})


def texts(count: int, seed: int = 0, min_words: int = 5, max_words: int = 60) -> list[str]:
    """``count`` texts with word counts uniform in [min_words, max_words]."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))) + "."
            for _ in range(count)]


def write_bodies(path: Path, model: str, count: int = 512) -> Path:
    """One JSON /predict body per line, the file the wrk script cycles through."""
    path.write_text("".join(json.dumps({"model_name": model, "data": t}) + "\n" for t in texts(count)))
    return path
