"""/openapi.json documents exactly the app's routes, every reference resolves, and the API page
renders it without any outside resource (servers often run where no CDN is reachable)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from modeldeploy.app import create_app
from modeldeploy.config import parse_config
from modeldeploy.registry import Registry

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def app() -> Flask:
    """The real app over a registry that is never started: routes and pages only."""
    return create_app(registry=Registry(parse_config({"serve": ["sentiment"]})))


@pytest.fixture
def document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def app_operations(app: Flask) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":  # files under /static are assets, not API
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        operations |= {(path, method.lower()) for method in rule.methods - IGNORED_METHODS}
    return operations


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item if method != "parameters"}


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_every_route_is_documented_and_nothing_else(app: Flask, document: dict[str, Any]) -> None:
    assert app_operations(app) == documented_operations(document)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = set(references(document))
    assert "#/components/schemas/InferRequest" in refs
    for ref in refs:
        node = document
        for key in ref.removeprefix("#/").split("/"):
            assert key in node, f"{ref} does not resolve"
            node = node[key]


def test_every_operation_has_the_request_id_header(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert {"$ref": "#/components/parameters/RequestId"} in operation["parameters"], (path, method)
            for status, response in operation["responses"].items():
                if "$ref" not in response:
                    assert "X-Request-ID" in response["headers"], (path, method, status)


def test_version_is_the_package_version(document: dict[str, Any]) -> None:
    import modeldeploy

    assert document["openapi"].startswith("3.") and document["info"]["version"] == modeldeploy.__version__


def test_api_page_is_self_contained_and_linked_from_the_homepage(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/api")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html), "the API page must not load outside resources"
    assert 'href="/api"' in client.get("/").get_data(as_text=True)
