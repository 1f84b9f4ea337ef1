// The homepage: run a model from its card, render the result for people, keep statuses fresh.
// Every piece of input or model output reaches the page through textContent, never innerHTML.
"use strict";

const ENTITY_COLORS = { PER: "#fde68a", ORG: "#bfdbfe", LOC: "#bbf7d0", MISC: "#fbcfe8" };
const SPARE_COLORS = ["#ddd6fe", "#fed7aa", "#a5f3fc", "#e5e7eb"];
const STATUS_POLL_MS = 2000;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function entityColor(type, seen) {
  if (ENTITY_COLORS[type]) return ENTITY_COLORS[type];
  if (!seen.has(type)) seen.set(type, SPARE_COLORS[seen.size % SPARE_COLORS.length]);
  return seen.get(type);
}

function isEntityList(result) {
  return Array.isArray(result) &&
    result.every((e) => e && typeof e.start === "number" && typeof e.end === "number");
}

function renderLabel(result) {
  const box = el("div", "label-result");
  box.append(el("span", "label", result.label));
  const bar = el("div", "score-bar");
  const fill = el("div", "score-fill");
  const percent = Math.max(0, Math.min(100, result.score * 100));
  fill.style.width = percent.toFixed(1) + "%";
  bar.append(fill);
  box.append(bar, el("span", "score", percent.toFixed(1) + "%"));
  return box;
}

function renderEntities(text, entities) {
  // The server counts offsets in code points, JavaScript strings in UTF-16 units.
  const chars = Array.from(text);
  const slice = (start, end) => chars.slice(start, end).join("");
  const box = el("div", "entities");
  const spare = new Map();
  const paragraph = el("p", "entity-text");
  const sorted = [...entities].sort((a, b) => a.start - b.start);
  let position = 0;
  const types = [];
  for (const entity of sorted) {
    if (entity.start < position) continue; // overlapping spans: keep the first
    paragraph.append(document.createTextNode(slice(position, entity.start)));
    const type = String(entity.entity_group || entity.entity || "?");
    const mark = el("mark", "entity", slice(entity.start, entity.end));
    mark.dataset.type = type;
    mark.title = type + " " + (Number(entity.score) * 100).toFixed(1) + "%";
    mark.style.backgroundColor = entityColor(type, spare);
    mark.append(el("span", "entity-type", type));
    paragraph.append(mark);
    if (!types.includes(type)) types.push(type);
    position = entity.end;
  }
  paragraph.append(document.createTextNode(slice(position)));
  box.append(paragraph);
  const legend = el("p", "legend");
  if (types.length === 0) legend.textContent = "No entities found.";
  for (const type of types) {
    const key = el("span", "legend-item", type);
    key.style.backgroundColor = entityColor(type, spare);
    legend.append(key);
  }
  box.append(legend);
  return box;
}

function singleText(result) {
  if (typeof result === "string") return result;
  if (result && typeof result === "object" && !Array.isArray(result)) {
    const values = Object.values(result);
    if (values.length === 1 && typeof values[0] === "string") return values[0];
  }
  return null;
}

