"""merged_exposition: the front's /metrics with the series only the model replicas record."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from modeldeploy.metrics import merged_exposition

LOCAL = """# HELP modeldeploy_requests_total HTTP requests answered, by model, route and status.
# TYPE modeldeploy_requests_total counter
modeldeploy_requests_total{model="a",route="/predict",status="200"} 5.0
# HELP modeldeploy_batch_size Items per model forward pass, by model.
# TYPE modeldeploy_batch_size histogram
# HELP modeldeploy_model_ready 1 when the model is ready to serve, else 0.
# TYPE modeldeploy_model_ready gauge
modeldeploy_model_ready{model="a"} 1.0
"""


def replica(batches: int, items: float, ready: float) -> str:
    return f"""# HELP modeldeploy_batch_size Items per model forward pass, by model.
# TYPE modeldeploy_batch_size histogram
modeldeploy_batch_size_bucket{{le="1.0",model="a"}} {batches - 1}.0
modeldeploy_batch_size_bucket{{le="+Inf",model="a"}} {batches}.0
modeldeploy_batch_size_count{{model="a"}} {batches}.0
modeldeploy_batch_size_sum{{model="a"}} {batches * 2}.0
modeldeploy_batch_size_created{{model="a"}} 1.7e+09
# HELP modeldeploy_items_total Texts predicted, by model and outcome.
# TYPE modeldeploy_items_total counter
modeldeploy_items_total{{model="a",outcome="ok"}} {items}
# HELP modeldeploy_model_ready 1 when the model is ready to serve, else 0.
# TYPE modeldeploy_model_ready gauge
modeldeploy_model_ready{{model="a"}} {ready}
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.0
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_replica_series_are_summed_and_the_fronts_own_are_kept():
    merged = merged_exposition(LOCAL, [replica(3, 10.0, 0.0), replica(4, 5.0, 0.0)])
    values = samples(merged)
    assert values[("modeldeploy_batch_size_count", (("model", "a"),))] == 7
    assert values[("modeldeploy_batch_size_bucket", (("le", "1.0"), ("model", "a")))] == 5
    assert values[("modeldeploy_items_total", (("model", "a"), ("outcome", "ok")))] == 15
    # recorded by the front: its own value, not the replicas'
    assert values[("modeldeploy_model_ready", (("model", "a"),))] == 1
    assert values[("modeldeploy_requests_total", (("model", "a"), ("route", "/predict"), ("status", "200")))] == 5


def test_one_family_once_no_start_times_and_no_replica_process_metrics():
    merged = merged_exposition(LOCAL, [replica(3, 10.0, 0.0), replica(4, 5.0, 0.0)])
    type_lines = [line for line in merged.splitlines() if line.startswith("# TYPE")]
    assert len(type_lines) == len(set(type_lines)) == 4
    assert "_created" not in merged and "process_cpu_seconds_total" not in merged


def test_label_values_are_escaped():
    text = replica(1, 1.0, 1.0).replace('model="a"', 'model="a\\"b"')
    merged = merged_exposition(LOCAL, [text])
    assert samples(merged)[("modeldeploy_items_total", (("model", 'a"b'), ("outcome", "ok")))] == 1


def front(requests: int, status: str, ready: float) -> str:
    """Another front process's own exposition (server.fronts): its requests, latencies and model view."""
    return f"""# HELP modeldeploy_requests_total HTTP requests answered, by model, route and status.
# TYPE modeldeploy_requests_total counter
modeldeploy_requests_total{{model="a",route="/predict",status="{status}"}} {requests}.0
modeldeploy_requests_created{{model="a",route="/predict",status="{status}"}} 1.7e+09
# HELP modeldeploy_request_latency_seconds Request latency.
# TYPE modeldeploy_request_latency_seconds histogram
modeldeploy_request_latency_seconds_bucket{{le="+Inf",model="a",route="/predict"}} {requests}.0
modeldeploy_request_latency_seconds_count{{model="a",route="/predict"}} {requests}.0
modeldeploy_request_latency_seconds_sum{{model="a",route="/predict"}} 0.5
# HELP modeldeploy_model_ready 1 when the model is ready to serve, else 0.
# TYPE modeldeploy_model_ready gauge
modeldeploy_model_ready{{model="a"}} {ready}
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 7.0
"""


def test_other_fronts_requests_and_latencies_add_up_and_this_fronts_gauges_stand():
    merged = merged_exposition(LOCAL, [replica(3, 10.0, 0.0)], peers=[front(2, "200", 0.0), front(4, "503", 0.0)])
    values = samples(merged)
    route = (("model", "a"), ("route", "/predict"))
    assert values[("modeldeploy_requests_total", route + (("status", "200"),))] == 5 + 2
    assert values[("modeldeploy_requests_total", route + (("status", "503"),))] == 4  # only another front saw one
    # a family this front has not recorded yet comes from the others
    assert values[("modeldeploy_request_latency_seconds_count", route)] == 6
    assert values[("modeldeploy_request_latency_seconds_sum", route)] == 1.0
    assert values[("modeldeploy_model_ready", (("model", "a"),))] == 1  # this front's, not summed
    assert values[("modeldeploy_batch_size_count", (("model", "a"),))] == 3  # still the replicas'
    assert "process_cpu_seconds_total" not in merged and "_created" not in merged
    type_lines = [line for line in merged.splitlines() if line.startswith("# TYPE")]
    assert len(type_lines) == len(set(type_lines))
