"""/openapi.json describes the real server: property-based requests generated from it never get
a 5xx (but the documented 503/504 of a generated deadline too short to meet), and every response
conforms to it (schemathesis against the real server process).

Each documented operation is its own test. The operations are listed from the document the
server serves (the same file), because schemathesis' lazy fixture loader does not work with
the pytest version used here; the cases themselves come from schemathesis' strategies.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from live_server import LiveServer

from modeldeploy.app.openapi import openapi_document

#: Examples per operation and mode: enough to reach each documented error path, few enough for ~30 s.
EXAMPLES_PER_OPERATION = 12
#: Schema-valid infer requests can still be wrong in a way JSON Schema cannot express (a shape
#: whose product differs from the number of texts), so a 400 there is correct, not a failure.
SEMANTIC_400_OPERATIONS = {"/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"}
#: Schema-invalid requests must be refused with a client error. schemathesis' default list leaves
#: out 413, which is what the spec documents (and the API answers) for a body or a `data` list
#: over the configured limit, e.g. a generated list longer than `maxItems`.
CHECKS_CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["4xx"]}}})
#: A request whose X-Request-Timeout is shorter than the model could ever answer gets the
#: documented 503 (refused at admission) or 504 (its deadline passed): a 5xx by design, still
#: checked against the description. Generated deadlines shorter than this may do so.
FEASIBLE_DEADLINE_SECONDS = 30.0


def asks_for_a_tight_deadline(case: schemathesis.Case) -> bool:
    try:
        return float((case.headers or {}).get("X-Request-Timeout", "inf")) < FEASIBLE_DEADLINE_SECONDS
    except (TypeError, ValueError):
        return False


def cases() -> list[tuple[str, str, schemathesis.GenerationMode]]:
    """Every documented operation, positive; negative too where something can be invalid (a
    body or a path parameter; an optional free-form header alone has no invalid value)."""
    found = []
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            found.append((method.upper(), path, schemathesis.GenerationMode.POSITIVE))
            if "requestBody" in operation or "{" in path:
                found.append((method.upper(), path, schemathesis.GenerationMode.NEGATIVE))
    return found


CASES = cases()


@pytest.fixture(scope="module")
def served_schema(ecosystem_server: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{ecosystem_server.url}/openapi.json", config=CHECKS_CONFIG)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_operation_conforms_to_its_description(served_schema: schemathesis.BaseSchema, method: str, path: str,
                                               mode: schemathesis.GenerationMode) -> None:
    """Positive cases (schema-valid) must succeed or fail as documented; negative ones
    (schema-invalid) must be refused with a 4xx; neither may ever get a 5xx."""
    operation = served_schema[path][method]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def conforms(case: schemathesis.Case) -> None:
        tight = [not_a_server_error] if asks_for_a_tight_deadline(case) else []
        case.call_and_validate(timeout=60, excluded_checks=excluded + tight)

    excluded = [positive_data_acceptance] if path in SEMANTIC_400_OPERATIONS else []

    conforms()
