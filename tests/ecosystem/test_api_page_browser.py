"""The API page in a real browser (system chromium via playwright, as the homepage tests do):
reached from the homepage, it renders every documented operation and loads nothing from outside."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser import launched_browser
from live_server import LiveServer
from playwright.sync_api import Browser, Page, expect

from modeldeploy.app.openapi import openapi_document


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_browser() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, ecosystem_server: LiveServer) -> Iterator[Page]:
    page = browser.new_page()
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(ecosystem_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    yield page
    page.close()
    assert outside == []  # self-contained: no CDN, no fonts


def test_api_page_renders_every_operation(page: Page, ecosystem_server: LiveServer) -> None:
    page.goto(ecosystem_server.url + "/")
    page.get_by_role("link", name="API reference").click()
    expect(page).to_have_url(ecosystem_server.url + "/api")
    operations = [op for item in openapi_document()["paths"].values()
                  for method, op in item.items() if method != "parameters"]
    expect(page.locator("details.op")).to_have_count(len(operations))
    expect(page.locator("#title")).to_contain_text("modeldeploy API")
    expect(page.locator("#error")).to_be_hidden()
    infer = page.locator("#oipInfer")
    infer.locator("summary").click()
    expect(infer).to_contain_text("Inference-Header-Content-Length")
    infer.get_by_role("link", name="InferRequest").click()
    expect(page).to_have_url(ecosystem_server.url + "/api#schema-InferRequest")
    expect(page.locator("#schema-InferRequest")).to_contain_text('"maxItems": 1')
    expect(page.locator("#schema-InferInput")).to_contain_text('"binary_data_size"')
