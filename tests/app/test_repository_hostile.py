"""Property-based fuzzing of the model-repository routes with the admin token (fast, echo model).

Whatever the body (arbitrary bytes, arbitrary JSON, load parameters of every shape and odd
sources), the answer is never a 5xx other than the documented 503/504 of a load, errors keep the
protocol's ``{"error": "..."}`` body, and the echo model still answers afterwards: a bad request
never leaves the server without its model. Sources that look like bucket URIs go to a closed
loopback port, never to the internet.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_input_properties import json_values, texts
from test_model_repository import AUTH, TOKEN

ECHO = {"models": {"echo": {}}, "serve": ["echo"], "server": {"admin_token": TOKEN}}
ROUTES = ["/v2/repository/index", "/v2/repository/models/echo/load", "/v2/repository/models/echo/unload"]

fuzz = settings(max_examples=80, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

sources = texts | st.sampled_from(["", " ", ".", "/", "..", "/dev/null", "/etc/passwd", "file:///nonexistent/x.dill",
                                   "gs://bucket/models/echo.dill", "gs://", "org/model", "x" * 5000, "a\x00b"])
load_bodies = st.fixed_dictionaries({}, optional={
    "parameters": st.dictionaries(st.sampled_from(["source", "sha256", "config", "unload_dependents", "file:x"]),
                                  sources | json_values, max_size=3) | json_values})


@pytest.fixture
def client(echo, app_for, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # gs:// goes nowhere but loopback
    monkeypatch.setenv("MODELDEPLOY_GCS_RETRY_DEADLINE", "1")
    return app_for(ECHO)[0]


def check(client, answer) -> None:
    assert answer.status_code < 500 or answer.status_code in (503, 504), answer.get_data(as_text=True)
    if answer.status_code >= 400:
        assert isinstance(answer.json["error"], str) and answer.json["error"]
    client.post("/v2/repository/models/echo/load", headers=AUTH)  # whatever happened, bring it back
    served = client.post("/predict", json={"model_name": "echo", "data": "abc"})
    assert served.status_code == 200 and served.json["body"] == {"length": 3}


@fuzz
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=64))
def test_any_bytes(client, route, body):
    check(client, client.post(route, data=body, headers=AUTH))


@fuzz
@given(route=st.sampled_from(ROUTES), body=load_bodies | json_values)
def test_any_json(client, route, body):
    check(client, client.post(route, data=json.dumps(body), headers=AUTH))
