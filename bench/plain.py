"""Plain transformers, as its users write it: one padded tokenizer call over a batch, then the
forward pass (``generate`` for the summarizer).

The in-process references (bench/references.py) and LitServe as its users write it
(bench/litserve_user_app.py) both run exactly this, so nothing of modeldeploy is on their model
path; only the summarizer's prefix and generation settings and the token classifier's stride come
from outside (the harness reads the ones the plugin would use, so every server and reference
generates the same way and reads the same tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The transformers Auto class of each benchmarked model, by its name in modeldeploy.
AUTO_CLASSES = {"sentiment": "AutoModelForSequenceClassification", "ner": "AutoModelForTokenClassification",
                "summarization": "AutoModelForSeq2SeqLM"}
#: Tokenizers saved without a limit report a huge sentinel as their model_max_length.
_NO_LIMIT = 1_000_000


def resolve_device(device: str) -> str:
    """``auto`` is CUDA when torch sees a GPU, else the CPU; anything else is taken as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def device_name(device: str) -> str:
    """What the results call the device: the GPU's name under CUDA, else the CPU's model."""
    import torch

    if resolve_device(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(resolve_device(device)))
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "CPU"


@dataclass
class PlainModel:
    """A tokenizer and a model on a device; :meth:`run` is one padded batch."""

    name: str
    tokenizer: Any
    model: Any
    device: str
    #: Prepended to every text (a T5-style task prefix; empty for most models).
    prefix: str = ""
    #: ``generate`` keyword arguments (seq2seq models only).
    generation: Mapping[str, Any] = field(default_factory=dict)
    #: Tokens shared by consecutive windows when a text longer than the model's window is read
    #: whole, in overlapping windows (what the NER plugin does, so that entities past the first
    #: 512 tokens are found); None: such a text is truncated.
    stride: int | None = None

    @classmethod
    def load(cls, name: str, source: str | Path, device: str = "auto", prefix: str = "",
             generation: Mapping[str, Any] | None = None, stride: int | None = None) -> PlainModel:
        import transformers

        device = resolve_device(device)
        model = getattr(transformers, AUTO_CLASSES[name]).from_pretrained(source).to(device).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        return cls(name, tokenizer, model, device, prefix, dict(generation or {}), stride)

    @property
    def generates(self) -> bool:
        return self.model.config.is_encoder_decoder

    @property
    def max_length(self) -> int:
        """The longest input in tokens: the tokenizer's limit and the position table's, whichever is less."""
        limits = [self.model.config.max_position_embeddings]
        if 0 < self.tokenizer.model_max_length < _NO_LIMIT:
            limits.append(self.tokenizer.model_max_length)
        return min(limits)

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> Any:
        """One padded tokenizer call over the batch, on the model's device: each text cut to
        ``max_length`` tokens if given, else read whole in windows of the model's (see :attr:`stride`)."""
        return self._windows(texts, max_length)[0]

    def _windows(self, texts: Sequence[str], max_length: int | None = None) -> tuple[Any, list[int]]:
        """:meth:`encode`'s rows, and the index of the text each row reads."""
        windows = {}
        if self.stride is not None and max_length is None:
            windows = {"stride": min(self.stride, self.max_length // 2), "return_overflowing_tokens": True}
        encoded = self.tokenizer([self.prefix + text for text in texts], padding=True, truncation=True,
                                 max_length=max_length or self.max_length, return_tensors="pt", **windows)
        rows_of = encoded.pop("overflow_to_sample_mapping", None)
        return encoded.to(self.device), list(range(len(texts))) if rows_of is None else rows_of.tolist()

    def forward(self, encoded: Any) -> Any:
        """Logits, or generated token ids, back on the CPU (which waits for a GPU to finish)."""
        import torch

        with torch.inference_mode():
            if self.generates:
                return self.model.generate(**encoded, **self.generation).cpu()
            return self.model(**encoded).logits.cpu()

    def run(self, texts: Sequence[str]) -> Any:
        """What a reference times: tokenize the batch in the order given, then the forward pass."""
        return self.forward(self.encode(texts))

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Each text's token count after truncation (what padding a batch to it costs; a text read
        in several windows counts one, as modeldeploy's planner counts it)."""
        encoded = self.tokenizer([self.prefix + text for text in texts], truncation=True, max_length=self.max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def results(self, texts: Sequence[str]) -> list[Any]:
        """What a user's server answers: a label and its probability per text, the label of each
        token, or the generated text."""
        encoded, rows_of = self._windows(texts)
        output = self.forward(encoded)
        if self.generates:
            return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]
        labels = self.model.config.id2label
        if output.dim() == 2:  # one row of logits per text
            probabilities = output.softmax(-1)
            return [{"label": labels[int(row.argmax())], "score": float(row.max())} for row in probabilities]
        lengths = encoded["attention_mask"].sum(-1).tolist()
        tokens: list[list[str]] = [[] for _ in texts]  # a long text's windows, one after another
        for text, row, length in zip(rows_of, output.argmax(-1), lengths):
            tokens[text] += [labels[int(i)] for i in row[:length]]
        return tokens
