"""Sequence-to-sequence generation (summarization, translation) through ``model.generate()``.

transformers 5 removed the summarization pipeline, so this calls ``generate`` itself. Generation
settings come, in increasing priority, from the checkpoint's generation config, its
``task_specific_params[task_params_key]`` (where T5 keeps its ``"summarize: "`` prefix and
BART-CNN its beam settings) and the model's settings in config.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .. import testing
from ..errors import ConfigError
from ..wrapper import ModelWrapper

_GENERATION_KEYS = (
    "num_beams",
    "max_new_tokens",
    "min_new_tokens",
    "max_length",
    "min_length",
    "length_penalty",
    "no_repeat_ngram_size",
    "early_stopping",
    "do_sample",
)


class Seq2SeqWrapper(ModelWrapper):
    """Prefix from the checkpoint, batched ``generate``, decoded text under ``output_key``."""

    task = "text2text-generation"
    #: Which ``task_specific_params`` entry of the checkpoint config to honour.
    task_params_key = ""
    #: Key of the generated text in each result.
    output_key = "generated_text"
    default_settings = {
        "prefix": None,
        "num_beams": None,
        "max_new_tokens": None,
        "min_new_tokens": None,
        "length_penalty": None,
        "no_repeat_ngram_size": None,
        "early_stopping": None,
        "do_sample": False,
    }

    auto_model_class = "AutoModelForSeq2SeqLM"
    supported_runtimes = ("torch",)
    demo_builder = staticmethod(testing.build_summarization)
    #: Every tokenizer call goes through tokenize/detokenize: passes may run at once.
    concurrent_passes = True
    #: Settings that must be integers of at least this value when set (null keeps the default).
    integer_settings: ClassVar[dict[str, int]] = {"num_beams": 1, "max_new_tokens": 1, "min_new_tokens": 0,
                                                  "no_repeat_ngram_size": 0}

    @classmethod
    def resolve_settings(cls, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The base checks, then the integer settings' range: a bad ``num_beams`` would otherwise
        only fail at the first request."""
        settings = super().resolve_settings(overrides)
        for key, minimum in cls.integer_settings.items():
            value = settings[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
                raise ConfigError(f"setting {key!r} of model {cls.name!r} must be an integer >= {minimum} "
                                  f"(or null for the default), got {value!r}")
        return settings

    def _task_params(self) -> dict[str, Any]:
        params = getattr(self.model.config, "task_specific_params", None) or {}
        return dict(params.get(self.task_params_key, {})) if self.task_params_key else {}

    @property
    def prefix(self) -> str:
        configured = self.settings.get("prefix")
        if configured is not None:
            return configured
        return self._task_params().get("prefix", "") or ""

    def generation_kwargs(self) -> dict[str, Any]:
        """Checkpoint task params overridden by the configured settings (None means 'keep')."""
        kwargs = {k: v for k, v in self._task_params().items() if k in _GENERATION_KEYS}
        for key in _GENERATION_KEYS:
            value = self.settings.get(key)
            if value is not None:
                kwargs[key] = value
        if "max_new_tokens" in kwargs:
            kwargs.pop("max_length", None)  # max_new_tokens wins; passing both only warns
        if "min_new_tokens" in kwargs:
            kwargs.pop("min_length", None)
        return kwargs

    def prepare_data(self, item: str) -> str:
        return self.prefix + item

    def predict_batch(self, items: list[str]) -> list[dict[str, str]]:
        results: list[dict[str, str]] = [{self.output_key: ""} for _ in items]
        # A blank text has nothing to summarise: its result is defined as "", not generated.
        to_run = [i for i, text in enumerate(items) if text[len(self.prefix) :].strip()]
        if to_run:
            encoded = self.encode([items[i] for i in to_run])
            generated = self.model.generate(**encoded, **self.generation_kwargs())
            texts = self.detokenize(
                generated, skip_special_tokens=True, clean_up_tokenization_spaces=True
            )
            for i, text in zip(to_run, texts):
                results[i] = {self.output_key: text.strip()}
        return results
