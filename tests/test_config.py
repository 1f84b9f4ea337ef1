"""config.yaml: interpolation and one clear error per mistake, naming the key."""

import textwrap

import pytest

from modeldeploy.config import BatchConfig, interpolate, load_config, parse_config
from modeldeploy.errors import ConfigError
from modeldeploy.plugins import get_catalog

AVAILABLE = ["sentiment", "ner", "summarization"]


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_omitted_models_serve_everything_installed(tmp_path):
    config = load_config(write(tmp_path, "server: {port: 9000}\n"), AVAILABLE)
    assert config.models is None
    assert config.served_names(AVAILABLE) == sorted(AVAILABLE)
    assert config.server.port == 9000 and config.server.max_body_bytes == 1024 * 1024


def test_full_model_entry_is_parsed(tmp_path):
    config = load_config(
        write(tmp_path, """
            models:
              sentiment:
                source: ./models/sentiment
                device: cpu
                lazy: true
                settings: {batch_size: 8}
                batch: {max_batch_size: 16, max_wait_ms: 2, max_queue: 64, timeout: 5, regroup_wait: 0.25, streams: 3}
            """),
        AVAILABLE,
    )
    model = config.model("sentiment")
    assert (model.source, model.device, model.lazy, dict(model.settings)) == ("./models/sentiment", "cpu", True, {"batch_size": 8})
    assert model.batch == BatchConfig(max_batch_size=16, max_wait_ms=2.0, max_queue=64, timeout=5.0, regroup_wait=0.25,
                                      streams=3)
    assert config.served_names(AVAILABLE) == sorted(AVAILABLE)  # models: holds overrides, not the set


def test_serve_restricts_the_set_and_models_override_it(tmp_path):
    config = load_config(write(tmp_path, """
        serve: [ner, sentiment]
        models:
          sentiment: {device: cpu}
          summarization: {lazy: true}
        """), AVAILABLE)
    assert config.served_names(AVAILABLE) == ["ner", "sentiment"]
    assert config.model("summarization").lazy and config.model("ner").device == "auto"
    assert parse_config({"serve": []}, AVAILABLE).served_names(AVAILABLE) == []
    assert parse_config({}, AVAILABLE).demo_fallback is False
    assert parse_config({"demo_fallback": True}, AVAILABLE).demo_fallback is True


def test_interpolation_with_defaults_and_types():
    env = {"SRC": "/models/s", "PORT": "9001", "EMPTY": ""}
    document = {
        "models": {"sentiment": {"source": "${SRC}", "device": "${DEVICE:-cpu}"}},
        "server": {"port": "${PORT}", "host": "${HOST:-0.0.0.0}", "threads": "${EMPTY:-4}"},
    }
    config = parse_config(document, AVAILABLE, environ=env)
    assert config.model("sentiment").source == "/models/s"
    assert config.model("sentiment").device == "cpu"
    assert (config.server.port, config.server.host, config.server.threads) == (9001, "0.0.0.0", 4)


def test_interpolation_inside_a_longer_string_stays_a_string():
    assert interpolate("gs://${BUCKET:-b}/p/${NAME}", environ={"NAME": "x"}) == "gs://b/p/x"


def test_missing_variable_names_the_key_and_the_variable():
    with pytest.raises(ConfigError, match=r"models.sentiment.source: environment variable MISSING_VAR is not set"):
        parse_config({"models": {"sentiment": {"source": "${MISSING_VAR}"}}}, AVAILABLE, environ={})


