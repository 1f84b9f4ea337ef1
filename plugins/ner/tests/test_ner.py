"""The NER plugin: grouped entities whose offsets index the original text, long texts in windows."""

import pytest

import modeldeploy

KEYS = {"entity_group", "word", "start", "end", "score"}


@pytest.fixture(scope="module")
def ner(tiny_models):
    return modeldeploy.load("ner", source=str(tiny_models["ner"]), device="cpu")


def _check_offsets(text, entities):
    assert isinstance(entities, list)
    for entity in entities:
        assert set(entity) == KEYS
        assert entity["entity_group"] in {"PER", "ORG", "LOC", "MISC"}
        assert 0 <= entity["start"] < entity["end"] <= len(text)
        assert entity["word"] == text[entity["start"] : entity["end"]]
        assert type(entity["score"]) is float and 0 < entity["score"] <= 1


@pytest.mark.parametrize(
    "text",
    ["Angela Merkel met Emmanuel Macron in Paris.", "Günther bought a café in Zürich; 東京 too 🙂", "  spaced   out  "],
)
def test_entities_index_the_original_text(ner, text):
    _check_offsets(text, ner.predict(text))


def test_entities_of_a_list_match_single_calls(ner):
    texts = ["Apple opened offices in London and Berlin.", "Tokyo, Madrid, Cairo and Lima."]
    batch = ner.predict(texts)
    for text, entities in zip(texts, batch):
        single = ner.predict(text)
        assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == [
            (e["entity_group"], e["start"], e["end"]) for e in single
        ]


def test_empty_text_has_no_entities(ner):
    assert ner.predict("") == []
    assert ner.predict(["", "   "]) == [[], []]


def test_long_text_is_read_in_windows_to_the_end(ner):
    sentence = "Angela Merkel met Emmanuel Macron in Paris on Tuesday. "
    text = sentence * 400  # ~4,000 words: many times the tiny model's 128-token window
    entities = ner.predict(text)
    _check_offsets(text, entities)
    assert ner.max_length == 128
    # Windows overlap but tokens are read once: spans never overlap and stay sorted.
    spans = [(e["start"], e["end"]) for e in entities]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    if entities:  # random weights label some tokens; then the last window must contribute too
        assert max(e["end"] for e in entities) > len(text) - 10 * len(sentence)


def test_aggregation_setting_is_validated(tiny_models):
    with pytest.raises(modeldeploy.ConfigError, match="aggregation"):
        modeldeploy.load("ner", source=str(tiny_models["ner"]), settings={"aggregation": "mean"})


def test_trained_tiny_model_groups_subwords_and_bio_tags_into_entities(ner):
    text = "Angela Merkel met Emmanuel Macron in Paris."
    found = [(e["entity_group"], e["word"], e["start"], e["end"]) for e in ner.predict(text)]
    assert found == [("PER", "Angela Merkel", 0, 13), ("PER", "Emmanuel Macron", 18, 33), ("LOC", "Paris", 37, 42)]


def test_entities_in_the_last_window_of_a_long_text_are_found(ner):
    filler = "the quick brown fox jumps over the lazy dog near the river bank . " * 60
    text = filler + "Angela Merkel met Emmanuel Macron in Paris."
    persons = [e for e in ner.predict(text) if e["word"] == "Angela Merkel"]
    assert persons and persons[0]["start"] == len(filler)
