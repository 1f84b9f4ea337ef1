"""``runtime: onnxruntime``: the loaded model exported to ONNX with torch's own exporter and run
by ONNX Runtime behind the same call the tasks make on a torch model.

The export happens at load (seconds for a small encoder), in memory: the graph travels with the
wrapper when it is pickled, and the session is rebuilt on the other side. optimum's exporter is
not used because it pins transformers below 5.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import ModelLoadError

MISSING = "runtime 'onnxruntime' needs the onnx extra: pip install 'modeldeploy[onnx]'"


class OnnxRuntimeModel:
    """An exported graph in an ONNX Runtime session, called like the torch model it came from.

    ``config`` is the original model's (labels, limits); ``forward_parameters`` names the inputs
    the graph takes, which the wrapper uses to filter a tokenizer's output.
    """

    def __init__(self, graph: bytes, config: Any, input_names: list[str], output_names: list[str]) -> None:
        self.graph, self.config = graph, config
        self.forward_parameters = frozenset(input_names)
        self.input_names, self.output_names = input_names, output_names
        self.session = _session(graph)

    def __call__(self, **inputs: Any) -> SimpleNamespace:
        return self.forward(**inputs)

    def forward(self, **inputs: Any) -> SimpleNamespace:
        """Torch tensors in (on the CPU), the named outputs back as torch tensors."""
        import torch

        feed = {name: inputs[name].numpy() for name in self.input_names if name in inputs}
        outputs = self.session.run(self.output_names, feed)
        return SimpleNamespace(**{name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)})

    def to(self, device: Any) -> "OnnxRuntimeModel":
        """Only the CPU: moving elsewhere is refused rather than silently staying here."""
        if str(device) != "cpu":
            raise ModelLoadError(f"runtime 'onnxruntime' runs on the CPU here, not on {device!r}")
        return self

    def eval(self) -> "OnnxRuntimeModel":
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("session")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.session = _session(self.graph)


def export(model: Any, name: str, example_inputs: Mapping[str, Any], quantize: bool) -> OnnxRuntimeModel:
    """Export ``model`` (traced on ``example_inputs``, batch and sequence length left dynamic)."""
    try:
        import onnxruntime  # noqa: F401  (fail before spending seconds on the export)
        import torch
    except ImportError as exc:
        raise ModelLoadError(f"model {name!r}: {MISSING}") from exc
    inputs = dict(example_inputs)
    with torch.inference_mode():
        output_names = [key for key, value in model(**inputs).items() if value is not None]
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with tempfile.TemporaryDirectory(prefix="modeldeploy-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        with _quiet_exporters():
            program = torch.onnx.export(model, (), kwargs=inputs, input_names=list(inputs), output_names=output_names,
                                        dynamic_shapes={key: {0: batch, 1: length} for key in inputs},
                                        dynamo=True, verbose=False)
            program.save(str(path))
            if quantize:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantized = Path(folder) / "model.int8.onnx"
                quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
                path = quantized
        graph = path.read_bytes()
    return OnnxRuntimeModel(graph, model.config, list(inputs), output_names)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Keep the exporter's and quantizer's notes about their own internals (torchvision ops it
    skips, a pre-processing tip logged on the root logger) out of the server's log."""
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    exporter.setLevel(logging.ERROR)
    root_notes = _DropBelowError()
    logging.getLogger().addFilter(root_notes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger().removeFilter(root_notes)
        exporter.setLevel(level)


class _DropBelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _session(graph: bytes) -> Any:
    """A CPU session using as many threads as torch does (the server's ``torch_threads``)."""
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