@pytest.mark.parametrize(
    "document, message",
    [
        ({"modles": {}}, r"config.modles is not a known key; allowed keys under config: models, serve, server, cache_dir, demo_fallback"),
        ({"models": ["sentiment"]}, r"models must be a mapping"),
        ({"serve": "sentiment"}, r"serve must be a list of model names \(omit it to serve every installed model\)"),
        ({"serve": ["sentiment", 3]}, r"serve must be a list of model names"),
        ({"serve": ["sentimnt"]}, r"serve\[0\]: no installed plugin provides a model named 'sentimnt'; installed models: ner"),
        ({"serve": ["ner", "ner"]}, r"serve\[1\]: 'ner' is listed twice"),
        ({"demo_fallback": "yes"}, r"demo_fallback must be true or false, got str"),
        ({"models": {"sentimnt": {}}}, r"models.sentimnt: no installed plugin provides a model named 'sentimnt'; installed models: ner, sentiment, summarization"),
        ({"models": {"sentiment": {"sorce": "x"}}}, r"models.sentiment.sorce is not a known key; allowed keys under models.sentiment: source, device"),
        ({"models": {"sentiment": {"source": 3}}}, r"models.sentiment.source must be a string, got int"),
        ({"models": {"sentiment": {"source": " "}}}, r"models.sentiment.source must not be empty"),
        ({"models": {"sentiment": {"device": "gpu"}}}, r"models.sentiment.device: device must be one of auto, cpu"),
        ({"models": {"sentiment": {"lazy": "yes"}}}, r"models.sentiment.lazy must be true or false, got str"),
        ({"models": {"sentiment": {"settings": [1]}}}, r"models.sentiment.settings must be a mapping"),
        ({"models": {"sentiment": {"batch": {"max_batch_size": 0}}}}, r"models.sentiment.batch.max_batch_size must be > 0"),
        ({"models": {"sentiment": {"batch": {"max_wait_ms": -1}}}}, r"models.sentiment.batch.max_wait_ms must be >= 0"),
        ({"models": {"sentiment": {"batch": {"regroup_wait": 1.5}}}},
         r"models.sentiment.batch.regroup_wait must be between 0 and 1 \(a fraction of a round's duration\), got 1.5"),
        ({"models": {"sentiment": {"batch": {"regroup_wait": "0.1"}}}}, r"models.sentiment.batch.regroup_wait must be a number, got str"),
        ({"models": {"sentiment": {"batch": {"size": 3}}}}, r"models.sentiment.batch.size is not a known key"),
        ({"models": {"sentiment": {"batch": {"streams": -1}}}}, r"models.sentiment.batch.streams must be >= 0, got -1"),
        ({"models": {"sentiment": {"batch": {"streams": 1.5}}}}, r"models.sentiment.batch.streams must be an integer, got float"),
        ({"models": {"sentiment": {"batch": {"timeout": True}}}}, r"models.sentiment.batch.timeout must be a number, got bool"),
        ({"models": {"sentiment": {"sha256": "abc"}}}, r"models.sentiment.sha256 must be 64 hexadecimal characters"),
        ({"server": {"port": 70000}}, r"server.port must be between 0 and 65535"),
        ({"server": {"port": "80"}}, r"server.port must be an integer, got str"),
        ({"server": {"max_items": 0}}, r"server.max_items must be > 0"),
        ({"server": {"max_refusals_per_second": -1}}, r"server.max_refusals_per_second must be >= 0"),
        ({"server": {"max_refusals_per_second": "fast"}}, r"server.max_refusals_per_second must be a number"),
        ({"server": {"workers": 2}}, r"server.workers is not a known key"),
        ({"cache_dir": 5}, r"cache_dir must be a string"),
    ],
)
def test_each_mistake_gets_one_clear_message(document, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(document, AVAILABLE, environ={})


def test_settings_are_checked_against_the_plugin():
    wrappers = get_catalog().wrapper_classes()
    with pytest.raises(ConfigError, match=r"models.summarization.settings: unknown setting 'beams'"):
        parse_config({"models": {"summarization": {"settings": {"beams": 4}}}}, wrappers, environ={})
    config = parse_config({"models": {"summarization": {"settings": {"num_beams": 4}}}}, wrappers, environ={})
    assert config.model("summarization").settings == {"num_beams": 4}


def test_file_problems_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(write(tmp_path, "models: [unclosed\n"))
    with pytest.raises(ConfigError, match="config must be a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))
    assert load_config(write(tmp_path, "")).models is None


def test_a_binary_file_gets_one_clear_message(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"server:\n  port: 80\xff\xfe\x00 model weights, not YAML")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (f"config file {str(path)!r} is not UTF-8 text (byte 0xff at offset 18); "
                                 "is it the YAML file you meant?")


@pytest.mark.parametrize("text, key, lines", [
    ("server:\n  port: 9000\n  host: 0.0.0.0\n  port: 9001\n", "port", (2, 4)),
    ("models:\n  sentiment: {lazy: true}\n  sentiment: {lazy: false}\n", "sentiment", (2, 3)),
    ("demo_fallback: true\ndemo_fallback: false\n", "demo_fallback", (1, 2)),
])
def test_a_key_written_twice_is_refused_not_silently_overridden(tmp_path, text, key, lines):
    with pytest.raises(ConfigError, match=rf"key {key!r} appears twice in one mapping \(lines {lines[0]} and "
                                          rf"{lines[1]}\); keep one of them"):
        load_config(write(tmp_path, text), AVAILABLE)


def test_yaml_merge_keys_still_work_and_may_override_what_they_merge(tmp_path):
    config = load_config(write(tmp_path, """
        models:
          sentiment: &common {lazy: true, device: cpu}
          ner:
            <<: *common
            lazy: false
    """), AVAILABLE)
    assert (config.model("ner").lazy, config.model("ner").device) == (False, "cpu")


def test_http_threads_cover_every_models_queue_and_batch_unless_set():
    auto = parse_config({"models": {"sentiment": {"batch": {"max_queue": 10, "max_batch_size": 4}}, "ner": {}}},
                        AVAILABLE, environ={})
    assert auto.server.threads == 0
    # per model, a full queue waiting behind a round that took a full queue (its batches are smaller)
    assert auto.http_threads(["sentiment", "ner"]) == (10 + 10) + (64 + 64) + 8
    wide = parse_config({"models": {"ner": {"batch": {"max_queue": 8, "max_batch_size": 32}}}}, AVAILABLE, environ={})
    assert wide.http_threads(["ner"]) == (8 + 32) + 8  # a round may hold one batch larger than the queue
    assert auto.http_threads([]) == 16  # never fewer than a small pool for pages and health checks
    fixed = parse_config({"server": {"threads": 5}}, AVAILABLE, environ={})
    assert fixed.http_threads(AVAILABLE) == 5
    with pytest.raises(ConfigError, match=r"server.threads must be >= 0"):
        parse_config({"server": {"threads": -1}}, AVAILABLE, environ={})
