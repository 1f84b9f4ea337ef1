"""The translation plugin: long texts in sentence chunks, layout kept, settings per chunk.

The tiny Marian model (``modeldeploy.testing.build_translation``) has a real MarianTokenizer and a
128-token window, so texts of a few hundred sentences are many windows long.
"""

import pytest

import modeldeploy
from modeldeploy import testing
from modeldeploy.tasks import TranslationWrapper
from modeldeploy.tasks.translation import Segment, plan_chunks, split_sentences

SENTENCES = [en for en, _ in testing.TRANSLATION_PAIRS] + testing.CORPUS
LONG_TEXT = " ".join(SENTENCES[i % len(SENTENCES)] for i in range(300))


@pytest.fixture(scope="module")
def translator(tiny_models):
    return modeldeploy.load("translation", source=str(tiny_models["translation"]), device="cpu")


def load(tiny_models, **settings):
    return modeldeploy.load("translation", source=str(tiny_models["translation"]), device="cpu", settings=settings)


def token_count(wrapper, text):
    return len(wrapper.tokenizer(text, verbose=False)["input_ids"])


def test_one_text_gives_a_translation_string(translator):
    result = translator.predict("The weather is lovely today.")
    assert set(result) == {"translation_text"}
    assert isinstance(result["translation_text"], str) and result["translation_text"]


def test_the_test_model_loads_like_opus_mt(tiny_models, translator):
    folder = tiny_models["translation"]
    assert {"source.spm", "target.spm", "vocab.json"} <= {p.name for p in folder.iterdir()}
    assert type(translator.tokenizer).__name__ == "MarianTokenizer"
    assert type(translator.model).__name__ == "MarianMTModel"
    assert TranslationWrapper.demo_builder is testing.build_translation


def test_the_test_model_builds_identically(tiny_models, tmp_path):
    again = testing.build_translation(tmp_path / "translation")
    for name in ("source.spm", "target.spm", "vocab.json", "model.safetensors"):
        assert (again / name).read_bytes() == (tiny_models["translation"] / name).read_bytes(), name


def test_list_results_equal_single_results(translator):
    texts = ["Good morning!", "Where is the station? Thank you very much.", "The book is on the table."]
    assert translator.predict(texts) == [translator.predict(t) for t in texts]


def test_empty_text_gives_an_empty_translation(translator):
    assert translator.predict(["", "  \n\t "]) == [{"translation_text": ""}, {"translation_text": ""}]


def test_huge_and_unicode_inputs_do_not_crash(tiny_models):
    short_outputs = load(tiny_models, max_new_tokens=2)
    for text in ["Zürich café 東京 🙂 " * 3, "word " * 3000, "x" * 3000, "\n".join(["東京"] * 50)]:
        assert isinstance(short_outputs.predict(text)["translation_text"], str)


def test_a_text_over_max_characters_is_refused_before_any_work(tiny_models):
    limited = load(tiny_models, max_characters=100)
    assert isinstance(limited.predict("x" * 100)["translation_text"], str)
    with pytest.raises(modeldeploy.InvalidInputError, match="101 characters is over the 100.*'max_characters'"):
        limited.predict(["short", "x" * 101])
    assert load(tiny_models).settings["max_characters"] == 20_000
    unlimited = load(tiny_models, max_characters=0, max_new_tokens=1)
    assert isinstance(unlimited.predict("word " * 5000)["translation_text"], str)


def test_sentences_are_not_split_after_abbreviations_or_inside_numbers():
    text = ("Dr. Smith paid $3.14 for coffee, e.g. an espresso, in the U.S. on Friday. "
            "J. K. Rowling wrote it!  Really? Yes… (It was 2.5 km.) Mr. Brown agreed.\n\n"
            "1. Install it. 2. Run it.\nDone")
    assert split_sentences(text) == [
        Segment("Dr. Smith paid $3.14 for coffee, e.g. an espresso, in the U.S. on Friday.", " "),
        Segment("J. K. Rowling wrote it!", "  "),
        Segment("Really?", " "),
        Segment("Yes…", " "),
        Segment("(It was 2.5 km.)", " "),
        Segment("Mr. Brown agreed.", "\n\n"),
        Segment("1. Install it.", " "),
        Segment("2. Run it.", "\n"),
        Segment("Done", ""),
    ]


def test_splitting_loses_nothing_but_the_outer_whitespace():
    text = "\n  One.  Two!\tThree?\n\n\nFour… five \n"
    assert "".join(s.text + s.separator for s in split_sentences(text)) == text.strip()
    assert split_sentences("   \n ") == []


