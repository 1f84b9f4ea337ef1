"""A seconds-long run of the benchmark harness on tiny models keeps bench/ working (no timings asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_harness_smoke(tiny_models, tmp_path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "harness.py"), "--smoke", "--models", "sentiment",
         "--models-dir", str(Path(tiny_models["sentiment"]).parent), "--out", str(out), "--work", str(tmp_path / "work")],
        check=True, env=env, timeout=300, cwd=ROOT,
    )
    results = json.loads((out / "results.json").read_text())
    model = results["models"]["sentiment"]
    assert model["limit"]["limit_items_per_s"] > 0
    for server in ("modeldeploy", "baseline", "litserve"):
        run = model["runs"][server]["2"]
        assert run["ok"] > 0 and run["errors"] == 0
    # each server measured alone: an idle peer beside it takes CPU from the one under load
    assert model["running_alongside"] == {"modeldeploy": [], "baseline": [], "litserve": []}
    overload = model["overload"]
    assert overload["failures"] == 0
    assert set(overload["counts"]) <= {"200", "503"}
    report = (out / "results.md").read_text()
    assert "modeldeploy / limit" in report and (out / "throughput.png").stat().st_size > 0
