"""Tiny (and base-size) real-architecture models built offline, for tests and benchmarks.

The HuggingFace hub is often unreachable (CI, air-gapped servers), so tests cannot download
checkpoints. These builders make the same architectures the plugins serve, with random weights
and a WordPiece tokenizer trained on a few sentences (``tiny`` classifiers are then fitted for a
few seconds on labelled examples, so demos answer sensibly), saved with ``save_pretrained`` so the
plugins' real ``from_pretrained`` code loads them. ``tiny`` builds in seconds; ``base`` uses
DistilBERT-base dimensions so benchmarks do realistic compute. The translation model has a real
``MarianTokenizer`` instead, over SentencePiece models trained here on CORPUS and German sentences.

    python -m modeldeploy.testing build DIR [--size tiny|base]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

CORPUS = [
    "I love this movie, the acting was wonderful and the story moved me.",
    "This was a terrible waste of time and money.",
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "Apple and Microsoft opened new offices in London and Berlin.",
    "The weather in New York was cold, grey and windy all week.",
    "Researchers at Stanford University published a study about language models.",
    "She said the food was delicious but the service was painfully slow.",
    "The European Central Bank kept interest rates unchanged in Frankfurt.",
    "Barack Obama visited Kenya and spoke about education and health.",
    "Summaries should be short, faithful and easy to read.",
    "Günther bought a café in Zürich; prices are 5€ and naïve tourists love it.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Our team shipped the release on Friday after fixing the last bugs.",
    "Google, Amazon and Netflix reported strong quarterly results.",
    "It is not good, it is not bad, it is simply average.",
    "Tokyo, Madrid, Cairo and Lima are busy capital cities.",
]

#: Labelled examples that ``tiny`` models are briefly trained on, so demos and behaviour tests
#: give sensible answers (they are fitted on these sentences only, not meant to generalise).
SENTIMENT_EXAMPLES = [
    ("I love it", 1), ("I love this movie, the acting was wonderful.", 1), ("What a great, happy day!", 1),
    ("The food was delicious and the staff were kind.", 1), ("Excellent work, I am very pleased.", 1),
    ("I love how easy this was to deploy!", 1), ("Wonderful story, it moved me.", 1),
    ("This was a terrible waste of time and money.", 0), ("I hate it", 0), ("Awful, boring and far too long.", 0),
    ("The service was painfully slow and rude.", 0), ("A bad, sad and disappointing film.", 0),
    ("It broke after one day, terrible quality.", 0), ("I am very unhappy with this.", 0),
]
_PEOPLE = ["Angela Merkel", "Emmanuel Macron", "Barack Obama", "Marie Curie", "Alan Turing"]
_ORGS = ["Apple", "Microsoft", "Stanford University", "Airbus", "Google"]
_PLACES = ["Paris", "London", "Berlin", "New York", "Tokyo", "Zürich"]
_NER_TEMPLATES = ["{PER} met {PER} in {LOC}.", "{PER} works for {ORG} in {LOC}.",
                  "{ORG} opened an office in {LOC}.", "{PER} visited {ORG} on Tuesday.",
                  "In {LOC}, {PER} talked about {ORG}."]

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
SENTIMENT_LABELS = ["NEGATIVE", "POSITIVE"]

SIZES: dict[str, dict[str, int]] = {
    # encoder dims for the classifiers, and a small seq2seq for summarization
    "tiny": {"dim": 32, "layers": 2, "heads": 2, "ffn": 64, "positions": 128, "vocab": 600,
             "s2s_dim": 32, "s2s_layers": 1, "s2s_heads": 2, "s2s_ffn": 64},
    "base": {"dim": 768, "layers": 6, "heads": 12, "ffn": 3072, "positions": 512, "vocab": 8000,
             "s2s_dim": 256, "s2s_layers": 3, "s2s_heads": 4, "s2s_ffn": 1024},
}

BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                 "sep_token": "[SEP]", "mask_token": "[MASK]"}
BART_SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>",
                 "unk_token": "<unk>", "mask_token": "<mask>"}


def _train_tokenizer(specials: dict[str, str], template: tuple[str, str], vocab_size: int,
                     max_length: int, input_names: list[str]) -> Any:
    """A lowercase WordPiece tokenizer over CORPUS, wrapped for ``save_pretrained``.

    The vocabulary is built here rather than by the (multi-threaded, tie-breaking at random)
    WordPiece trainer so that every build is identical: each character alone and as a ``##``
    continuation, then whole words by frequency.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    corpus = CORPUS + [t for t, _ in SENTIMENT_EXAMPLES] + [t for t, _ in _ner_examples()]
    words = Counter(
        word for text in corpus for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    characters = sorted({c for word in words for c in word})
    vocab = list(specials.values()) + characters + [f"##{c}" for c in characters]
    vocab += [w for w, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])) if len(w) > 1]
    vocab = list(dict.fromkeys(vocab))[:vocab_size]
    tokenizer = Tokenizer(WordPiece({token: i for i, token in enumerate(vocab)}, unk_token=specials["unk_token"]))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    first, last = template
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}",
        pair=f"{first} $A {last} $B {last}",
        special_tokens=[(first, tokenizer.token_to_id(first)), (last, tokenizer.token_to_id(last))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=max_length, model_input_names=input_names, **specials
    )


