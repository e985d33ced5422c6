// transduce web page: plain JavaScript, no build step, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let MODELS = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- models and their defaults ---------------------------------------------------

async function loadModels() {
  const res = await fetch("/api/models");
  MODELS = await res.json();
  for (const m of MODELS) {
    const kind = m.ensemble > 1 ? `ensemble of ${m.ensemble}, first: ` : "";
    const rescored = m.rescorers > 0 ? `, ${m.rescorers} rescorer${m.rescorers > 1 ? "s" : ""}` : "";
    const label = `${m.name} (${kind}${m.family} ${m.cell}, ${(m.parameters / 1e6).toFixed(2)}M${rescored})`;
    $("model").append(el("option", { value: m.name }, label));
  }
  if (MODELS.length) applyDefaults(MODELS[0]);
}

function applyDefaults(model) {
  // Every option field takes the chosen model's own default (GET /api/models "search").
  for (const field of document.querySelectorAll("[data-option]")) {
    const value = model.search[field.dataset.option];
    if (field.type === "checkbox") field.checked = Boolean(value);
    else field.value = value === null || value === undefined ? "" : value;
  }
}

function requestBody() {
  const texts = $("input").value.split("\n").map((t) => t.trim()).filter((t) => t.length);
  const body = { texts, model: $("model").value, attention: true };
  for (const field of document.querySelectorAll("[data-option]")) {
    const name = field.dataset.option;
    if (field.type === "checkbox") body[name] = field.checked;
    else if (field.value === "") continue;  // left empty: the model's default (max_len, seed)
    else body[name] = field.type === "number" ? Number(field.value) : field.value;
  }
  body.tree = body.method === "beam";
  return body;
}

// --- request and results --------------------------------------------------------

async function translate(event) {
  event.preventDefault();
  const body = requestBody();
  if (!body.texts.length) return showError("Type a sentence first.");
  $("status").textContent = "translating…";
  $("go").disabled = true;
  try {
    const res = await fetch("/api/translate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const data = await res.json();
    if (!res.ok) throw new Error(`${res.status}: ${errorText(data.detail)}`);
    render(body, data.translations);
    $("status").textContent = "";
  } catch (e) {
    showError(e.message);
  } finally {
    $("go").disabled = false;
  }
}

function errorText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return JSON.stringify(detail);
}

function showError(message) {
  // An error replaces the previous results: nothing stale stays on screen.
  $("status").textContent = "";
  $("results").replaceChildren(el("p", { class: "err", role: "alert" }, message));
}

function render(body, translations) {
  const cards = translations.map((r, i) => card(body, body.texts[i], r));
  $("results").replaceChildren(...cards);
}

function card(body, source, r) {
  const box = el("section", { class: "card" },
    el("div", { class: "source" }, source),
    el("div", { class: "translation" }, r.text || "(empty output)"),
    nbestTable(r), el("p", { class: "note" }, scoreNote(body)));
  if (r.attention && r.tokens && r.tokens.length) {
    box.append(el("h2", {}, "Attention of the best hypothesis"), heatmap(r));
  }
  if (r.tree && r.tree.steps.length) {
    box.append(el("h2", {}, "Beam search tree"), treeLegend(), beamTree(r.tree));
  }
  return box;
}

function nbestTable(r) {
  const table = el("table", { class: "nbest" },
    el("tr", {}, el("th", {}, "#"), el("th", {}, "hypothesis"), el("th", {}, "score")));
  r.nbest.forEach((h, i) => {
    table.append(el("tr", { class: i === 0 ? "best" : "" }, el("td", {}, String(i + 1)),
      el("td", {}, h.text || "(empty)"), el("td", { class: "num" }, fmt(h.score))));
  });
  return table;
}

function fmt(x) { return Number.isFinite(x) ? x.toFixed(3) : String(x); }

function scoreNote(body) {
  // What the score means, for the options this request used.
  if (body.method !== "beam") {
    return "Score: the log-probability of the output (natural log, ≤ 0; closer to 0 = more likely; " +
      "e^score is its probability).";
  }
  const norm = {
    none: "the raw log-probability",
    average: "the log-probability divided by the output length",
    gnmt: `the log-probability divided by ((5 + length) / 6)^${body.alpha} (GNMT length penalty)`,
  }[body.length_penalty] || "the log-probability";
  const cov = body.coverage > 0 ? `, plus a coverage penalty (β = ${body.coverage}) for source words left unattended` : "";
  const model = MODELS.find((m) => m.name === body.model) || MODELS[0];
  const rescored = model && model.rescorers > 0 && body.rescore_weight > 0
    ? `, plus ${body.rescore_weight} × the rescorers' mean log-probability of the output, normalised the same way` : "";
  return `Score: ${norm}${cov}${rescored}. Log-probabilities are natural logs (≤ 0; closer to 0 = more likely); ` +
    "the n-best are ranked by this score, best first. Numbers in the tree are the raw log-probability of each prefix.";
}

