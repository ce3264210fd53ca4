// Small shared helpers: an element builder, number formats, links, colour maps and grid drawing.

/** h("a", {href: "#/"}, "text", child, ...): attributes starting with "on" become listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function fmt(x, digits = 3) {
  if (x == null || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2);
  return String(Number(x.toPrecision(digits)));
}

export const pct = (x) => (x == null ? "–" : `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`);

/** A hash link within the current run: href("feature/12", {x: 1}). */
export function href(route, params = {}) {
  const qs = new URLSearchParams();
  const run = currentRun();
  if (run != null) qs.set("run", run);
  for (const [k, v] of Object.entries(params)) if (v !== "" && v != null) qs.set(k, v);
  const q = qs.toString();
  return `#/${route}${q ? `?${q}` : ""}`;
}

let _run = null;
export function setCurrentRun(run, multiple) {
  _run = multiple ? run : null;
}
function currentRun() {
  return _run;
}

export function className(info, c) {
  if (c == null || c < 0) return "–";
  const names = info && info.classes;
  return names && c < names.length ? names[c] : `class ${c}`;
}

export function partName(info, p) {
  if (p == null || typeof p === "string") return p || "–";
  const names = info && info.parts;
  if (p <= 0 || !names) return "–";
  return p < names.length ? names[p] : `part ${p}`;
}

/** A feature's label, or "unlabelled" with its best guess in grey. */
export function labelNode(row) {
  if (row.label) {
    if (row.label_source === "border") return h("span", {}, badge("border", "border/position"), " ", row.label === "border" ? "" : row.label);
    return h("span", { class: "label" }, row.label);
  }
  return h("span", {}, h("span", { class: "unlabelled" }, "unlabelled"),
    row.guess ? h("span", { class: "guess" }, ` (guess: ${row.guess})`) : null);
}

export function badge(kind, text) {
  return h("span", { class: `badge badge-${kind}` }, text || kind);
}

/** A horizontal bar list: [{name, value, text}], values in [0, max]. */
export function barList(items, { max, cls = "" } = {}) {
  const top = max ?? Math.max(1e-12, ...items.map((i) => i.value));
  return h("ul", { class: `bars ${cls}` }, items.map((i) =>
    h("li", {},
      h("span", { class: "bar-name", title: i.name }, i.link ? h("a", { href: i.link }, i.name) : i.name),
      h("span", { class: "bar-track" }, h("span", { class: "bar-fill", style: { width: `${Math.max(0, Math.min(100, (100 * i.value) / top))}%` } })),
      h("span", { class: "bar-value" }, i.text ?? fmt(i.value)))));
}

// Magma-like colour map (5 stops), t in [0, 1].
const STOPS = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
export function heat(t) {
  t = Math.max(0, Math.min(1, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(t));
  const f = t - i;
  return STOPS[i].map((a, k) => Math.round(a + f * (STOPS[i + 1][k] - a)));
}

// Categorical colours for part ids (0: background, transparent-ish grey).
const PALETTE = ["#9e9e9e", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
  "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3"];
export const partColour = (p) => PALETTE[p % PALETTE.length];

/** Draw a 2-D array onto a canvas as a heatmap: positive values in magma over [0, max], negative ones in
 * blue over [-max, 0] (a latent pushed below zero); alpha grows with |value|, zero is clear. */
export function drawHeat(canvas, grid, max) {
  const H = grid.length, W = H ? grid[0].length : 0;
  canvas.width = W || 1;
  canvas.height = H || 1;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(W || 1, H || 1);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const v = grid[y][x];
    const t = max > 0 ? Math.min(1, Math.abs(v) / max) : 0;
    const [r, g, b] = v >= 0 ? heat(t) : [40, 90, 255];
    img.data.set([r, g, b, t > 0 ? Math.round(60 + 170 * t) : 0], 4 * (y * W + x));
  }
  if (W && H) ctx.putImageData(img, 0, 0);
}

/** Draw part ids onto a canvas in categorical colours. */
export function drawParts(canvas, grid) {
  const H = grid.length, W = H ? grid[0].length : 0;
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext("2d");
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    ctx.fillStyle = partColour(grid[y][x]);
    ctx.globalAlpha = grid[y][x] === 0 ? 0.25 : 0.7;
    ctx.fillRect(x, y, 1, 1);
  }
}

/** An image with a canvas laid over it (pixelated), in a figure. */
export function overlayFigure(src, alt, caption) {
  const canvas = h("canvas", { class: "overlay", "aria-hidden": "true" });
  const fig = h("figure", { class: "overlaid" },
    h("div", { class: "stack" }, h("img", { src, alt, loading: "lazy", decoding: "async" }), canvas),
    caption ? h("figcaption", {}, caption) : null);
  return { fig, canvas };
}

/** A key/value table of the scalar fields of an object (nested objects flattened one level). */
export function kvTable(obj, caption) {
  const rows = [];
  const add = (k, v) => {
    if (v == null) return;
    if (typeof v === "object" && !Array.isArray(v)) { for (const [k2, v2] of Object.entries(v)) if (typeof v2 !== "object") rows.push([`${k}.${k2}`, v2]); }
    else if (!Array.isArray(v)) rows.push([k, v]);
  };
  for (const [k, v] of Object.entries(obj || {})) add(k, v);
  return h("table", { class: "kv" }, caption ? h("caption", {}, caption) : null,
    h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, typeof v === "number" ? fmt(v) : String(v))))));
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function loading(el, what = "Loading…") {
  el.replaceChildren(h("p", { class: "muted", role: "status" }, what));
}