def test_chunks_pack_sentences_within_the_limit_and_never_across_lines():
    def words(text):  # a deterministic "tokenizer": one token per word plus an end token
        return len(text.split()) + 1

    text = "A b c. D e. F g h i.\nJ k. L m n o p q r s t u v w x. Y."
    assert plan_chunks(text, words, 6) == [
        Segment("A b c. D e.", " "),        # 5 words + 1; "F g h i." would make 9
        Segment("F g h i.", "\n"),          # a line break closes the chunk
        Segment("J k. L m n", " "),         # a 14-word sentence is cut between words,
        Segment("o p q r s", " "),          # and its pieces pack like sentences
        Segment("t u v w x.", " "),
        Segment("Y.", ""),
    ]


def test_a_word_longer_than_the_limit_is_cut_between_characters():
    chunks = plan_chunks("Go " + "x" * 45 + " now.", len, 20)
    assert [c.text for c in chunks] == ["Go", "x" * 20, "x" * 20, "x" * 5 + " now."]
    assert "".join(c.text + c.separator for c in chunks) == "Go " + "x" * 45 + " now."


def test_a_chunk_is_measured_whole_so_tokenizers_that_do_not_add_up_still_fit():
    # counting characters, the joined chunk also counts the spaces its words' costs left out
    chunks = plan_chunks("aaaa bbbb cccc dddd.", len, 12)
    assert [c.text for c in chunks] == ["aaaa", "bbbb cccc", "dddd."]
    assert all(len(c.text) <= 12 for c in chunks)

def test_a_long_text_is_chunked_within_the_model_limit_covering_every_sentence(translator):
    assert token_count(translator, LONG_TEXT) > 20 * translator.max_input_tokens  # far past one window
    chunks = translator.chunks(LONG_TEXT)
    assert all(token_count(translator, c.text) <= translator.max_input_tokens == 64 for c in chunks)  # 128 / 2
    assert "".join(c.text + c.separator for c in chunks) == LONG_TEXT
    sentences = [s.text for s in split_sentences(LONG_TEXT)]
    assert [s.text for c in chunks for s in split_sentences(c.text)] == sentences
    assert len(sentences) == 300


def test_a_long_translation_is_its_chunk_translations_joined(tiny_models):
    translator = load(tiny_models, max_input_tokens=40, max_new_tokens=12)
    chunks = translator.chunks(LONG_TEXT)
    assert len(chunks) > 40 and all(token_count(translator, c.text) <= 40 for c in chunks)
    pieces = [r["translation_text"] for r in translator.predict([c.text for c in chunks])]
    assert all(pieces)
    expected = "".join(piece + chunk.separator for piece, chunk in zip(pieces, chunks))
    assert translator.predict(LONG_TEXT)["translation_text"] == expected


def test_paragraphs_and_line_breaks_are_kept(translator):
    text = "Good morning!\n\nWhere is the station?\nThank you very much."
    result = translator.predict(text)["translation_text"]
    first, rest = result.split("\n\n")
    assert first == translator.predict("Good morning!")["translation_text"]
    assert rest.split("\n") == [translator.predict(t)["translation_text"]
                                for t in ("Where is the station?", "Thank you very much.")]


def test_max_new_tokens_bounds_each_chunk(tiny_models, translator):
    text = "\n\n".join(SENTENCES[:6])
    bounded = load(tiny_models, max_new_tokens=3).predict(text)["translation_text"].split("\n\n")
    free = translator.predict(text)["translation_text"].split("\n\n")
    assert len(bounded) == len(free) == 6
    assert all(len(p.split()) <= 3 for p in bounded)  # each generated piece adds at most one word
    assert any(len(p.split()) > 3 for p in free)


def test_the_checkpoints_generation_config_applies_unless_configured(tiny_models, translator):
    assert translator.model.generation_config.num_beams == 2  # opus-mt-like generation_config.json
    assert not {"num_beams", "max_new_tokens"} & set(translator.generation_kwargs())
    encoded = translator.encode(["Where is the station?"])
    direct = translator.tokenizer.batch_decode(translator.model.generate(**encoded), skip_special_tokens=True)
    assert translator.predict("Where is the station?")["translation_text"] == direct[0].strip()
    assert load(tiny_models, num_beams=1).generation_kwargs()["num_beams"] == 1


def test_max_input_tokens_never_exceeds_the_model(tiny_models):
    assert load(tiny_models, max_input_tokens=100_000).max_input_tokens == 128
    assert load(tiny_models, max_input_tokens=16).max_input_tokens == 16


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"beams": 2}, "unknown setting 'beams'.*allowed settings"),
        ({"max_input_tokens": 0}, "'max_input_tokens'.*integer >= 8"),
        ({"max_input_tokens": "many"}, "'max_input_tokens'.*integer"),
        ({"max_input_tokens": True}, "'max_input_tokens'.*integer"),
        ({"num_beams": 0}, "'num_beams'.*integer >= 1"),
        ({"max_new_tokens": 2.5}, "'max_new_tokens'.*integer"),
    ],
)
def test_invalid_settings_are_config_errors(tiny_models, settings, message):
    with pytest.raises(modeldeploy.ConfigError, match=message):
        load(tiny_models, **settings)
