"""``ModelWrapper``: the template every served model follows.

The request path is split into small overridable steps, LitServe-style:
``load`` -> ``prepare_data`` (per item) -> ``predict_batch`` (a list, one forward) ->
``postprocess`` (per item). The base class owns what all models share: input validation,
batched tokenization with padding and truncation to the model's real maximum length,
``torch.inference_mode()``, device placement, thread safety and JSON-safe outputs.

Each request is validated once (:func:`~modeldeploy.inputs.normalize_texts`) and each item
prepared once (:meth:`ModelWrapper.prepare_texts`); the prepared texts are what token lengths
are measured on and what :meth:`ModelWrapper.run_prepared` runs, whoever batches them.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from . import heap, runtimes
from .batch_planner import CostModel, plan_batches
from .devices import resolve_device, validate_device
from .errors import ConfigError, ModelDeployError, ModelLoadError, PluginContractError
from .inputs import normalize_texts
from .jsonsafe import to_jsonable

#: Tokenizers saved without a limit report this huge sentinel as their model_max_length.
_NO_LIMIT = 1_000_000
_FALLBACK_MAX_LENGTH = 512
_COMMON_SETTINGS: Mapping[str, Any] = {"batch_size": 32, "precision": "fp32", "runtime": "torch"}
#: ``token_lengths`` of at most this many texts keeps their encodings for ``encode`` (a server round
#: is at most ``max_batch_size``; a huge in-process list is not worth the memory).
_MAX_REMEMBERED = 1024
#: What ``tokenizer(..., padding=True)`` pads each key of a single-sequence encoding with; None: the
#: tokenizer's own pad token id / pad token type id.
_PAD_VALUES: Mapping[str, int | None] = {"input_ids": None, "token_type_ids": None, "attention_mask": 0}
#: Two texts of different lengths: what an ONNX export traces (batch and length stay dynamic).
_TRACE_TEXTS = ("A short example.", "A second, somewhat longer example sentence, traced for export.")


class ModelWrapper:
    """Base class of every model. Subclasses set the class attributes and ``predict_batch``."""

    #: Model name used in the API, the CLI and URLs (lowercase, unique across plugins).
    name: ClassVar[str] = ""
    #: Short task tag, e.g. ``text-classification``.
    task: ClassVar[str] = ""
    #: What ``load`` reads when no source is configured: a hub id or a local folder.
    default_source: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: An input that shows the model off (prefilled on the homepage, used in docs).
    example: ClassVar[str] = ""
    #: Name of the ``transformers`` Auto class the default ``load`` uses (imported on load, so
    #: ``import modeldeploy`` stays light), e.g. ``"AutoModelForSequenceClassification"``.
    auto_model_class: ClassVar[str] = ""
    #: Per-model settings with their defaults; config.yaml may override exactly these keys.
    default_settings: ClassVar[Mapping[str, Any]] = {}
    #: Writes a small offline model of this task into a folder (``modeldeploy.testing``): what a
    #: config with ``demo_fallback: true`` serves, labelled as demo weights, when the real one
    #: cannot be loaded. None: no demo model for this task.
    demo_builder: ClassVar[Callable[[Path], Path] | None] = None
    #: Estimated cost of a padded forward pass; the server's batcher refits it when the model loads.
    cost_model: CostModel = CostModel()
    #: How results travel as an Open Inference Protocol tensor: ``"BYTES"`` (each result as its
    #: JSON text) or ``"FP32"`` (each result a vector of floats of :meth:`result_shape`).
    result_datatype: ClassVar[str] = "BYTES"
    #: Runtimes this task can run on (the ``runtime`` setting); generation stays on torch.
    supported_runtimes: ClassVar[tuple[str, ...]] = runtimes.RUNTIMES
    #: Whether two ``predict_batch`` calls may run at once (the batcher's pass streams on a CPU):
    #: true only where every tokenizer call goes through :meth:`tokenize` / :meth:`detokenize`
    #: and nothing else is shared. A subclass that overrides ``predict_batch``, ``encode`` or
    #: ``postprocess`` is back to one pass at a time unless it says so itself.
    concurrent_passes: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        overrides = {"predict_batch", "encode", "postprocess"} & set(vars(cls))
        if overrides and "concurrent_passes" not in vars(cls):
            cls.concurrent_passes = False

    def __init__(
        self,
        source: str | None = None,
        device: str = "auto",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.source = source or self.default_source
        self.requested_device = validate_device(device)
        self.device: str | None = None
        self.settings = self.resolve_settings(settings or {})
        self.model: Any = None
        self.tokenizer: Any = None
        self._lock = threading.Lock()
        #: Set once loading (conversion included) has finished, under the lock.
        self._ready = False
        #: The fast tokenizer's settings are state a call may change: one call at a time.
        self._tokenizer_lock = threading.Lock()
        #: The encodings of the texts last measured by token_lengths (replaced, never grown).
        self._remembered: dict[str, dict[str, list[int]]] = {}

    # ----------------------------------------------------------------- settings
    @classmethod
    def allowed_settings(cls) -> dict[str, Any]:
        return {**_COMMON_SETTINGS, **cls.default_settings}

    @classmethod
    def resolve_settings(cls, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Merge overrides into the defaults; unknown keys and wrong types are config errors."""
        allowed = cls.allowed_settings()
        merged = dict(allowed)
        for key, value in overrides.items():
            if key not in allowed:
                raise ConfigError(
                    f"unknown setting {key!r} for model {cls.name!r}; "
                    f"allowed settings: {', '.join(sorted(allowed)) or 'none'}"
                )
            default = allowed[key]
            if default is not None and not _same_kind(default, value):
                raise ConfigError(
                    f"setting {key!r} of model {cls.name!r} must be {type(default).__name__}, "
                    f"got {type(value).__name__} ({value!r})"
                )
            merged[key] = value
        if not isinstance(merged["batch_size"], int) or merged["batch_size"] < 1:
            raise ConfigError(f"setting 'batch_size' of model {cls.name!r} must be a positive integer")
        runtimes.check_settings(cls.name, merged, cls.supported_runtimes)
        return merged

    # ----------------------------------------------------------------- loading
    @property
    def is_loaded(self) -> bool:
        return self.model is not None

    def ensure_loaded(self) -> "ModelWrapper":
        """Load on first use; safe to call from several threads: a caller that comes while another
        loads waits for the model as converted (``self.model`` is set before it is converted, and a
        pass that may run beside others holds no lock that would make it wait)."""
        if not (self._ready and self.is_loaded):
            with self._lock:
                if not self.is_loaded:
                    device = resolve_device(self.requested_device)
                    precision, runtime = self.settings["precision"], self.settings["runtime"]
                    runtimes.check_device(self.name, precision, runtime, device)
                    try:
                        self.load(self.source, device)
                        self.device = device
                        # under the lock: a caller that sees the model before it is converted
                        # waits for this lock before it can run it
                        self.model = runtimes.convert(self.model, self.name, precision, runtime,
                                                      lambda: self.encode(_TRACE_TEXTS))
                        self.__dict__.pop("_forward_parameter_names", None)
                    except ModelDeployError:
                        self.model = None
                        raise
                    except Exception as exc:
                        self.model = None
                        raise ModelLoadError(
                            f"could not load model {self.name!r} from {self.source!r}: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc
                self._ready = True
        return self

    def load(self, source: str, device: str) -> None:
        """Read tokenizer and weights with ``from_pretrained`` (hub id or local folder)."""
        import transformers

        if not self.auto_model_class:
            raise NotImplementedError(f"{type(self).__name__} must set auto_model_class or override load()")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        model = getattr(transformers, self.auto_model_class).from_pretrained(source)
        model.to(device)
        model.eval()
        self.model = model

    @property
    def max_length(self) -> int:
        """The longest input the model accepts, in tokens (tokenizer and position table agree)."""
        limits = []
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < _NO_LIMIT:
            limits.append(tokenizer_limit)
        config = getattr(self.model, "config", None)
        for attr in ("max_position_embeddings", "n_positions"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                limits.append(value)
                break
        return min(limits) if limits else _FALLBACK_MAX_LENGTH

    # ----------------------------------------------------------------- steps
    def prepare_data(self, item: str) -> str:
        """Per-item text preparation before tokenization (e.g. a task prefix).

        Runs once per item on the caller's thread (an HTTP thread in the server), concurrently
        with inference: keep it to string work; the fast tokenizer is not thread-safe.
        """
        return item

    def prepare_texts(self, texts: Sequence[str]) -> list[str]:
        """Validated texts -> the texts the model sees (``prepare_data`` once per item)."""
        return [self.prepare_data(text) for text in texts]

    def encode(self, texts: Sequence[str], **options: Any) -> Any:
        """Tokenize a batch with padding to its longest item and truncation, on the model's device.

        Texts whose lengths were just measured (:meth:`token_lengths`, which the batcher calls on a
        round before planning it) are not tokenized again: their encodings are padded as the
        tokenizer would pad them. That was about 5 % of a round of the MiniLM classifier.
        """
        remembered = self._remembered
        if not options and remembered and all(text in remembered for text in texts):
            padded = self._pad([remembered[text] for text in texts])
            if padded is not None:
                return self.model_inputs(padded)
        encoded = self.tokenize(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            **options,
        )
        return self.model_inputs(encoded)

    def tokenize(self, *args: Any, **kwargs: Any) -> Any:
        """``self.tokenizer(*args, **kwargs)``, one call at a time: a fast tokenizer called with
        other padding or truncation than its last call changes its settings, which can fail
        ("Already borrowed", tokenizers' known limit) while another thread's call is using them."""
        with self._tokenizer_lock:
            return self.tokenizer(*args, **kwargs)

    def detokenize(self, sequences: Any, **kwargs: Any) -> list[str]:
        """``self.tokenizer.batch_decode(sequences, **kwargs)``, one call at a time (see :meth:`tokenize`)."""
        with self._tokenizer_lock:
            return self.tokenizer.batch_decode(sequences, **kwargs)

    def runs_concurrent_passes(self) -> bool:
        """Whether the loaded model may run several passes at once: its task allows it, and it
        runs on torch on the CPU (a GPU runs one pass's kernels at a time anyway; ONNX Runtime
        sizes its own thread pool per session)."""
        return self.concurrent_passes and self.device == "cpu" and self.settings.get("runtime") == "torch"

    def _pad(self, rows: Sequence[Mapping[str, list[int]]]) -> dict[str, Any] | None:
        """Rows of one tokenizer call, padded to the longest as ``padding=True`` would; None when a
        key or the tokenizer's padding is one this does not reproduce (then the tokenizer runs)."""
        import torch

        tokenizer = self.tokenizer
        pads = {"input_ids": tokenizer.pad_token_id, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
        if pads["input_ids"] is None or not set(rows[0]) <= set(_PAD_VALUES):
            return None
        width = max(len(row["input_ids"]) for row in rows)
        left = tokenizer.padding_side == "left"
        batch = {}
        for key in rows[0]:
            fill = _PAD_VALUES[key] if _PAD_VALUES[key] is not None else pads[key]
            tensor = torch.full((len(rows), width), fill, dtype=torch.long)
            for index, row in enumerate(rows):
                values = torch.tensor(row[key], dtype=torch.long)
                if left:
                    tensor[index, width - len(values):] = values
                else:
                    tensor[index, : len(values)] = values
            batch[key] = tensor
        return batch

    def model_inputs(self, encoded: Mapping[str, Any]) -> dict[str, Any]:
        """Keep only the tensors the model's forward accepts, moved to its device.

        Tokenizers often return ``token_type_ids`` that DistilBERT-like models reject.
        """
        accepted = self._forward_parameters()
        return {
            key: value.to(self.device)
            for key, value in encoded.items()
            if key in accepted and hasattr(value, "to")
        }

    def _forward_parameters(self) -> frozenset[str]:
        cached = getattr(self, "_forward_parameter_names", None)
        if cached is None:  # a non-torch runtime names its graph's inputs itself
            cached = getattr(self.model, "forward_parameters", None) or frozenset(
                inspect.signature(self.model.forward).parameters)
            self._forward_parameter_names = cached
        return cached

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token count of each prepared text after truncation (what padding will cost)."""
        if self.tokenizer is None:  # a model without a tokenizer: words approximate its cost
            return [len(text.split()) for text in texts]
        encoded = self.tokenize(list(texts), truncation=True, max_length=self.max_length)
        if len(texts) <= _MAX_REMEMBERED:  # for encode(): one tokenizer pass per text, not two
            keys = list(encoded.keys())
            self._remembered = {text: {key: encoded[key][i] for key in keys} for i, text in enumerate(texts)}
        return [len(row) for row in encoded["input_ids"]]

    def pass_shape(self, tokens: int) -> tuple[int, int]:
        """The rows of a forward pass a text of ``tokens`` tokens (before truncation) fills, and
        the length each is padded to: one row of at most ``max_length`` unless the task reads long
        texts in several windows. Admission prices a queued text by it, from an estimate of its
        tokens; it must agree with :meth:`pass_shapes`."""
        return 1, min(tokens, self.max_length)

    def pass_shapes(self, texts: Sequence[str]) -> list[tuple[int, int]]:
        """``(rows, length)`` of each prepared text, from its real tokens: what the batch planner
        pads (see :meth:`pass_shape`)."""
        return [(1, length) for length in self.token_lengths(texts)]

    def predict_batch(self, items: list[str]) -> list[Any]:
        """Run one batch of prepared texts; return one raw output per item, in order."""
        raise NotImplementedError

    def postprocess(self, output: Any) -> Any:
        """Turn one raw output into the JSON-able result users see."""
        return output

    def result_shape(self) -> list[int]:
        """Shape of one item's result in an OIP tensor, once loaded: ``[]`` for a BYTES element,
        ``[length]`` for an FP32 vector."""
        return []

    # ----------------------------------------------------------------- public
    def run_prepared(self, prepared: Sequence[str]) -> list[Any]:
        """Prepared texts in, JSON-safe results out: one locked, no-grad pass over the steps."""
        import torch

        self.ensure_loaded()
        with self._pass_lock(), torch.inference_mode():
            outputs = self.predict_batch(list(prepared))
        # varied shapes leave freed activations fragmented in the malloc heaps: give their pages
        # back to the OS once they pile up (bounded RSS; see heap.HeapTrimmer)
        heap.HEAP_TRIMMER.after_pass()
        if len(outputs) != len(prepared):
            cls = type(self)
            raise PluginContractError(
                f"plugin bug: {cls.__module__}.{cls.__qualname__}.predict_batch returned {len(outputs)} outputs "
                f"for {len(prepared)} inputs; it must return exactly one output per input, in order"
            )
        return [to_jsonable(self.postprocess(output)) for output in outputs]

    def _pass_lock(self) -> Any:
        """What a pass holds: nothing where passes may run at once, else the wrapper's lock."""
        return contextlib.nullcontext() if self.concurrent_passes else self._lock

    def run_batch(self, texts: Sequence[str]) -> list[Any]:
        """Validated texts in, results out, as one batch (prepares them, then :meth:`run_prepared`)."""
        self.ensure_loaded()
        return self.run_prepared(self.prepare_texts(texts))

    def predict(self, data: str | Sequence[str]) -> Any:
        """Predict for one string (one result) or a list of strings (a list of results, in order).

        A list runs as padded batches of at most ``batch_size`` items, grouped by token length
        (:func:`~modeldeploy.batch_planner.plan_batches`) so short texts are not padded to long ones.
        """
        texts, single = normalize_texts(data)
        self.ensure_loaded()
        prepared = self.prepare_texts(texts)
        results: list[Any] = [None] * len(prepared)
        lengths = [0]
        if len(prepared) > 1:
            with self._pass_lock():  # a plugin's own tokenizer calls in predict_batch hold it
                lengths = self.token_lengths(prepared)
        for batch in plan_batches(lengths, self.settings["batch_size"], self.cost_model):
            for index, result in zip(batch, self.run_prepared([prepared[i] for i in batch])):
                results[index] = result
        return results[0] if single else results

    # ----------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state.pop("_tokenizer_lock", None)
        state.pop("_remembered", None)  # users' texts never travel in an artifact
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._ready = False  # the first ensure_loaded checks under the lock
        self._tokenizer_lock = threading.Lock()
        self._remembered = {}

    def __repr__(self) -> str:
        status = f"loaded on {self.device}" if self.is_loaded else "not loaded"
        return f"<{type(self).__name__} {self.name!r} source={self.source!r} {status}>"


def _same_kind(default: Any, value: Any) -> bool:
    """Settings keep their default's type; ints are accepted where floats are expected."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))