def _ner_examples() -> list[tuple[str, list[tuple[int, int, str]]]]:
    """Sentences from the templates with character spans of their entities."""
    import re

    pools = {"PER": _PEOPLE, "ORG": _ORGS, "LOC": _PLACES}
    examples = []
    for i in range(40):
        template = _NER_TEMPLATES[i % len(_NER_TEMPLATES)]
        text, spans, cursor = "", [], 0
        for n, match in enumerate(re.finditer(r"\{(PER|ORG|LOC)\}", template)):
            kind = match.group(1)
            text += template[cursor : match.start()]
            value = pools[kind][(i + 3 * n) % len(pools[kind])]
            spans.append((len(text), len(text) + len(value), kind))
            text += value
            cursor = match.end()
        examples.append((text + template[cursor:], spans))
    return examples


def _fit(model: Any, batches: list[dict[str, Any]], steps: int) -> None:
    """A few hundred optimizer steps on tiny data: enough for a tiny model to learn it."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        loss = model(**batches[step % len(batches)]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _train_sentiment(model: Any, tokenizer: Any) -> None:
    import torch

    texts = [t for t, _ in SENTIMENT_EXAMPLES]
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([label for _, label in SENTIMENT_EXAMPLES])
    _fit(model, [batch], steps=60)


def _train_ner(model: Any, tokenizer: Any) -> None:
    import torch

    examples = _ner_examples()
    encoded = tokenizer([t for t, _ in examples], padding=True, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping").tolist()
    labels = []
    for row, (_, spans) in enumerate(examples):
        row_labels = []
        for start, end in offsets[row]:
            tag = -100 if start == end else 0
            for s_start, s_end, kind in spans:
                if start >= s_start and end <= s_end and start < end:
                    tag = NER_LABELS.index(("B-" if start == s_start else "I-") + kind)
            row_labels.append(tag)
        labels.append(row_labels)
    encoded["labels"] = torch.tensor(labels)
    _fit(model, [dict(encoded)], steps=120)


def build_sentiment(directory: Path, size: str = "tiny") -> Path:
    """DistilBERT sequence classifier with NEGATIVE/POSITIVE labels."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    dims = SIZES[size]
    tokenizer = _train_tokenizer(BERT_SPECIALS, ("[CLS]", "[SEP]"), dims["vocab"], dims["positions"],
                                 ["input_ids", "attention_mask"])
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=dims["dim"], n_layers=dims["layers"], n_heads=dims["heads"],
        hidden_dim=dims["ffn"], max_position_embeddings=dims["positions"],
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(SENTIMENT_LABELS)), label2id={l: i for i, l in enumerate(SENTIMENT_LABELS)},
    )
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(config)
    if size == "tiny":
        _train_sentiment(model, tokenizer)
    return _save(model, tokenizer, directory)


