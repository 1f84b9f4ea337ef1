"""The sentiment plugin through its real entry point, on a tiny offline DistilBERT."""

import pytest

import modeldeploy


@pytest.fixture(scope="module")
def sentiment(tiny_models):
    return modeldeploy.load("sentiment", source=str(tiny_models["sentiment"]), device="cpu")


def _check(result):
    assert set(result) == {"label", "score"}
    assert result["label"] in {"POSITIVE", "NEGATIVE"}
    assert type(result["score"]) is float and 0.5 <= result["score"] <= 1.0


def test_one_text_gives_one_result(sentiment):
    _check(sentiment.predict("I love it"))


def test_a_list_gives_results_in_order_equal_to_single_calls(sentiment):
    texts = ["I love it", "This was a terrible waste of time and money, truly awful.", "ok"]
    batch = sentiment.predict(texts)
    assert len(batch) == 3
    for text, result in zip(texts, batch):
        _check(result)
        single = sentiment.predict(text)
        assert result["label"] == single["label"]
        assert result["score"] == pytest.approx(single["score"], abs=1e-5)


@pytest.mark.parametrize("text", ["", "   ", "Günther liebt Zürich ☕ 東京 🙂", "word " * 20_000 + "x" * 100_000])
def test_empty_unicode_and_huge_inputs_are_answered(sentiment, text):
    _check(sentiment.predict(text))


def test_trained_tiny_model_tells_positive_from_negative(sentiment):
    assert [r["label"] for r in sentiment.predict(["I love it", "I hate it"])] == ["POSITIVE", "NEGATIVE"]
