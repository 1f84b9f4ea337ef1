"""Sentence embeddings: one fixed-length vector per text, pooled and normalised as the checkpoint says.

A sentence-transformers checkpoint (all-MiniLM-L6-v2 and its kin) is a bare encoder plus two
small files that say how to turn token vectors into one sentence vector: ``1_Pooling/config.json``
(mean, CLS or max pooling) and ``sentence_bert_config.json`` (``max_seq_length``, often shorter
than the position table: MiniLM was trained on 256 tokens, not 512). They are read when present,
so the vectors equal what ``SentenceTransformer(...).encode(...)`` gives; settings override them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import testing
from ..errors import ConfigError, ModelLoadError
from ..wrapper import ModelWrapper

POOLINGS = ("mean", "cls", "max")
_POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


class SentenceEmbeddingWrapper(ModelWrapper):
    """Encoder -> pooled token vectors -> (unit-length) sentence vector, as a list of floats."""

    task = "feature-extraction"
    result_datatype = "FP32"
    auto_model_class = "AutoModel"
    demo_builder = staticmethod(testing.build_embeddings)
    #: Every tokenizer call goes through tokenize/detokenize: passes may run at once.
    concurrent_passes = True
    #: ``pooling`` and ``max_seq_length`` None: from the checkpoint's sentence-transformers files.
    default_settings = {"pooling": None, "normalize": True, "max_seq_length": None}

    @classmethod
    def resolve_settings(cls, overrides):
        settings = super().resolve_settings(overrides)
        if settings["pooling"] is not None and settings["pooling"] not in POOLINGS:
            raise ConfigError(f"setting 'pooling' of model {cls.name!r} must be one of {', '.join(POOLINGS)}, "
                              f"got {settings['pooling']!r}")
        limit = settings["max_seq_length"]
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 2):
            raise ConfigError(f"setting 'max_seq_length' of model {cls.name!r} must be an integer >= 2")
        return settings

    def load(self, source: str, device: str) -> None:
        super().load(source, device)
        folder = Path(source).expanduser()
        self.pooling = self.settings["pooling"] or _checkpoint_pooling(folder) or "mean"
        self.max_seq_length = self.settings["max_seq_length"] or _checkpoint_max_seq_length(folder)

    @property
    def max_length(self) -> int:
        limit = super().max_length
        configured = getattr(self, "max_seq_length", None)
        return min(limit, configured) if configured else limit

    @property
    def dimension(self) -> int:
        """Length of every vector this model returns."""
        return int(self.model.config.hidden_size)

    def result_shape(self) -> list[int]:
        return [self.dimension]

    def predict_batch(self, items: list[str]) -> list[list[float]]:
        import torch

        encoded = self.encode(items)
        tokens = self.model(**encoded).last_hidden_state.float()
        mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        if self.pooling == "cls":
            pooled = tokens[:, 0]
        elif self.pooling == "max":
            pooled = tokens.masked_fill(mask == 0, torch.finfo(tokens.dtype).min).max(dim=1).values
        else:
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.settings["normalize"]:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.tolist()


def _read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON file of the checkpoint, or None when it is absent; a broken one is a load error."""
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read {path.name} of the checkpoint: {exc}") from exc
    return document if isinstance(document, dict) else None


def _checkpoint_pooling(folder: Path) -> str | None:
    config = _read_json(folder / "1_Pooling" / "config.json") or {}
    chosen = [mode for key, mode in _POOLING_KEYS.items() if config.get(key)]
    unsupported = [key for key, value in config.items() if key.startswith("pooling_mode") and value
                   and key not in _POOLING_KEYS]
    if unsupported:
        raise ModelLoadError(f"the checkpoint pools with {', '.join(unsupported)}; supported: "
                             f"{', '.join(POOLINGS)}", fix="set the model's 'pooling' setting to one of those")
    return chosen[0] if len(chosen) == 1 else None


def _checkpoint_max_seq_length(folder: Path) -> int | None:
    value = (_read_json(folder / "sentence_bert_config.json") or {}).get("max_seq_length")
    return value if isinstance(value, int) and value > 1 else None
