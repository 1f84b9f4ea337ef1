"""Choosing the engine: config keys and CLI flags, and what is said when Ray is missing or misused."""

from __future__ import annotations

import sys

import pytest

from modeldeploy.cli import main
from modeldeploy.cli.serve import chosen_engine
from modeldeploy.config import AutoscalingConfig, parse_config
from modeldeploy.errors import ConfigError, ModelLoadError


def test_replicas_resources_and_autoscaling_are_read_per_model():
    config = parse_config({"server": {"engine": "ray", "ray_address": "head:6379"}, "models": {
        "fixed": {"replicas": 3, "num_cpus": 1, "num_gpus": 0.5, "max_queued_requests": 10},
        "scaled": {"autoscaling": {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 8}}}})
    fixed, scaled = config.model("fixed"), config.model("scaled")
    assert (fixed.replicas, fixed.num_cpus, fixed.num_gpus, fixed.max_queued_requests) == (3, 1.0, 0.5, 10)
    assert fixed.autoscaling is None
    assert scaled.autoscaling == AutoscalingConfig(min_replicas=0, max_replicas=4, target_ongoing_requests=8.0)
    assert config.server.engine == "ray" and config.server.ray_address == "head:6379"


def test_auto_is_the_default_and_is_the_local_engine_without_a_gpu():
    config = parse_config({"models": {"a": {"device": "auto"}, "b": {"device": "cpu"}}})
    assert config.server.engine == "auto" and config.model("any").replicas == 1
    assert chosen_engine(config, ["a", "b"]) == "local"  # this machine's torch sees no CUDA


def on_cuda_if_named_so(device: str) -> str:
    """What resolve_device answers on a machine with one GPU (none exists here to ask)."""
    if device == "cuda:1":
        raise ModelLoadError("device 'cuda:1' requested but only 1 CUDA device(s) exist")
    return {"auto": "cuda", "cpu": "cpu"}.get(device, device)


@pytest.mark.parametrize("engine, devices, expected", [
    ("auto", {"a": "cpu", "b": "auto"}, "process"),  # one model on the GPU takes every model out of the front
    ("auto", {"a": "cpu", "b": "cuda:0"}, "process"),
    ("auto", {"a": "cpu", "b": "cpu"}, "local"),
    ("auto", {"a": "cpu", "b": "cuda:1"}, "local"),  # a GPU this machine lacks: that model fails to load anyway
    ("local", {"a": "cuda", "b": "cuda"}, "local"),  # a named engine is never overridden
    ("ray", {"a": "cpu", "b": "cpu"}, "ray"),
])
def test_auto_takes_the_models_out_of_the_front_when_one_runs_on_cuda(engine, devices, expected):
    config = parse_config({"server": {"engine": engine},
                           "models": {name: {"device": device} for name, device in devices.items()}})
    assert chosen_engine(config, list(devices), resolve=on_cuda_if_named_so) == expected


@pytest.mark.parametrize("document, message", [
    ({"server": {"engine": "kubernetes"}}, "server.engine must be one of auto, local, process, ray, got 'kubernetes'"),
    ({"models": {"m": {"replicas": 0}}}, "models.m.replicas must be > 0"),
    ({"models": {"m": {"replicas": 2, "autoscaling": {"min_replicas": 1, "max_replicas": 2}}}},
     "models.m sets both replicas and autoscaling"),
    ({"models": {"m": {"autoscaling": {"max_replicas": 2}}}}, "models.m.autoscaling.min_replicas is required"),
    ({"models": {"m": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}}},
     "models.m.autoscaling.max_replicas (2) must be at least min_replicas (3)"),
    ({"models": {"m": {"autoscaling": {"min_replicas": 1, "max_replicas": 2, "target": 3}}}},
     "models.m.autoscaling.target is not a known key"),
    ({"models": {"m": {"num_cpus": -1}}}, "models.m.num_cpus must be >= 0"),
    ({"models": {"m": {"replicas": "two"}}}, "models.m.replicas must be an integer"),
    ({"server": {"ray_num_cpus": -2}}, "server.ray_num_cpus must be >= 0"),
    ({"server": {"fronts": 0}}, "server.fronts must be > 0, got 0"),
    ({"server": {"fronts": "two"}}, "server.fronts must be an integer"),
])
def test_each_mistake_names_its_key(document, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(document)
    assert message in str(raised.value)


def test_an_address_without_the_ray_engine_is_refused(capsys):
    assert main(["serve", "--address", "10.0.0.1:6379", "--port", "0"]) == 1
    assert "is for the ray engine; add --engine ray" in capsys.readouterr().err


def test_the_ray_engine_without_ray_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    for module in [name for name in sys.modules if name.startswith("modeldeploy.ray_engine")]:
        monkeypatch.delitem(sys.modules, module)
    assert main(["serve", "--engine", "ray", "--port", "0"]) == 1
    assert "pip install 'modeldeploy[ray]'" in capsys.readouterr().err


def test_several_fronts_choose_the_process_engine_and_refuse_the_others(tmp_path, capsys):
    config = parse_config({"server": {"fronts": 2}, "models": {"a": {"device": "cpu"}}})
    assert chosen_engine(config, ["a"], resolve=on_cuda_if_named_so) == "process"  # the fronts share its workers
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  fronts: 2\n  engine: local\n")
    assert main(["serve", "--config", str(path), "--port", "0"]) == 1
    assert "server.fronts: 2 needs the process engine" in capsys.readouterr().err
    assert main(["serve", "--config", str(path), "--engine", "ray", "--port", "0"]) == 1
    assert "the ray engine serves from one front" in capsys.readouterr().err
    assert main(["serve", "--fronts", "2", "--engine", "local", "--port", "0"]) == 1  # the flag, as the key
    assert "server.fronts: 2 needs the process engine" in capsys.readouterr().err
    assert main(["serve", "--fronts", "0", "--port", "0"]) == 1
    assert "--fronts must be at least 1, got 0" in capsys.readouterr().err
