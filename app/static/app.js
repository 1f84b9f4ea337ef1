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

function renderResult(text, result) {
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
  const payload = { model_name: name, data: text };
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
      parts.output.replaceChildren(renderResult(text, answer.body));
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