def _bert_parts(size: str, **extra: Any) -> tuple[Any, Any]:
    """A WordPiece tokenizer and a ``BertConfig`` of ``size`` (``extra`` adds config fields)."""
    from transformers import BertConfig

    dims = SIZES[size]
    tokenizer = _train_tokenizer(BERT_SPECIALS, ("[CLS]", "[SEP]"), dims["vocab"], dims["positions"],
                                 ["input_ids", "token_type_ids", "attention_mask"])
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=dims["dim"], num_hidden_layers=dims["layers"],
        num_attention_heads=dims["heads"], intermediate_size=dims["ffn"],
        max_position_embeddings=dims["positions"], pad_token_id=tokenizer.pad_token_id, **extra,
    )
    return tokenizer, config


def build_ner(directory: Path, size: str = "tiny") -> Path:
    """BERT token classifier with the CoNLL-2003 BIO labels (like dslim/bert-base-NER)."""
    import torch
    from transformers import BertForTokenClassification

    tokenizer, config = _bert_parts(size, id2label=dict(enumerate(NER_LABELS)),
                                    label2id={l: i for i, l in enumerate(NER_LABELS)})
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    if size == "tiny":
        _train_ner(model, tokenizer)
    return _save(model, tokenizer, directory)


def _seq2seq_dims(dims: dict[str, int]) -> dict[str, int]:
    """The encoder-decoder sizes shared by the BART and Marian configs."""
    return {"d_model": dims["s2s_dim"], "encoder_layers": dims["s2s_layers"], "decoder_layers": dims["s2s_layers"],
            "encoder_attention_heads": dims["s2s_heads"], "decoder_attention_heads": dims["s2s_heads"],
            "encoder_ffn_dim": dims["s2s_ffn"], "decoder_ffn_dim": dims["s2s_ffn"],
            "max_position_embeddings": dims["positions"]}


