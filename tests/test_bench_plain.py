"""The benchmark's plain-transformers model (bench/plain.py) reads what the plugin reads: a token
classifier's long text whole, in the plugin's overlapping windows, so the references do the same
work as the servers they judge."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import modeldeploy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import references  # noqa: E402
from plain import PlainModel  # noqa: E402

LONG = " ".join(["Angela Merkel met Emmanuel Macron in Paris to talk about Airbus."] * 120)
TEXTS = ["Paris is lovely in spring.", LONG]


@pytest.fixture(scope="module")
def plain_ner(tiny_models) -> PlainModel:
    return PlainModel.load("ner", tiny_models["ner"], "cpu", **references.plugin_options("ner", tiny_models["ner"]))


def _content(ids: list[int], tokenizer) -> list[int]:
    special = set(tokenizer.all_special_ids)
    return [i for i in ids if i not in special]


def test_the_references_use_the_plugins_stride(tiny_models) -> None:
    wrapper = modeldeploy.load("ner", str(tiny_models["ner"]), device="cpu")
    assert references.plugin_options("ner", tiny_models["ner"])["stride"] == wrapper.settings["stride"]
    assert references.plugin_options("sentiment", tiny_models["sentiment"])["stride"] is None


def test_a_long_text_is_read_whole_in_overlapping_windows(plain_ner) -> None:
    tokenizer = plain_ner.tokenizer
    whole = _content(tokenizer(LONG)["input_ids"], tokenizer)
    assert len(whole) > 2 * plain_ner.max_length
    rows, rows_of = plain_ner._windows(TEXTS)
    assert rows_of[0] == 0 and set(rows_of[1:]) == {1} and len(rows_of) >= 4
    stride = min(plain_ner.stride, plain_ner.max_length // 2)
    windows = [_content(row, tokenizer) for row in rows["input_ids"][1:].tolist()]
    read = windows[0] + [token for window in windows[1:] for token in window[stride:]]
    assert read == whole  # every token once, in order, past the overlap


def test_results_answer_each_text_with_labels_for_all_its_windows(plain_ner) -> None:
    short, long = plain_ner.results(TEXTS)
    assert len(short) == len(plain_ner.tokenizer(TEXTS[0])["input_ids"])
    assert len(long) > 2 * plain_ner.max_length
    assert set(short + long) <= set(plain_ner.model.config.id2label.values())


def test_a_shape_asked_for_is_cut_not_windowed(plain_ner) -> None:
    encoded = plain_ner.encode([LONG] * 3, max_length=16)  # how the cost function is calibrated
    assert tuple(encoded["input_ids"].shape) == (3, 16)