// --- attention heatmap -------------------------------------------------------------

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function colour(v) {
  // v in [0, 1] -> a viridis colour (linear between five stops).
  const x = Math.min(Math.max(v, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
  const c = VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function heatmap(r) {
  // Rows: output tokens; columns: source tokens; cell colour: attention weight (0..1).
  const cell = 26, left = 12 + 8 * Math.max(...r.tokens.map((t) => t.length), 3);
  const top = 12 + 7 * Math.max(...r.src_tokens.map((t) => t.length), 3);
  const barH = cell * Math.max(r.tokens.length, 3);
  const width = left + cell * r.src_tokens.length + 70, height = top + barH + 10;
  const root = svg("svg", { class: "heatmap", width, height, role: "img",
    "aria-label": "attention heatmap: output tokens by source tokens" });
  const readout = el("div", { class: "readout" }, "Hover a cell for its weight.");
  r.src_tokens.forEach((s, j) => root.append(svg("text", {
    x: left + cell * j + cell / 2, y: top - 6, transform: `rotate(-50 ${left + cell * j + cell / 2} ${top - 6})` }, s)));
  r.tokens.forEach((t, i) => {
    root.append(svg("text", { x: left - 6, y: top + cell * i + cell / 2 + 4, "text-anchor": "end" }, t));
    (r.attention[i] || []).forEach((w, j) => {
      const rect = svg("rect", { class: "cell", x: left + cell * j, y: top + cell * i, width: cell - 1,
        height: cell - 1, fill: colour(w) });
      const what = `“${t}” ← “${r.src_tokens[j]}”: ${w.toFixed(3)}`;
      rect.append(svg("title", {}, what));
      rect.addEventListener("mouseenter", () => { readout.textContent = what; });
      root.append(rect);
    });
  });
  root.append(colourBar(left + cell * r.src_tokens.length + 14, top, barH));
  return el("div", {}, el("div", { class: "scroll" }, root), readout);
}

function colourBar(x, y, h) {
  // A vertical colour scale from 0 (bottom) to 1 (top) with its labels.
  const g = svg("g", { class: "colourbar" });
  const steps = 20;
  for (let k = 0; k < steps; k++) {
    g.append(svg("rect", { x, y: y + (h * k) / steps, width: 12, height: h / steps + 0.5,
      fill: colour(1 - k / steps) }));
  }
  g.append(svg("text", { x: x + 16, y: y + 10 }, "1.0"), svg("text", { x: x + 16, y: y + h / 2 + 4 }, "0.5"),
    svg("text", { x: x + 16, y: y + h }, "0.0"));
  return g;
}

// --- beam search tree -------------------------------------------------------------

function treeLegend() {
  const item = (cls, text) => el("span", {}, el("span", { class: `swatch ${cls}` }), text);
  const legend = el("div", { class: "legend" });
  legend.append(item("kept", "kept in the beam"), item("finished", "finished (EOS)"),
    item("pruned", "best pruned"), item("path", "final path"));
  for (const [cls, colourName] of [["kept", "#eef4ff"], ["finished", "#eaf7ea"], ["pruned", "#f4f4f4"], ["path", "#d4480b"]]) {
    legend.querySelector(`.swatch.${cls}`).style.background = colourName;
  }
  return el("div", {}, legend, el("p", { class: "note" },
    "Each column is one decoding step. Every box extends a kept hypothesis of the previous column " +
    "with one token; the number is the log-probability of the prefix so far. The beam keeps the best " +
    "hypotheses, moves those ending in <eos> to the finished list and prunes the rest (the best pruned are shown)."));
}

function layoutTree(tree) {
  // Column per step (-1 = the start); in a column: kept by slot, then finished, then pruned.
  const rank = { kept: 0, finished: 1, pruned: 2 };
  return tree.steps.map((nodes, t) => nodes
    .map((n, index) => ({ ...n, index, onPath: tree.path[t] === index }))
    .sort((a, b) => rank[a.status] - rank[b.status] || (a.status === "kept" ? a.slot - b.slot : b.score - a.score)));
}

function beamTree(tree) {
  const cols = layoutTree(tree);
  const colW = 122, rowH = 30, boxW = 102, boxH = 24;
  const rows = Math.max(...cols.map((c) => c.length), 1);
  const root = svg("svg", { class: "beamtree", width: colW * (cols.length + 1) + 10, height: rowH * rows + 30,
    role: "img", "aria-label": "beam search tree" });
  const y = (row) => 20 + row * rowH;
  let prev = [{ slot: 0, row: 0, onPath: true }];  // the start (BOS)
  root.append(treeNode(5, y(0), boxW, boxH, "<bos>", "", "kept path"));
  cols.forEach((nodes, t) => {
    const x = 5 + colW * (t + 1);
    nodes.forEach((n, row) => {
      const parent = prev.find((p) => p.slot === n.parent) || prev[0];
      const onPath = n.onPath && parent.onPath;
      root.insertBefore(svg("path", { class: `edge${onPath ? " path" : ""}`,
        d: `M${x - colW + boxW + 5},${y(parent.row) + boxH / 2} C${x - 10},${y(parent.row) + boxH / 2} ${x - 25},${y(row) + boxH / 2} ${x},${y(row) + boxH / 2}` }), root.firstChild);
      root.append(treeNode(x, y(row), boxW, boxH, n.token, fmt(n.score), `${n.status}${onPath ? " path" : ""}`));
    });
    prev = nodes.map((n, row) => ({ slot: n.slot, row, onPath: n.onPath })).filter((p) => p.slot >= 0);
  });
  return el("div", { class: "scroll" }, root);
}

function treeNode(x, y, w, h, token, score, cls) {
  const g = svg("g", { class: `node ${cls}` });
  g.append(svg("rect", { x, y, width: w, height: h, rx: 4 }),
    svg("text", { x: x + 5, y: y + 16 }, token.length > 8 ? token.slice(0, 7) + "…" : token),
    svg("text", { x: x + w - 5, y: y + 16, "text-anchor": "end", fill: "#555" }, score));
  g.append(svg("title", {}, `${token}  ${score}  (${cls})`));
  return g;
}

// --- wiring ---------------------------------------------------------------------------

$("form").addEventListener("submit", translate);
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit();
});
$("model").addEventListener("change", () => {
  const model = MODELS.find((m) => m.name === $("model").value);
  if (model) applyDefaults(model);
});
loadModels().catch((e) => showError(`could not load the models: ${e.message}`));
