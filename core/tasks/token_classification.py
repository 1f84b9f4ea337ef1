"""Token classification (NER): entities grouped into words and spans of the original text.

Texts longer than the model's window are read in overlapping windows (``stride`` tokens of
overlap), so entities anywhere in a long document are found, not only in its first 512 tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .. import testing
from ..wrapper import ModelWrapper

AGGREGATIONS = ("first", "average", "max")


@dataclass
class _Token:
    start: int
    end: int
    word: int
    probabilities: list[float]


@dataclass
class _Word:
    start: int
    end: int
    label: str
    score: float


class TokenClassificationWrapper(ModelWrapper):
    """Per-token labels -> per-word labels (``aggregation``) -> BIO-grouped entity spans."""

    task = "token-classification"
    default_settings = {"aggregation": "average", "stride": 32}

    auto_model_class = "AutoModelForTokenClassification"
    demo_builder = staticmethod(testing.build_ner)
    #: Every tokenizer call goes through tokenize/detokenize: passes may run at once.
    concurrent_passes = True

    @classmethod
    def resolve_settings(cls, overrides):
        settings = super().resolve_settings(overrides)
        if settings["aggregation"] not in AGGREGATIONS:
            raise ConfigError(
                f"setting 'aggregation' of model {cls.name!r} must be one of {', '.join(AGGREGATIONS)}, "
                f"got {settings['aggregation']!r}"
            )
        if settings["stride"] < 0:
            raise ConfigError(f"setting 'stride' of model {cls.name!r} must be >= 0")
        return settings

    def pass_shape(self, tokens: int) -> tuple[int, int]:
        """A text longer than the window fills one full row per window; each window after the
        first reads ``stride`` tokens of the one before again."""
        window = self.max_length
        if tokens <= window:
            return 1, tokens
        step = window - self._special_tokens() - self._stride()
        return 1 + math.ceil((tokens - window) / step), window

    def _special_tokens(self) -> int:
        """Tokens the tokenizer adds to each window, counted once under the tokenizer lock:
        admission asks on callers' threads, beside the batcher's tokenizing (see ``tokenize``)."""
        count = getattr(self, "_special_token_count", None)
        if count is None:
            with self._tokenizer_lock:
                count = self._special_token_count = self.tokenizer.num_special_tokens_to_add(pair=False)
        return count

    def pass_shapes(self, texts: Sequence[str]) -> list[tuple[int, int]]:
        """The windows of each text, as :meth:`predict_batch` will cut them."""
        encoded = self._windows(list(texts))
        shapes = [(0, 0)] * len(texts)
        for ids, sample in zip(encoded["input_ids"], encoded["overflow_to_sample_mapping"]):
            rows, length = shapes[sample]
            shapes[sample] = (rows + 1, max(length, len(ids)))
        return shapes

    def predict_batch(self, items: list[str]) -> list[list[dict[str, Any]]]:
        encoded = self._windows(items, padding=True, return_offsets_mapping=True, return_tensors="pt")
        probabilities = self.model(**self.model_inputs(encoded)).logits.float().softmax(dim=-1).tolist()
        windows_of = encoded["overflow_to_sample_mapping"].tolist()
        offsets = encoded["offset_mapping"].tolist()
        tokens: list[list[_Token]] = [[] for _ in items]
        for window, sample in enumerate(windows_of):
            kept = tokens[sample]
            covered = kept[-1].end if kept else 0
            for position, word in enumerate(encoded.word_ids(window)):
                start, end = offsets[window][position]
                if word is None or end <= start or start < covered:
                    continue  # special/padding token, or already read in the previous window
                kept.append(_Token(start, end, word, probabilities[window][position]))
        labels = self.model.config.id2label
        return [self._entities(text, self._words(toks, labels)) for text, toks in zip(items, tokens)]

    def _stride(self) -> int:
        return min(self.settings["stride"], self.max_length // 2)

    def _windows(self, items: list[str], **options: Any) -> Any:
        """Tokenize ``items`` into overlapping windows of at most ``max_length`` tokens."""
        return self.tokenize(items, truncation=True, max_length=self.max_length, stride=self._stride(),
                             return_overflowing_tokens=True, **options)

    def _words(self, tokens: list[_Token], labels: dict[int, str]) -> list[_Word]:
        words: list[_Word] = []
        group: list[_Token] = []
        for token in tokens + [None]:  # type: ignore[list-item]
            if group and (token is None or token.word != group[0].word):
                words.append(self._aggregate(group, labels))
                group = []
            if token is not None:
                group.append(token)
        return words

    def _aggregate(self, group: list[_Token], labels: dict[int, str]) -> _Word:
        mode = self.settings["aggregation"]
        if mode == "first":
            probabilities = group[0].probabilities
        elif mode == "max":
            probabilities = max((t.probabilities for t in group), key=max)
        else:
            width = len(group[0].probabilities)
            probabilities = [sum(t.probabilities[i] for t in group) / len(group) for i in range(width)]
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        return _Word(group[0].start, group[-1].end, labels[best], probabilities[best])

    @staticmethod
    def _entities(text: str, words: list[_Word]) -> list[dict[str, Any]]:
        entities: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        scores: list[float] = []

        def close() -> None:
            if current is not None:
                current["score"] = sum(scores) / len(scores)
                current["word"] = text[current["start"] : current["end"]]
                entities.append(current)

        for word in words:
            prefix, _, kind = word.label.rpartition("-")
            kind = kind if prefix else word.label
            if kind == "O":
                close()
                current, scores = None, []
                continue
            if current is None or prefix == "B" or current["entity_group"] != kind:
                close()
                current = {"entity_group": kind, "word": "", "start": word.start, "end": word.end, "score": 0.0}
                scores = []
            current["end"] = word.end
            scores.append(word.score)
        close()
        return entities