function renderTranslation(text, result) {
  const box = el("div", "side-by-side");
  for (const [title, body] of [["Source", text], ["Translation", result.translation_text]]) {
    const column = el("div", "column");
    column.append(el("h3", "column-title", title), el("p", "generated", body));
    box.append(column);
  }
  return box;
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

function heatColor(similarity) {
  // 0 (unrelated) .. 1 (same meaning) -> white..blue; negative similarities stay white
  const t = Math.max(0, Math.min(1, similarity));
  return "hsl(217, 91%, " + (97 - 55 * t * t).toFixed(1) + "%)";
}

function renderSimilarity(texts, vectors) {
  const box = el("div", "similarity");
  const table = el("table", "heatmap");
  const head = el("tr");
  head.append(el("th"));
  texts.forEach((_, j) => head.append(el("th", "col-head", String(j + 1))));
  table.append(head);
  texts.forEach((text, i) => {
    const row = el("tr");
    const label = el("th", "row-head", (i + 1) + ". " + text);
    label.title = text;
    row.append(label);
    vectors.forEach((other, j) => {
      const similarity = cosine(vectors[i], other);
      const cell = el("td", "cell", similarity.toFixed(2));
      cell.style.backgroundColor = heatColor(similarity);
      if (similarity > 0.75) cell.classList.add("strong");
      cell.title = "cosine similarity of texts " + (i + 1) + " and " + (j + 1);
      row.append(cell);
    });
    table.append(row);
  });
  box.append(table);
  const dimension = vectors.length ? vectors[0].length : 0;
  box.append(el("p", "legend", "Cosine similarity of the " + dimension + "-dimensional embeddings: 1 = same " +
    "meaning, near 0 = unrelated."));
  return box;
}

function isVectorList(result) {
  return Array.isArray(result) && result.length > 0 &&
    result.every((v) => Array.isArray(v) && v.every((x) => typeof x === "number"));
}

function embeddingInputs(text) {
  return text.split("\n").map((line) => line.trim()).filter((line) => line.length > 0);
}

function renderResult(text, result, task) {
  if (task === "feature-extraction" && isVectorList(result)) return renderSimilarity(embeddingInputs(text), result);
  if (task === "translation" && result && typeof result.translation_text === "string") {
    return renderTranslation(text, result);
  }
  if (result && typeof result.label === "string" && typeof result.score === "number") return renderLabel(result);
  if (isEntityList(result)) return renderEntities(text, result);
  const generated = singleText(result);
  if (generated === "") return el("p", "generated empty", "(the model returned an empty text)");
  if (generated !== null) return el("p", "generated", generated);
  return el("pre", "json", JSON.stringify(result, null, 2));
}

function curlCommand(payload) {
  const body = JSON.stringify(payload).replace(/'/g, "'\\''");
  return "curl -X POST " + window.location.origin + "/predict \\\n" +
    "  -H 'Content-Type: application/json' \\\n" +
    "  -d '" + body + "'";
}

async function run(card, form) {
  const name = card.dataset.model;
  const text = form.elements.data.value;
  const button = form.querySelector("button");
  const parts = {};
  for (const node of card.querySelectorAll("[data-role]")) parts[node.dataset.role] = node;
  const task = card.dataset.task;
  // an embeddings card compares texts: one per line, sent as a list
  const payload = { model_name: name, data: task === "feature-extraction" ? embeddingInputs(text) : text };
  button.disabled = true;
  parts.output.replaceChildren(el("p", "pending", "Running…"));
  parts.result.hidden = false;
  const started = performance.now();
  try {
    const response = await fetch("/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
    const answer = await response.json();
    const elapsed = performance.now() - started;
    if (response.ok) {
      parts.output.replaceChildren(renderResult(text, answer.body, task));
    } else {
      const message = (answer.error && answer.error.message) || response.statusText;
      parts.output.replaceChildren(el("p", "error", "Error " + response.status + ": " + message));
    }
    parts.latency.textContent = "Latency: " + elapsed.toFixed(0) + " ms (HTTP " + response.status + ")";
  } catch (error) {
    parts.output.replaceChildren(el("p", "error", "Request failed: " + error.message));
    parts.latency.textContent = "";
  } finally {
    parts.curl.textContent = curlCommand(payload);
    button.disabled = false; // refreshStatuses() disables it again if the model failed
    refreshStatuses(); // a lazy model starts loading on its first request
  }
}

function showStatus(model) {
  const card = document.querySelector('.card[data-model="' + CSS.escape(model.name) + '"]');
  if (!card) return;
  const badge = card.querySelector('[data-role="status"]');
  badge.textContent = model.status.state;
  badge.className = "status status-" + model.status.state;
  card.querySelector('[data-role="device"]').textContent = model.device;
  const reason = card.querySelector('[data-role="reason"]');
  reason.textContent = model.status.reason || "";
  reason.title = model.status.reason || "";
  reason.hidden = !model.status.reason;
  const retry = card.querySelector('[data-role="retry"]');
  const retryIn = model.status.next_retry_in_seconds;
  retry.hidden = retryIn === null || retryIn === undefined;
  retry.textContent = retry.hidden ? "" :
    "Tried " + model.status.attempts + " time(s); next attempt in " + retryIn + " s";
  card.querySelector('[data-role="fix-text"]').textContent = model.status.fix || "";
  card.querySelector('[data-role="fix"]').hidden = !model.status.fix;
  const demo = card.querySelector('[data-role="demo"]');
  demo.hidden = !model.status.demo;
  demo.title = model.status.demo || "";
  card.querySelector(".run-form button").disabled = model.status.state === "failed";
}

function showDemoBanner(models) {
  document.querySelector('[data-role="demo-banner"]').hidden = !models.some((m) => m.status.demo);
}

let polling = false;

async function refreshStatuses() {
  if (polling) return;
  polling = true;
  let again = STATUS_POLL_MS * 5;
  try {
    const models = (await (await fetch("/models")).json()).models;
    models.forEach(showStatus);
    showDemoBanner(models);
    const retrying = models.some((m) => m.status.next_retry_in_seconds !== null);
    again = models.some((m) => m.status.state === "loading") ? STATUS_POLL_MS : retrying ? STATUS_POLL_MS * 5 : 0;
  } catch (error) {
    // the server may be restarting: try again later
  } finally {
    polling = false;
  }
  if (again) setTimeout(refreshStatuses, again);
}

for (const card of document.querySelectorAll(".card")) {
  const form = card.querySelector(".run-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(card, form);
  });
}
if (document.querySelector(".status-loading, .status-idle, .retry:not([hidden])")) refreshStatuses();
