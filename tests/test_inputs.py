"""What predict accepts, and the precise errors for everything else."""

import pytest

import modeldeploy
from modeldeploy.inputs import normalize_texts
from modeldeploy.jsonsafe import to_jsonable


def test_strings_and_lists_are_normalized():
    assert normalize_texts("a") == (["a"], True)
    assert normalize_texts(["a", ""]) == (["a", ""], False)
    assert normalize_texts(("a",)) == (["a"], False)


@pytest.mark.parametrize(
    "data, error, message",
    [
        (None, modeldeploy.InputTypeError, "data must be a string or a list of strings, got None"),
        (3, modeldeploy.InputTypeError, "got int"),
        ({"text": "a"}, modeldeploy.InputTypeError, "got dict"),
        (b"bytes", modeldeploy.InputTypeError, "got bytes"),
        ([], modeldeploy.InvalidInputError, "got an empty list"),
        (["ok", 5], modeldeploy.InputTypeError, "data[1] must be a string, got int"),
        (["ok", ["nested"]], modeldeploy.InputTypeError, "nested lists are not accepted"),
        (["ok", None], modeldeploy.InputTypeError, "data[1] must be a string, got None"),
    ],
)
def test_bad_input_raises_precise_errors(data, error, message):
    with pytest.raises(error) as info:
        normalize_texts(data)
    assert message in str(info.value)
    assert isinstance(info.value, modeldeploy.ModelDeployError)
    assert isinstance(info.value, (TypeError, ValueError))


def test_wrapper_predict_validates_before_loading(tiny_models):
    wrapper = modeldeploy.load("sentiment", source=str(tiny_models["sentiment"]))
    with pytest.raises(modeldeploy.InputTypeError, match=r"data\[0\] must be a string"):
        wrapper.predict([1.5])


def test_to_jsonable_removes_numpy_and_torch_scalars():
    import numpy as np
    import torch

    value = {"a": np.float32(0.5), "b": (np.int64(3), torch.tensor(2.0)), 1: float("nan"), "c": np.array([1, 2])}
    converted = to_jsonable(value)
    assert converted == {"a": 0.5, "b": [3, 2.0], "1": None, "c": [1, 2]}
    assert type(converted["a"]) is float and type(converted["b"][0]) is int
    with pytest.raises(TypeError, match="cannot convert object"):
        to_jsonable(object())
