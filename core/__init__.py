"""modeldeploy: serve HuggingFace models from pip-installable plugins.

    import modeldeploy
    modeldeploy.list_models()                       # what the installed plugins provide
    modeldeploy.load("sentiment").predict("I love it")
"""

from .errors import (
    ConfigError,
    InputTypeError,
    InvalidInputError,
    ModelDeployError,
    ModelLoadError,
    PluginError,
    UnknownModelError,
)
from .hookspecs import hookimpl
from .loading import load
from .plugins import list_models
from .wrapper import ModelWrapper

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "InputTypeError",
    "InvalidInputError",
    "ModelDeployError",
    "ModelLoadError",
    "ModelWrapper",
    "PluginError",
    "UnknownModelError",
    "hookimpl",
    "list_models",
    "load",
]
