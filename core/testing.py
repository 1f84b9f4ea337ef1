"""Tiny (and base-size) real-architecture models built offline, for tests and benchmarks.

The HuggingFace hub is often unreachable (CI, air-gapped servers), so tests cannot download
checkpoints. These builders make the same architectures the plugins serve, with random weights
and a WordPiece tokenizer trained on a few sentences (``tiny`` classifiers are then fitted for a
few seconds on labelled examples, so demos answer sensibly), saved with ``save_pretrained`` so the
plugins' real ``from_pretrained`` code loads them. ``tiny`` builds in seconds; ``base`` uses
DistilBERT-base dimensions so benchmarks do realistic compute.

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


def build_ner(directory: Path, size: str = "tiny") -> Path:
    """BERT token classifier with the CoNLL-2003 BIO labels (like dslim/bert-base-NER)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    dims = SIZES[size]
    tokenizer = _train_tokenizer(BERT_SPECIALS, ("[CLS]", "[SEP]"), dims["vocab"], dims["positions"],
                                 ["input_ids", "token_type_ids", "attention_mask"])
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=dims["dim"], num_hidden_layers=dims["layers"],
        num_attention_heads=dims["heads"], intermediate_size=dims["ffn"],
        max_position_embeddings=dims["positions"], pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(NER_LABELS)), label2id={l: i for i, l in enumerate(NER_LABELS)},
    )
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    if size == "tiny":
        _train_ner(model, tokenizer)
    return _save(model, tokenizer, directory)


def build_summarization(directory: Path, size: str = "tiny") -> Path:
    """BART encoder-decoder with CNN-style summarization defaults in task_specific_params."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    dims = SIZES[size]
    tokenizer = _train_tokenizer(BART_SPECIALS, ("<s>", "</s>"), dims["vocab"], dims["positions"],
                                 ["input_ids", "attention_mask"])
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=dims["s2s_dim"],
        encoder_layers=dims["s2s_layers"], decoder_layers=dims["s2s_layers"],
        encoder_attention_heads=dims["s2s_heads"], decoder_attention_heads=dims["s2s_heads"],
        encoder_ffn_dim=dims["s2s_ffn"], decoder_ffn_dim=dims["s2s_ffn"],
        max_position_embeddings=dims["positions"],
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
    from transformers import BertConfig, BertModel

    dims = SIZES[size]
    tokenizer = _train_tokenizer(BERT_SPECIALS, ("[CLS]", "[SEP]"), dims["vocab"], dims["positions"],
                                 ["input_ids", "token_type_ids", "attention_mask"])
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=dims["dim"], num_hidden_layers=dims["layers"],
        num_attention_heads=dims["heads"], intermediate_size=dims["ffn"],
        max_position_embeddings=dims["positions"], pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return _save(BertModel(config), tokenizer, directory)


BUILDERS = {"sentiment": build_sentiment, "ner": build_ner, "summarization": build_summarization,
            "embeddings": build_embeddings}


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
