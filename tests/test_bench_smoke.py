"""A seconds-long run of the benchmark harness on tiny models keeps bench/ working (no timings asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("modeldeploy", "modeldeploy-process", "litserve-user", "litserve-wrapper", "baseline")


def test_benchmark_harness_smoke(tiny_models, tmp_path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "harness.py"), "--smoke", "--models", "sentiment", "--models-dir",
         str(Path(tiny_models["sentiment"]).parent), "--out", str(out), "--work", str(tmp_path / "work")],
        check=True, env=env, timeout=300, cwd=ROOT,
    )
    results = json.loads((out / "results.json").read_text())
    assert results["machine"]["device"] in ("cpu", "cuda") and results["machine"]["device_name"]
    model = results["models"]["sentiment"]
    references = model["references"]
    assert references["batch1"]["items_per_s"] > 0 and references["batch1"]["p50_ms"] > 0
    window = references["windows"]["2"]
    assert window["arrival_items_per_s"] > 0 and window["ideal_items_per_s"] > 0
    assert window["ideal_sub_batches"] >= references["items"] // 2
    for server in SERVERS:
        for concurrency in ("1", "2"):
            run = model["runs"][server][concurrency]
            assert run["ok"] > 0 and set(run["statuses"]) == {"200"}, (server, concurrency, run)
            assert run["errors"] == 0 and run["timeouts"] == 0 and run["cpu_ms_per_request"] > 0
    # each server measured alone: an idle peer beside it takes CPU from the one under load
    assert model["running_alongside"] == {server: [] for server in SERVERS}
    assert model["litserve_sweep"]["4"]["ok"] > 0  # LitServe as its users write it, another batch size
    assert "breakdown" not in model  # --smoke skips the profile
    report = (out / "results.md").read_text()
    for heading in ("In-process references", "| target | measured | met |", "litserve-user", "ideal window",
                    "other max_batch_size values"):
        assert heading in report
    assert (out / "curve.png").stat().st_size > 0
    # results are published: nothing of this machine's file system in them
    for text in (report, (out / "results.json").read_text()):
        assert str(tmp_path) not in text and str(ROOT) not in text


def _bench_module(name: str):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_ideal_window_splits_a_sorted_window_where_the_fitted_cost_is_least() -> None:
    ideal = _bench_module("ideal")
    cost, error = ideal.fit([(rows, length, 0.002 + rows * (1e-5 * length + 2e-8 * length**2))
                             for rows in (1, 4, 16) for length in (16, 64, 256)])
    assert error < 0.01 and cost.per_token_squared > 0
    # 30 short texts and 2 long ones: one batch would pad the short ones to 500 tokens
    assert ideal.cheapest_split([12] * 30 + [500, 510], cost) == [30, 2]
    # with a large fixed cost per batch, one batch is cheapest
    assert ideal.cheapest_split([12] * 30 + [20, 24], ideal.Cost(fixed=1.0, per_token=1e-6)) == [32]


def test_interleaved_runs_two_servers_in_turn(tiny_models, tmp_path) -> None:
    out = tmp_path / "interleaved"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "interleaved.py"), "--smoke", "--servers", "modeldeploy-process,baseline",
         "--rounds", "2", "--concurrency", "2", "--models-dir", str(Path(tiny_models["sentiment"]).parent),
         "--out", str(out), "--work", str(tmp_path / "work")],
        check=True, env=env, timeout=300, cwd=ROOT,
    )
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["order"] == ["modeldeploy-process", "baseline", "baseline", "modeldeploy-process"]
    for run in results["runs"]:
        assert run["2"]["ok"] > 0 and set(run["2"]["statuses"]) == {"200"}, run
    report = out.with_suffix(".md").read_text()
    assert "| 2 |" in report and "modeldeploy-process baseline baseline modeldeploy-process" in report
    assert str(tmp_path) not in report + out.with_suffix(".json").read_text()


def test_interleaved_times_the_references_in_their_turn(tiny_models, tmp_path) -> None:
    out = tmp_path / "interleaved-references"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "interleaved.py"), "--smoke", "--servers", "modeldeploy,registry,ideal",
         "--rounds", "1", "--models-dir", str(Path(tiny_models["sentiment"]).parent),
         "--out", str(out), "--work", str(tmp_path / "work")],
        check=True, env=env, timeout=300, cwd=ROOT,
    )
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["order"] == ["modeldeploy", "registry", "ideal"]
    served, registry, ideal = results["runs"]
    assert served["2"]["ok"] > 0 and set(served["2"]["statuses"]) == {"200"}
    # the registry answered in its own process, its clients' latencies measured
    assert registry["2"]["items_per_s"] > 0 and 0 < registry["2"]["p50_ms"] <= registry["2"]["p99_ms"]
    assert registry["2"]["errors"] == {}
    # the ideal window of 2 sorts and splits each window: at most 2 texts in a sub-batch
    assert ideal["2"]["items_per_s"] > 0 and ideal["2"]["sub_batches"] >= results["reference_items"] / 2
    report = out.with_suffix(".md").read_text()
    assert "in-process ideal window" in report and "batching without its HTTP front" in report
    assert "| modeldeploy / registry | modeldeploy / ideal | registry / ideal |" in report


def test_registry_loop_counts_refusals_apart_from_answers() -> None:
    from modeldeploy.errors import OverloadedError

    class EveryOtherRefused:
        calls = 0

        def predict_texts(self, texts):
            self.calls += 1
            if self.calls % 2:
                raise OverloadedError("queue full", retry_after=1)
            return [{"label": "POSITIVE"} for _ in texts]

    served = EveryOtherRefused()
    run = _bench_module("registry_loop").closed_loop(served, ["a", "b"], 1, 0.05)
    assert served.calls >= 2 and run["errors"] == {"OverloadedError": (served.calls + 1) // 2}
    assert run["items_per_s"] > 0


def test_interleaved_reverses_every_other_round() -> None:
    interleaved = _bench_module("interleaved")
    assert interleaved.run_order(["a", "b", "c"], 2) == ["a", "b", "c", "c", "b", "a"]
    assert interleaved.run_order(["a", "b"], 4) == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_breakdown_charges_each_thread_group_by_its_working_samples() -> None:
    breakdown = _bench_module("breakdown")
    raw = "\n".join([
        'process 1:"serve";thread (11): waitress-0;run (threading.py:1);service (waitress/task.py:2);'
        "send (waitress/wasyncore.py:3) 3",
        'process 1:"serve";thread (12): waitress-1;run (threading.py:1);wsgi_app (flask/app.py:9);'
        "loads (json/__init__.py:4) 1",
        'process 1:"serve";thread (12): waitress-1;run (threading.py:1);submit (core/batching.py:5);'
        "Condition.wait (threading.py:6) 50",
        'process 1:"serve";thread (20): modeldeploy-batcher-m;_compute (core/batching.py:7);'
        "predict_batch (core/tasks/classification.py:8);_call_impl (torch/nn/modules/module.py:9) 9",
        'process 1:"serve";thread (20): modeldeploy-batcher-m;_compute (core/batching.py:7);'
        "__call__ (transformers/tokenization_utils_base.py:10) 1",
    ])
    threads = breakdown.parse(raw)
    # the two pool threads are pooled: 0.4 s of CPU split 3:1; thread 30 is native (not sampled)
    result = breakdown.split(threads, {11: 0.1, 12: 0.3, 20: 1.0, 30: 0.6}, requests=100)
    ms = {bucket: part["cpu_ms_per_request"] for bucket, part in result["buckets"].items()}
    assert round(ms[breakdown.HTTP], 6) == 3.0 and round(ms[breakdown.PARSING], 6) == 1.0
    assert round(ms[breakdown.FORWARD], 6) == 9.0 and round(ms[breakdown.TOKENIZING], 6) == 1.0
    assert round(ms[breakdown.NATIVE], 6) == 6.0
    assert result["samples"] == {"working": 14, "waiting": 50}


def test_breakdown_reads_a_process_engine_worker_apart_from_the_front() -> None:
    breakdown = _bench_module("breakdown")
    raw = "\n".join([
        'process 1:"serve";thread (11): MainThread;serve (core/cli/http_server.py:1);'
        "readwrite (waitress/wasyncore.py:2) 2",
        'process 1:"serve";process 2:"python -c from multiprocessing.spawn import spawn_main; spawn_main()";'
        "thread (21): MainThread;run_worker (core/process_engine/worker.py:3);"
        "accept (socket.py:4) 5",
        'process 1:"serve";process 2:"spawn_main";thread (22): modeldeploy-batcher-m;_compute (core/batching.py:7);'
        "_call_impl (torch/nn/modules/module.py:9) 8",
    ])
    threads = breakdown.parse(raw)
    assert {tid: name for tid, (name, _) in threads.items()} == {
        11: "MainThread", 21: "worker/MainThread", 22: "worker/modeldeploy-batcher-m"}
    result = breakdown.split(threads, {11: 0.2, 21: 0.0, 22: 0.8}, requests=100)
    ms = {bucket: part["cpu_ms_per_request"] for bucket, part in result["buckets"].items()}
    # the front's loop is HTTP, the worker's forward pass is the forward pass, and neither is native
    assert round(ms[breakdown.HTTP], 6) == 2.0 and round(ms[breakdown.FORWARD], 6) == 8.0
    assert ms[breakdown.NATIVE] == 0 and result["samples"] == {"working": 10, "waiting": 5}


def test_lone_request_times_the_same_texts_in_process_and_served(tiny_models, tmp_path) -> None:
    out = tmp_path / "lone"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "lone_request.py"), "--models", "sentiment", "--models-dir",
         str(Path(tiny_models["sentiment"]).parent), "--texts", "8", "--block", "4", "--passes", "1",
         "--work", str(tmp_path / "work"), "--out", str(out)],
        check=True, env=env, timeout=300, cwd=ROOT,
    )
    results = json.loads(out.with_suffix(".json").read_text())
    run = results["models"]["sentiment"]
    assert run["texts"] == 8 and run["in_process_p50_ms"] > 0 and run["served_p50_ms"] > 0
    assert run["difference_p10_ms"] <= run["difference_p50_ms"] <= run["difference_p90_ms"]
    report = out.with_suffix(".md").read_text()
    assert "| sentiment |" in report and ("| met |" in report or "| **not met** |" in report)
    assert str(tmp_path) not in report + out.with_suffix(".json").read_text()


def test_lone_request_judges_the_target_on_the_per_text_difference() -> None:
    lone = _bench_module("lone_request")
    # the sides' medians 1.5 ms apart, but the same texts 2.4 ms apart at p50: not met
    run = {"in_process_p50_ms": 9.0, "served_p50_ms": 10.5, "difference_p50_ms": 2.4,
           "difference_p10_ms": 1.0, "difference_p90_ms": 3.0}
    results = {"date": "d", "commit": "c", "machine": "m", "texts": 8, "torch_threads": 2, "block": 4, "passes": 1,
               "models": {"sentiment": run, "ner": {**run, "difference_p50_ms": 1.9}}}
    report = lone.render(results)
    assert "| sentiment | 9.0 | 10.5 | 2.40 (1.00 / 3.00) | **not met** |" in report
    assert "| ner | 9.0 | 10.5 | 1.90 (1.00 / 3.00) | met |" in report


def test_lone_requests_lean_client_reads_answers_split_across_reads() -> None:
    import socket
    import threading

    lone = _bench_module("lone_request")
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def answer_each() -> None:
        connection, _ = listener.accept()
        with connection:
            for body in (b'{"a": 1}', b'{"error": "no"}', b"chunked"):
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(4096)
                head, _, rest = request.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(rest) < length:
                    rest += connection.recv(4096)
                received.append(rest)
                if body == b"chunked":  # framing the client does not read: it must say so, not hang
                    connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                    continue
                status = b"200 OK" if body == b'{"a": 1}' else b"503 Service Unavailable"
                answer = b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                connection.sendall(answer[:7])  # the client must wait for the rest
                connection.sendall(answer[7:])

    server = threading.Thread(target=answer_each, daemon=True)
    server.start()
    client = lone.LeanClient(listener.getsockname()[1], timeout=10)
    try:
        assert client.post(b'{"model_name": "m", "data": "x"}') == (200, b'{"a": 1}')
        assert client.post(b"{}") == (503, b'{"error": "no"}')
        with pytest.raises(ValueError, match="without one Content-Length"):
            client.post(b"[]")
    finally:
        client.close()
        listener.close()
    server.join(10)
    assert received == [b'{"model_name": "m", "data": "x"}', b"{}", b"[]"]


def test_front_cost_reads_the_front_apart_from_its_worker(tmp_path) -> None:
    out = tmp_path / "front-cost"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, str(ROOT / "bench" / "front_cost.py"), "--workloads", "stream,rounds",
                    "--concurrency", "4", "--seconds", "1", "--work", str(tmp_path / "work"), "--out", str(out)],
                   check=True, env=env, timeout=300, cwd=ROOT, capture_output=True)
    results = json.loads(out.with_suffix(".json").read_text())
    for workload in ("stream", "rounds"):
        local, process = results["runs"][workload]["local"]["4"], results["runs"][workload]["process"]["4"]
        assert set(local["statuses"]) == set(process["statuses"]) == {"200"}, results
        assert local["workers_cpu_ms"] == 0  # only the process engine has workers
    # streaming, a second is hundreds of answers: enough clock ticks for each process's share
    local, process = results["runs"]["stream"]["local"]["4"], results["runs"]["stream"]["process"]["4"]
    assert local["front_cpu_ms"] > 0 and process["front_cpu_ms"] > 0 and process["workers_cpu_ms"] > 0
    assert "(none)" in out.with_suffix(".md").read_text() and str(tmp_path) not in out.with_suffix(".md").read_text()


def test_storm_onset_splits_refusals_at_the_storms_first_second() -> None:
    onset = _bench_module("storm_onset")
    # (seconds into the storm the probe was sent, latency ms)
    runs = [{"goodput": [100.0, 120.0], "refusals": [(0.1, 900.0), (0.5, 3.0), (0.99, 25.0), (1.0, 2.0), (4.0, 21.0)]},
            {"goodput": [110.0], "refusals": [(2.0, 1.0)]}]
    summary = onset.summary(runs)
    assert summary["goodput"] == 110.0
    assert summary["onset"]["n"] == 3 and summary["onset"]["slow"] == 2 and summary["onset"]["max"] == 900.0
    assert summary["after"]["n"] == 3 and summary["after"]["slow"] == 1 and summary["after"]["p50"] == 2.0
    assert onset.cut([]) == {"n": 0, "p50": None, "p99": None, "max": None, "slow": 0}
