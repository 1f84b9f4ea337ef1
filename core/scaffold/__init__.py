"""``modeldeploy new-plugin``: a complete, pip-installable plugin package for a task of ``TASKS``.

The files are ``templates/*.tmpl`` (``string.Template``, shipped as package data); this module
works out the names (distribution, package, class), the task's base class and the demo builder
its tests use, renders every file first, and only then writes them into a folder it creates
itself, so nothing that already exists is ever overwritten.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from string import Template

from .. import testing
from ..errors import ModelDeployError
from ..names import MODEL_NAME_PATTERN
from ..tasks import TASKS
from ..wrapper import ModelWrapper
from .examples import TASK_EXAMPLES

#: The generated ``default_source``: obviously not a real checkpoint, for the author to replace.
SOURCE_PLACEHOLDER = "your-org/your-model"


@dataclass(frozen=True)
class PluginNames:
    """Every name a plugin for one model needs, derived from the model name."""

    model: str  # emotion
    distribution: str  # modeldeploy-emotion, also the folder
    package: str  # modeldeploy_emotion
    wrapper_class: str  # EmotionWrapper
    test_module: str  # test_emotion


def plugin_names(name: str) -> PluginNames:
    """Names for model ``name``; ``-`` and ``.`` become ``_`` in the package, word breaks in the class."""
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.fullmatch(name):
        raise ModelDeployError(f"invalid model name {name!r}: use 1 to 64 lowercase letters, digits, '_', '.' "
                               f"or '-', starting with a letter or digit")
    slug = re.sub(r"[-.]", "_", name)
    class_name = "".join(word[0].upper() + word[1:] for word in re.split(r"[-._]+", name) if word) + "Wrapper"
    if class_name[0].isdigit():
        class_name = "Model" + class_name
    return PluginNames(name, f"modeldeploy-{name}", f"modeldeploy_{slug}", class_name, f"test_{slug}")


def core_requirement(version: str | None = None) -> str:
    """The modeldeploy range a plugin supports: this minor release series while 0.x, else this major.

    ``version`` defaults to the installed distribution's (read from its metadata: importing
    ``modeldeploy.__version__`` would pull the whole package into this lower layer).
    """
    version = version or metadata.version("modeldeploy")
    major, minor = (int(part) for part in re.match(r"(\d+)\.(\d+)", version).groups())
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"modeldeploy>={major}.{minor},<{upper}"


def task_base(task: str) -> type[ModelWrapper]:
    """The base class of ``task``, or a one-line error listing the tasks there are."""
    if task not in TASKS:
        raise ModelDeployError(f"unknown task {task!r}; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[task]


def _demo_builder_name(base: type[ModelWrapper]) -> str:
    """The ``modeldeploy.testing`` function the generated tests build their offline model with."""
    builder = base.demo_builder
    name = getattr(builder, "__name__", "")
    if builder is None or getattr(testing, name, None) is not builder:
        raise ModelDeployError(f"task {base.task!r} has no offline model builder in modeldeploy.testing, "
                               f"which the generated tests need")
    return name


def _template(name: str) -> Template:
    return Template((resources.files(__package__) / "templates" / name).read_text(encoding="utf-8"))


def render_plugin(name: str, task: str) -> dict[str, str]:
    """Every file of the plugin, by its path inside the plugin folder."""
    names = plugin_names(name)
    base = task_base(task)
    if task not in TASK_EXAMPLES:
        raise ModelDeployError(f"new-plugin has no templates for task {task!r} yet")
    example = TASK_EXAMPLES[task]
    values = {
        "name": names.model, "distribution": names.distribution, "package": names.package,
        "class_name": names.wrapper_class, "task": task, "base": base.__name__,
        "builder": _demo_builder_name(base), "dependencies": json.dumps([core_requirement(), *example.dependencies]),
        "source_placeholder": SOURCE_PLACEHOLDER, "example": example.example,
        "example_literal": json.dumps(example.example, ensure_ascii=False),
        "description_literal": json.dumps(example.description, ensure_ascii=False),
        "output_key": getattr(base, "output_key", ""),
        "settings": ", ".join(f"`{key}`" for key in base.allowed_settings()),
    }
    check = _template(f"check_{example.check}.py.tmpl").substitute(values).rstrip("\n")
    return {
        "pyproject.toml": _template("pyproject.toml.tmpl").substitute(values),
        "README.md": _template("README.md.tmpl").substitute(values),
        f"{names.package}/__init__.py": _template("package.py.tmpl").substitute(values),
        "tests/conftest.py": _template("conftest.py.tmpl").substitute(values),
        f"tests/{names.test_module}.py": _template("test_plugin.py.tmpl").substitute(values, check=check),
    }


def new_plugin(name: str, task: str, directory: str | Path = ".") -> Path:
    """Write the plugin for model ``name`` of ``task`` into ``directory/modeldeploy-<name>``; return that folder.

    Refuses (``ModelDeployError``) an invalid name, an unknown task and an existing folder.
    """
    files = render_plugin(name, task)
    target = Path(directory) / plugin_names(name).distribution
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelDeployError(f"cannot create folder {directory}: {exc.strerror or exc}") from None
    try:
        target.mkdir()
    except FileExistsError:
        raise ModelDeployError(f"{target} already exists; nothing was written (choose another name or "
                               f"--directory)") from None
    except OSError as exc:
        raise ModelDeployError(f"cannot create {target}: {exc.strerror or exc}") from None
    try:
        for relative, text in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # the folder is ours: we created it above
        raise
    return target