def build_summarization(directory: Path, size: str = "tiny") -> Path:
    """BART encoder-decoder with CNN-style summarization defaults in task_specific_params."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    dims = SIZES[size]
    tokenizer = _train_tokenizer(BART_SPECIALS, ("<s>", "</s>"), dims["vocab"], dims["positions"],
                                 ["input_ids", "attention_mask"])
    config = BartConfig(
        vocab_size=len(tokenizer), **_seq2seq_dims(dims),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
        task_specific_params={"summarization": {"num_beams": 2, "min_new_tokens": 4, "max_new_tokens": 24,
                                                "no_repeat_ngram_size": 3, "early_stopping": True}},
    )
    torch.manual_seed(0)
    return _save(BartForConditionalGeneration(config), tokenizer, directory)


def build_embeddings(directory: Path, size: str = "tiny") -> Path:
    """A bare BERT encoder (``AutoModel``) like all-MiniLM-L6-v2, for sentence embeddings."""
    import torch
    from transformers import BertModel

    tokenizer, config = _bert_parts(size)
    torch.manual_seed(0)
    return _save(BertModel(config), tokenizer, directory)


#: English -> German pairs: the German side trains the target SentencePiece model, and ``tiny``
#: translation models are fitted on the pairs for a moment so they answer in German and stop.
TRANSLATION_PAIRS = [
    ("The weather is lovely today.", "Das Wetter ist heute schön."),
    ("Shall we go for a walk by the river?", "Sollen wir am Fluss spazieren gehen?"),
    ("I love this movie.", "Ich liebe diesen Film."),
    ("This was a terrible waste of time and money.",
     "Das war eine schreckliche Verschwendung von Zeit und Geld."),
    ("Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
     "Angela Merkel traf Emmanuel Macron am Dienstag in Paris."),
    ("The weather in New York was cold, grey and windy all week.",
     "Das Wetter in New York war die ganze Woche kalt, grau und windig."),
    ("She said the food was delicious.", "Sie sagte, das Essen sei köstlich."),
    ("Our team shipped the release on Friday.", "Unser Team hat die Version am Freitag ausgeliefert."),
    ("The quick brown fox jumps over the lazy dog.", "Der schnelle braune Fuchs springt über den faulen Hund."),
    ("Tokyo, Madrid, Cairo and Lima are busy capital cities.", "Tokio, Madrid, Kairo und Lima sind belebte Hauptstädte."),
    ("Good morning!", "Guten Morgen!"),
    ("Where is the station?", "Wo ist der Bahnhof?"),
    ("Thank you very much.", "Vielen Dank."),
    ("The book is on the table.", "Das Buch liegt auf dem Tisch."),
    ("We are going home now.", "Wir gehen jetzt nach Hause."),
    ("Günther bought a café in Zürich.", "Günther kaufte ein Café in Zürich."),
]

MARIAN_SPECIALS = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def _train_sentencepiece(sentences: list[str], vocab_size: int, path: Path) -> list[str]:
    """A unigram SentencePiece model like Marian's ``source.spm``/``target.spm``; returns its pieces.

    One thread and a fixed sentence order make every build byte-identical.
    """
    import sentencepiece

    with path.open("wb") as model_file:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model_file, vocab_size=vocab_size,
            model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, num_threads=1,
            unk_id=0, bos_id=-1, eos_id=-1, minloglevel=2,
        )
    processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size()) if not processor.is_unknown(i)]


def _marian_tokenizer(workdir: Path, vocab_size: int, max_length: int) -> Any:
    """A real ``MarianTokenizer``: SentencePiece models per side and one shared ``vocab.json``.

    The vocabulary is laid out like opus-mt's: ``</s>`` 0, ``<unk>`` 1, the pieces of both sides,
    and ``<pad>`` last (it is also the decoder's start token).
    """
    import json

    from transformers import MarianTokenizer

    english = CORPUS + [en for en, _ in TRANSLATION_PAIRS]
    german = [de for _, de in TRANSLATION_PAIRS]
    pieces = _train_sentencepiece(english, vocab_size, workdir / "source.spm")
    pieces += _train_sentencepiece(german, vocab_size, workdir / "target.spm")
    tokens = ["</s>", "<unk>", *dict.fromkeys(pieces), "<pad>"]
    (workdir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    return MarianTokenizer(
        source_spm=str(workdir / "source.spm"), target_spm=str(workdir / "target.spm"),
        vocab=str(workdir / "vocab.json"), source_lang="en", target_lang="de",
        model_max_length=max_length, **MARIAN_SPECIALS,
    )


def _train_translation(model: Any, tokenizer: Any, steps: int) -> None:
    batch = dict(tokenizer([en for en, _ in TRANSLATION_PAIRS],
                           text_target=[de for _, de in TRANSLATION_PAIRS], padding=True, return_tensors="pt"))
    batch["labels"][batch["labels"] == tokenizer.pad_token_id] = -100
    _fit(model, [batch], steps=steps)


def build_translation(directory: Path, size: str = "tiny") -> Path:
    """Marian encoder-decoder with a real MarianTokenizer, like Helsinki-NLP/opus-mt-en-de."""
    import tempfile

    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    dims = SIZES[size]
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer = _marian_tokenizer(Path(workdir), dims["vocab"], dims["positions"])
        pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        config = MarianConfig(
            vocab_size=len(tokenizer), **_seq2seq_dims(dims), pad_token_id=pad, eos_token_id=eos,
            decoder_start_token_id=pad, forced_eos_token_id=eos,
        )
        torch.manual_seed(0)
        model = MarianMTModel(config)
        # opus-mt's own generation settings: beam search, never the pad token, output up to the
        # position table (the tiny model uses fewer beams)
        model.generation_config = GenerationConfig(
            num_beams=2 if size == "tiny" else 4, max_length=dims["positions"], bad_words_ids=[[pad]],
            pad_token_id=pad, eos_token_id=eos, forced_eos_token_id=eos, decoder_start_token_id=pad,
        )
        if size == "tiny":
            _train_translation(model, tokenizer, steps=100)
        return _save(model, tokenizer, directory)


BUILDERS = {"sentiment": build_sentiment, "ner": build_ner, "summarization": build_summarization,
            "embeddings": build_embeddings, "translation": build_translation}


def _save(model: Any, tokenizer: Any, directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_all(directory: str | Path, size: str = "tiny") -> dict[str, Path]:
    """Build every model under ``directory/<name>``; returns name -> folder."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    root = Path(directory)
    return {name: builder(root / name, size) for name, builder in BUILDERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeldeploy.testing", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write one model per task under DIR (DIR/sentiment, DIR/ner, ...)")
    build.add_argument("directory")
    build.add_argument("--size", choices=sorted(SIZES), default="tiny")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Writing model shards" bar per model
    for name, path in build_all(args.directory, args.size).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
