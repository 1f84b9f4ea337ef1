"""Fixtures shared by the core's tests and the plugins' own tests (tiny offline models)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = ["modeldeploy.pytest_plugin"]
