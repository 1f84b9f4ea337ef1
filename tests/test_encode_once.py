"""A round is tokenized once: ``encode`` pads the encodings ``token_lengths`` just made, exactly as
the tokenizer would have padded them."""

from __future__ import annotations

from typing import Any

import dill
import pytest
import torch

import modeldeploy
from modeldeploy.testing import CORPUS

TEXTS = [CORPUS[0], " ".join(CORPUS) * 8, CORPUS[3][:12], CORPUS[5]]  # short, truncated, tiny, medium


class CountingTokenizer:
    """The real tokenizer, counting the calls that tokenize."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.calls = tokenizer, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


def _fresh_encoding(wrapper: Any, texts: list[str]) -> dict[str, torch.Tensor]:
    wrapper._remembered = {}
    return wrapper.encode(texts)


@pytest.mark.parametrize("model", ["sentiment", "summarization", "embeddings"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_measured_texts_are_padded_exactly_as_the_tokenizer_pads_them(tiny_models, model, side) -> None:
    wrapper = modeldeploy.load(model, str(tiny_models[model]), device="cpu")
    wrapper.tokenizer.padding_side = side
    prepared = wrapper.prepare_texts(TEXTS)
    expected = _fresh_encoding(wrapper, prepared[1:])
    wrapper.tokenizer = counting = CountingTokenizer(wrapper.tokenizer)
    wrapper.token_lengths(prepared)
    assert counting.calls == 1
    padded = wrapper.encode(prepared[1:])  # a sub-batch of the measured round, as the batcher plans them
    assert counting.calls == 1, "the measured texts were tokenized again"
    assert padded.keys() == expected.keys()
    for key in expected:
        assert torch.equal(padded[key], expected[key]), key


def test_texts_not_measured_are_tokenized(tiny_models) -> None:
    wrapper = modeldeploy.load("sentiment", str(tiny_models["sentiment"]), device="cpu")
    wrapper.token_lengths(TEXTS[:2])
    wrapper.tokenizer = counting = CountingTokenizer(wrapper.tokenizer)
    encoded = wrapper.encode([TEXTS[0], "never measured"])
    assert counting.calls == 1
    assert encoded["input_ids"].shape[0] == 2


def test_remembered_texts_never_travel_in_an_artifact(tiny_models) -> None:
    wrapper = modeldeploy.load("sentiment", str(tiny_models["sentiment"]), device="cpu")
    wrapper.token_lengths(["a private review of my doctor"])
    assert b"my doctor" not in dill.dumps(wrapper)
    assert dill.loads(dill.dumps(wrapper))._remembered == {}


def test_predictions_are_the_same_through_the_remembered_path(tiny_models) -> None:
    wrapper = modeldeploy.load("sentiment", str(tiny_models["sentiment"]), device="cpu")
    batched = wrapper.predict(TEXTS)  # measures, plans, then encodes each planned batch
    one_by_one = [wrapper.predict(text) for text in TEXTS]
    assert [r["label"] for r in batched] == [r["label"] for r in one_by_one]
    assert [r["score"] for r in batched] == pytest.approx([r["score"] for r in one_by_one], abs=1e-5)
