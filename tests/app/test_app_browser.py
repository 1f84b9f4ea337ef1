"""The homepage in a real browser (headless Debian chromium, see ``tests/browser.py``)."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
from browser import launched_browser, open_homepage
from live_server import running_server, tiny_models_config
from playwright.sync_api import Browser, Page, expect

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "homepage.png"
XSS = '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2"> Angela Merkel in Paris'

#: The highlighted paragraph's text with the entity-type tags left out: the input, verbatim.
TEXT_WITHOUT_TYPE_LABELS = (
    "node => [...node.childNodes].map(n => n.nodeType === 3 ? n.textContent : n.firstChild.textContent).join('')"
)


@pytest.fixture(scope="module")
def browser() -> Browser:
    with launched_browser() as launched:
        yield launched


@pytest.fixture
def homepage(browser, tiny_server):
    page, outside = open_homepage(browser, tiny_server.url)
    yield page
    page.close()
    assert outside == []  # self-contained: no CDN, no fonts, nothing but the server


def run(page: Page, model: str, text: str | None = None):
    card = page.locator(f"#model-{model}")
    if text is not None:
        card.locator("textarea").fill(text)
    card.get_by_role("button", name="Run").click()
    expect(card.locator('[data-role="latency"]')).to_contain_text("ms")
    return card


def test_cards_list_every_model_with_status(homepage, tiny_models):
    cards = homepage.locator(".card")
    expect(cards).to_have_count(len(tiny_models))
    for name in tiny_models:
        expect(homepage.locator(f"#model-{name} .status")).to_have_text("ready")
    expect(homepage.locator("#model-ner textarea")).to_have_value(
        "Angela Merkel met Emmanuel Macron in Paris to talk about Airbus.")


def test_sentiment_shows_label_and_score_bar(homepage, tiny_server):
    card = run(homepage, "sentiment", "I love this movie")
    expected = tiny_server.request("POST", "/predict", json={"model_name": "sentiment", "data": "I love this movie"})
    result = expected.json()["body"]
    expect(card.locator(".label")).to_have_text(result["label"])
    expect(card.locator(".score")).to_have_text(f"{result['score'] * 100:.1f}%")
    width = card.locator(".score-fill").evaluate("node => node.style.width")
    assert float(width.rstrip("%")) == pytest.approx(result["score"] * 100, abs=0.05)
    curl = card.locator(".curl").text_content()
    assert curl.startswith(f"curl -X POST {tiny_server.url}/predict")
    assert '"data":"I love this movie"' in curl


def test_ner_highlights_entity_spans_with_a_legend(homepage, tiny_server):
    text = homepage.locator("#model-ner textarea").input_value()
    card = run(homepage, "ner")
    entities = tiny_server.request("POST", "/predict", json={"model_name": "ner", "data": text}).json()["body"]
    assert entities, "the tiny NER model finds the example's names"
    marks = card.locator("mark.entity")
    expect(marks).to_have_count(len(entities))
    for index, entity in enumerate(entities):
        mark = marks.nth(index)
        expect(mark).to_have_attribute("data-type", entity["entity_group"])
        assert mark.evaluate("node => node.firstChild.textContent") == entity["word"]
    legend = card.locator(".legend-item").all_text_contents()
    assert legend == list(dict.fromkeys(e["entity_group"] for e in entities))
    assert card.locator(".entity-text").evaluate(TEXT_WITHOUT_TYPE_LABELS) == text


def test_summarization_shows_the_summary_text(homepage, tiny_server):
    text = homepage.locator("#model-summarization textarea").input_value()
    card = run(homepage, "summarization")
    summary = tiny_server.request("POST", "/predict", json={"model_name": "summarization", "data": text}).json()
    expected = summary["body"]["summary_text"] or "(the model returned an empty text)"
    expect(card.locator(".generated")).to_have_text(expected)


def test_translation_shows_source_and_translation_side_by_side(homepage, tiny_server):
    text = "The weather is lovely today.\nShall we walk?"
    card = run(homepage, "translation", text)
    answer = tiny_server.request("POST", "/predict", json={"model_name": "translation", "data": text}).json()
    columns = card.locator(".side-by-side .column")
    expect(columns).to_have_count(2)
    expect(columns.nth(0).locator(".column-title")).to_have_text("Source")
    assert columns.nth(0).locator(".generated").text_content() == text
    expect(columns.nth(1).locator(".column-title")).to_have_text("Translation")
    assert columns.nth(1).locator(".generated").text_content() == answer["body"]["translation_text"]


def test_embeddings_compare_texts_in_a_similarity_heat_map(homepage, tiny_server):
    texts = ["A man is playing a guitar.", "<b>Someone</b> plays an instrument.", "Markets fell today."]
    card = run(homepage, "embeddings", "\n".join(texts) + "\n\n")  # blank lines are not texts
    vectors = tiny_server.request("POST", "/predict", json={"model_name": "embeddings", "data": texts}).json()["body"]
    cells = card.locator(".heatmap td.cell")
    expect(cells).to_have_count(9)
    for i, a in enumerate(vectors):
        for j, b in enumerate(vectors):
            cosine = sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))
            assert cells.nth(3 * i + j).text_content() == f"{cosine:.2f}"
    assert card.locator(".heatmap .row-head").all_text_contents() == [f"{n}. {t}" for n, t in enumerate(texts, 1)]
    expect(card.locator(".legend")).to_contain_text(f"{len(vectors[0])}-dimensional")
    assert card.locator(".heatmap b").count() == 0  # input stays text
    assert '"data":["A man is playing a guitar."' in card.locator(".curl").text_content()


def test_script_in_input_is_shown_as_text(homepage):
    card = run(homepage, "ner", XSS)
    assert card.locator(".entity-text").evaluate(TEXT_WITHOUT_TYPE_LABELS) == XSS
    expect(card.locator(".curl")).to_contain_text("<script>")
    assert homepage.evaluate("window.pwned") is None
    assert card.locator(".entity-text script, .entity-text img").count() == 0


def test_errors_are_shown_on_the_card(homepage):
    card = run(homepage, "sentiment", "")
    expect(card.locator(".label")).to_have_count(1)  # an empty text is still a valid input
    homepage.route("**/predict", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"error": {"status": 503, "message": "model \'sentiment\' is still loading"}}'))
    card = run(homepage, "sentiment", "hello")
    expect(card.locator(".error")).to_have_text("Error 503: model 'sentiment' is still loading")


def test_status_refreshes_while_a_lazy_model_loads(browser, tiny_models, tmp_path):
    config = tiny_models_config({"sentiment": tiny_models["sentiment"]})
    config["models"]["sentiment"]["lazy"] = True
    with running_server(config, tmp_path, ready=False) as server:
        page, outside = open_homepage(browser, server.url)
        expect(page.locator("#model-sentiment .status")).to_have_text("idle")
        card = run(page, "sentiment", "I love it")
        expect(card.locator(".error")).to_contain_text("Error 503")
        expect(page.locator("#model-sentiment .status")).to_have_text("ready", timeout=60_000)
        run(page, "sentiment", "I love it")
        expect(card.locator(".label")).to_have_count(1)
        page.close()
        assert outside == []


def test_homepage_screenshot(browser, tiny_server, tmp_path):
    """Renders a filled-in homepage; MODELDEPLOY_UPDATE_SCREENSHOT=1 refreshes docs/homepage.png."""
    page, _ = open_homepage(browser, tiny_server.url)
    for model in ("sentiment", "ner", "summarization", "translation", "embeddings"):
        run(page, model)
    page.locator("#model-sentiment details").evaluate("details => { details.open = true; }")
    target = tmp_path / "homepage.png"
    page.screenshot(path=str(target), full_page=True, type="png")
    page.close()
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("MODELDEPLOY_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(target, SCREENSHOT)


def test_a_failed_model_shows_its_next_attempt_and_turns_ready_when_its_folder_appears(browser, tiny_models,
                                                                                       tmp_path):
    late = tmp_path / "mounted-late"
    config = {"serve": ["sentiment"], "models": {"sentiment": {"source": str(late)}},
              "server": {"load_retry_seconds": 2, "load_retry_max_seconds": 2}}
    with running_server(config, tmp_path, ready=False) as server:
        page, outside = open_homepage(browser, server.url)
        card = page.locator("#model-sentiment")
        expect(card.locator(".status")).to_have_text("failed", timeout=60_000)
        expect(card.locator('[data-role="retry"]')).to_contain_text("next attempt in")
        expect(card.get_by_role("button", name="Run")).to_be_disabled()
        shutil.copytree(tiny_models["sentiment"], late)
        expect(card.locator(".status")).to_have_text("ready", timeout=60_000)  # no reload, no restart
        expect(card.locator('[data-role="retry"]')).to_be_hidden()
        run(page, "sentiment", "I love it")
        expect(card.locator(".label")).to_have_count(1)
        page.close()
        assert outside == []
