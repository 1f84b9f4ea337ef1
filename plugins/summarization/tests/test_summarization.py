"""The summarization plugin: generate() with settings from the checkpoint and config."""

import pytest

import modeldeploy


@pytest.fixture(scope="module")
def summarizer(tiny_models):
    return modeldeploy.load("summarization", source=str(tiny_models["summarization"]), device="cpu")


def test_one_text_gives_a_summary_string(summarizer):
    result = summarizer.predict("The council approved a plan to turn parking lots into parks.")
    assert set(result) == {"summary_text"}
    assert isinstance(result["summary_text"], str) and result["summary_text"]


def test_list_results_equal_single_results(summarizer):
    texts = ["Short text about Paris.", "A much longer text about the weather in New York, cold and grey all week."]
    assert summarizer.predict(texts) == [summarizer.predict(t) for t in texts]


def test_empty_text_gives_an_empty_summary(summarizer):
    assert summarizer.predict(["", "  \n"]) == [{"summary_text": ""}, {"summary_text": ""}]


def test_huge_and_unicode_inputs_do_not_crash(summarizer):
    for text in ["Zürich café 東京 🙂 " * 3, "word " * 30_000]:
        assert isinstance(summarizer.predict(text)["summary_text"], str)


def test_generation_settings_come_from_checkpoint_then_config(tiny_models):
    default = modeldeploy.load("summarization", source=str(tiny_models["summarization"]))
    assert default.generation_kwargs()["num_beams"] == 2  # task_specific_params of the checkpoint
    assert default.generation_kwargs()["min_new_tokens"] == 4
    assert default.prefix == ""
    tuned = modeldeploy.load(
        "summarization",
        source=str(tiny_models["summarization"]),
        settings={"num_beams": 1, "min_new_tokens": 1, "max_new_tokens": 3, "prefix": "summarize: "},
    )
    assert tuned.generation_kwargs()["num_beams"] == 1
    assert tuned.prepare_data("text") == "summarize: text"
    summary = tuned.predict("The council approved a plan to build parks.")["summary_text"]
    assert 1 <= len(summary.split()) <= 3  # each generated word-piece adds at most one word


def test_unknown_setting_is_a_config_error(tiny_models):
    with pytest.raises(modeldeploy.ConfigError, match="unknown setting 'beams'.*allowed settings"):
        modeldeploy.load("summarization", source=str(tiny_models["summarization"]), settings={"beams": 2})


@pytest.mark.parametrize("settings", [{"num_beams": 0}, {"max_new_tokens": "5"}, {"min_new_tokens": True}])
def test_generation_settings_out_of_range_are_config_errors(tiny_models, settings):
    (key,) = settings
    with pytest.raises(modeldeploy.ConfigError, match=f"setting '{key}' of model 'summarization' must be an integer"):
        modeldeploy.load("summarization", source=str(tiny_models["summarization"]), settings=settings)
