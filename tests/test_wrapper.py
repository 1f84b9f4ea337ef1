"""The ModelWrapper template: loading, settings, devices, batching of lists, pickling."""

import pickle

import pytest

import modeldeploy
from modeldeploy.devices import resolve_device


def test_load_failure_names_the_model_and_source(tmp_path):
    with pytest.raises(modeldeploy.ModelLoadError, match=r"could not load model 'sentiment' from '.*missing'"):
        modeldeploy.load("sentiment", source=str(tmp_path / "missing"))


def test_unknown_device_is_a_config_error():
    with pytest.raises(modeldeploy.ConfigError, match="device must be one of"):
        modeldeploy.load("sentiment", device="tpu")


def test_cuda_is_refused_clearly_when_absent():
    import torch

    if torch.cuda.is_available():
        assert resolve_device("cuda") == "cuda"
    else:
        with pytest.raises(modeldeploy.ModelLoadError, match="CUDA is not available"):
            resolve_device("cuda:0")
    assert resolve_device("cpu") == "cpu"


def test_auto_picks_cuda_when_torch_sees_a_gpu(monkeypatch):
    """No GPU here: torch is told it has one (what cannot exist here is the only thing faked)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") in {"cpu", "mps"}


def test_setting_types_are_checked(tiny_models):
    with pytest.raises(modeldeploy.ConfigError, match="'batch_size' .* must be int"):
        modeldeploy.load("sentiment", source=str(tiny_models["sentiment"]), settings={"batch_size": "8"})
    with pytest.raises(modeldeploy.ConfigError, match="positive integer"):
        modeldeploy.load("sentiment", source=str(tiny_models["sentiment"]), settings={"batch_size": 0})


def test_truncation_uses_the_model_window(tiny_models):
    wrapper = modeldeploy.load("sentiment", source=str(tiny_models["sentiment"]))
    assert wrapper.max_length == 128
    assert wrapper.token_lengths(["word " * 1000, ""]) == [128, 2]  # [CLS] [SEP] for empty


def test_a_text_fills_one_row_truncated_to_the_window(tiny_models):
    wrapper = modeldeploy.load("sentiment", source=str(tiny_models["sentiment"]))
    assert wrapper.pass_shapes(["word " * 1000, ""]) == [(1, 128), (1, 2)]
    assert [wrapper.pass_shape(1002), wrapper.pass_shape(2)] == [(1, 128), (1, 2)]


@pytest.mark.parametrize("stride", [0, 32, 100])
def test_a_long_text_fills_a_full_row_per_window_ner_reads(tiny_models, stride):
    """The windows the planner counts (``pass_shapes``) are those ``predict_batch`` reads, and the
    estimate from a token count (``pass_shape``, what admission prices) agrees with them."""
    wrapper = modeldeploy.load("ner", source=str(tiny_models["ner"]), settings={"stride": stride})
    assert wrapper.max_length == 128
    words = "Angela Merkel met Emmanuel Macron in Paris on a rainy Tuesday".split()
    shapes = set()
    for count in [*range(1, 400, 7), 124, 125, 126, 127, 128]:
        text = " ".join(words[i % len(words)] for i in range(count))
        tokens = len(wrapper.tokenizer(text)["input_ids"])
        (shape,) = wrapper.pass_shapes([text])
        assert shape == wrapper.pass_shape(tokens), (count, tokens)
        assert shape == ((1, tokens) if tokens <= 128 else (shape[0], 128))
        shapes.add(shape)
    assert max(rows for rows, _ in shapes) >= 3  # the texts reached three windows and more


def test_lists_larger_than_batch_size_keep_their_order(tiny_models):
    small = modeldeploy.load("sentiment", source=str(tiny_models["sentiment"]), settings={"batch_size": 2})
    texts = [f"text number {i} " * (i % 4 + 1) for i in range(7)]
    expected = [small.predict(t) for t in texts]
    got = small.predict(texts)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-5)


def test_loaded_wrapper_survives_pickling(tiny_models):
    wrapper = modeldeploy.load("ner", source=str(tiny_models["ner"]))
    text = "Angela Merkel met Emmanuel Macron in Paris."
    clone = pickle.loads(pickle.dumps(wrapper))
    assert clone.predict(text) == wrapper.predict(text)
    assert repr(clone).startswith("<NerWrapper 'ner'") and "loaded on cpu" in repr(clone)
