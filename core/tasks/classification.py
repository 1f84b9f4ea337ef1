"""Sequence classification: one ``{"label", "score"}`` per text."""

from __future__ import annotations

from typing import Any

from .. import testing
from ..wrapper import ModelWrapper


class TextClassificationWrapper(ModelWrapper):
    """Softmax over the model's labels; the top label and its probability."""

    task = "text-classification"

    auto_model_class = "AutoModelForSequenceClassification"
    demo_builder = staticmethod(testing.build_sentiment)
    #: Every tokenizer call goes through tokenize/detokenize: passes may run at once.
    concurrent_passes = True

    def predict_batch(self, items: list[str]) -> list[dict[str, Any]]:
        logits = self.model(**self.encode(items)).logits
        probabilities = logits.float().softmax(dim=-1)
        scores, indices = probabilities.max(dim=-1)
        labels = self.model.config.id2label
        return [
            {"label": labels[int(index)], "score": float(score)}
            for score, index in zip(scores.tolist(), indices.tolist())
        ]
