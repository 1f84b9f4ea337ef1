"""How a loaded model runs: its numeric ``precision`` and the ``runtime`` that executes it.

Both are per-model settings (``models.NAME.settings`` in config.yaml, or ``settings=`` in the
Python API). The spelling and the task are checked when settings are resolved, the device once it
is known, so a combination that cannot work is refused with a message naming the setting before
any weights are read. Conversion happens once, right after a plugin's ``load``, so every plugin
gets it without code of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from ..errors import ConfigError, ModelLoadError

#: ``int8`` is dynamic quantization of the linear layers (weights int8, activations quantized
#: per batch), a CPU technique; fp16/bf16 cast the weights.
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
RUNTIMES = ("torch", "onnxruntime")
#: What ONNX Runtime runs here: the exported fp32 graph, or that graph dynamically quantized.
ONNX_PRECISIONS = ("fp32", "int8")


def check_settings(model: str, settings: Mapping[str, Any], supported_runtimes: Collection[str]) -> None:
    """Refuse an unknown precision or runtime, or one this model's task cannot use."""
    precision, runtime = settings["precision"], settings["runtime"]
    if precision not in PRECISIONS:
        raise ConfigError(f"setting 'precision' of model {model!r} must be one of {', '.join(PRECISIONS)}, "
                          f"got {precision!r}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"setting 'runtime' of model {model!r} must be one of {', '.join(RUNTIMES)}, "
                          f"got {runtime!r}")
    if runtime not in supported_runtimes:
        raise ConfigError(f"model {model!r} cannot use runtime {runtime!r}: its task supports "
                          f"{', '.join(supported_runtimes)} (generation calls generate() step by step, "
                          "which is not exported)")
    if runtime == "onnxruntime" and precision not in ONNX_PRECISIONS:
        raise ConfigError(f"model {model!r}: runtime 'onnxruntime' runs precision "
                          f"{' or '.join(ONNX_PRECISIONS)}, not {precision!r}; use runtime 'torch' for {precision}")


def check_device(model: str, precision: str, runtime: str, device: str) -> None:
    """Refuse what the resolved device cannot run (no GPU is needed to check this)."""
    if precision == "int8" and device != "cpu":
        raise ModelLoadError(f"model {model!r}: precision 'int8' is dynamic quantization, which runs on the CPU "
                             f"only; device is {device!r} (use fp16 or bf16 there, or device cpu)")
    if runtime == "onnxruntime" and device != "cpu":
        raise ModelLoadError(f"model {model!r}: runtime 'onnxruntime' runs on the CPU here; device is {device!r} "
                             "(use runtime 'torch' on a GPU, with precision fp16 or bf16)")


def convert(model: Any, name: str, precision: str, runtime: str,
            example_inputs: Callable[[], Mapping[str, Any]]) -> Any:
    """The loaded torch model -> the model to serve, in the configured precision and runtime.

    ``example_inputs`` returns a tokenized batch of texts of different lengths, which traces the
    graph for an ONNX export (called only then: a plugin without a tokenizer serves fp32 torch).
    """
    if precision == "fp32" and runtime == "torch":
        return model
    _require_torch_module(model, name, precision, runtime)
    if runtime == "onnxruntime":
        from .onnx import export

        return export(model, name, example_inputs(), quantize=precision == "int8")
    from .precision import cast

    return cast(model, precision)


def _require_torch_module(model: Any, name: str, precision: str, runtime: str) -> None:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"model {name!r}: precision {precision!r} with runtime {runtime!r} converts a torch "
                             f"module, but this plugin's load() produced {type(model).__name__}")
