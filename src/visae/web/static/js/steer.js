// #/steer?image=INDEX&latents=A,B&scales=s,t : set latents to scale × their max activation on one
// image and see the classifier's probabilities, the latents' maps and the part probe before/after.
import { api, runUrl, debounce, showError, clearError } from "./api.js";
import { h, fmt, href, className, barList, drawHeat, drawParts, partColour, overlayFigure, section, loading } from "./ui.js";
import { gridImage } from "./image.js";

const MAX_EDITS = 16;

export async function render(view, { run, info, runs, params, signal }) {
  loading(view);
  const index = parseInt(params.get("image") ?? "0", 10);
  if (!(index >= 0)) throw new Error(`'${params.get("image")}' is not an image index (a whole number)`);
  const im = await api(runUrl(run, `/images/${index}`), { signal });
  const grid = im.grid || info.grid;
  const labels = new Map((im.top || []).map((t) => [t.latent, t.label]));
  const scales = (params.get("scales") || "").split(",").filter((s) => s !== "").map(Number);
  let ids = (params.get("latents") || "").split(",").filter((s) => /^\d+$/.test(s.trim())).map(Number);
  if (!params.has("latents")) ids = (im.top || []).slice(0, 3).map((t) => t.latent);
  // A latent is edited once its slider moves (or a scale came in the link): scale 0 is an ablation, not a no-op.
  const edits = ids.slice(0, MAX_EDITS).map((latent, i) => ({ latent, scale: Number.isFinite(scales[i]) ? scales[i] : 0, where: "all", on: Number.isFinite(scales[i]) }));
  const selected = new Set();

  const rows = h("div", { class: "edits" });
  const results = h("div", { class: "results", "aria-live": "polite" });
  const state = h("p", { class: "muted", role: "status" });

  const onCell = (y, x, button) => {
    const key = `${y},${x}`;
    if (selected.has(key)) selected.delete(key); else selected.add(key);
    button.setAttribute("aria-pressed", String(selected.has(key)));
    if (edits.some((e) => e.on && e.where === "cells")) schedule();
  };

  const pick = h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const qs = { image: e.target.elements.image.value, latents: edits.map((x) => x.latent).join(",") };
    location.hash = href("steer", qs);
  } }, h("label", {}, "Image ", h("input", { name: "image", type: "number", min: 0, value: index, required: true, class: "narrow" })), h("button", { type: "submit" }, "Load"));
  const add = h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const v = e.target.elements.latent.value.trim();
    if (!/^\d+$/.test(v)) { showError(`'${v}' is not a latent id (a whole number from 0 to ${info.n_latents - 1})`); return; }
    if (edits.length >= MAX_EDITS) { showError(`at most ${MAX_EDITS} latents can be edited at once; remove one first`); return; }
    if (!edits.some((x) => x.latent === Number(v))) edits.push({ latent: Number(v), scale: 0, where: "all", on: false });
    e.target.reset();
    drawRows();
    syncHash();
  } }, h("label", {}, "Add latent ", h("input", { name: "latent", type: "number", min: 0, max: info.n_latents - 1, class: "narrow", required: true })), h("button", { type: "submit" }, "Add"));

  function syncHash() {
    const qs = new URLSearchParams();
    if (runs.length > 1 || params.get("run") != null) qs.set("run", run);
    qs.set("image", index);
    qs.set("latents", edits.map((e) => e.latent).join(","));
    if (edits.some((e) => e.on)) qs.set("scales", edits.map((e) => (e.on ? e.scale : "")).join(","));
    history.replaceState(null, "", `#/steer?${qs}`);
  }

  function drawRows() {
    rows.replaceChildren(...edits.map((e, i) => {
      const id = `edit-${e.latent}`;
      const out = h("output", { for: `${id}-scale`, class: "scale-value" }, fmt(e.scale));
      const on = h("input", { type: "checkbox", id: `${id}-on`, checked: e.on });
      const slider = h("input", { type: "range", id: `${id}-scale`, class: "scale", min: -10, max: 10, step: 0.5, value: e.scale,
        "aria-label": `scale of latent ${e.latent} (× its max activation)` });
      slider.addEventListener("input", () => { e.scale = Number(slider.value); e.on = true; on.checked = true; out.textContent = fmt(e.scale); schedule(); });
      on.addEventListener("change", () => { e.on = on.checked; schedule(); });
      const where = h("select", { "aria-label": `where to edit latent ${e.latent}`, onchange: (ev) => { e.where = ev.target.value; if (e.on) schedule(); } },
        [["all", "all cells"], ["active", "active cells"], ["cells", "selected cells"]].map(([v, t]) => h("option", { value: v, selected: v === e.where }, t)));
      const label = labels.get(e.latent);
      return h("div", { class: "edit", dataset: { latent: e.latent } },
        h("label", { class: "edit-on", for: `${id}-on` }, on, " edit"),
        h("a", { href: href(`feature/${e.latent}`), class: "edit-id" }, `#${e.latent}`),
        h("span", { class: "muted edit-label" }, label || ""),
        slider, out, where,
        h("button", { type: "button", class: "icon", "aria-label": `remove latent ${e.latent}`, onclick: () => { edits.splice(i, 1); drawRows(); syncHash(); schedule(); } }, "×"));
    }));
    if (!edits.length) rows.append(h("p", { class: "muted" }, "No latent: add one by id."));
  }

  let inflight = null, seq = 0;
  async function steer() {
    if (signal.aborted) return; // the page was left (a debounced change may still fire)
    syncHash();
    const body = { image_index: index, edits: [] };
    for (const e of edits) {
      if (!e.on) continue;
      const edit = { latent: e.latent, scale: e.scale, where: e.where };
      if (e.where === "cells") {
        if (!selected.size) continue;
        edit.cells = [...selected].map((k) => k.split(",").map(Number));
      }
      body.edits.push(edit);
    }
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const mine = ++seq;
    state.textContent = "Steering…";
    try {
      const res = await api(runUrl(run, "/steer"), { method: "POST", body, signal: inflight.signal });
      if (mine !== seq) return;
      clearError();
      const pending = edits.filter((e) => e.on && e.where === "cells").length && !selected.size;
      state.textContent = body.edits.length ? `${body.edits.length} edit${body.edits.length > 1 ? "s" : ""} applied.` : "No edit: move a slider.";
      if (pending) state.textContent += " Select cells on the image for the edits set to 'selected cells'.";
      showResults(res);
    } catch (err) {
      if (err.name === "AbortError" || mine !== seq) return;
      state.textContent = "The steering request failed.";
      showError(err);
    }
  }
  const schedule = debounce(steer, 150);

  function showResults(r) {
    const top = Math.max(1e-9, ...[...(r.before || []), ...(r.after || [])].map((c) => c.p));
    const probs = (list, cls) => barList((list || []).map((c) => ({ name: typeof c.class === "number" ? className(info, c.class) : c.class, value: c.p, text: c.p.toFixed(3) })), { max: top, cls });
    const numbers = [["true class", r.true == null ? "–" : (typeof r.true === "number" ? className(info, r.true) : r.true)],
      ["margin before", fmt(r.margin_before)], ["margin after", fmt(r.margin_after)], ["flip", r.flip ? "yes" : "no"], ["KL(before ‖ after)", fmt(r.kl)]];
    const blocks = [
      h("div", { class: "cols" },
        section("Before", probs(r.before, "probs-before")),
        section("After", probs(r.after, "probs-after")),
        section("Effect", h("dl", { class: "facts" }, numbers.map(([k, v]) => [h("dt", {}, k), h("dd", { class: k === "flip" && r.flip ? "flip" : "" }, v)])))),
    ];
    const maps = Object.entries(r.maps || {});
    if (maps.length) blocks.push(section("Latent maps", h("p", { class: "muted small" }, "Each map on its own colour scale, up to its peak (negative values in blue)."), h("div", { class: "map-rows" }, maps.map(([latent, m]) => {
      const b = overlayFigure(imgSrc(), `image ${index}`, `#${latent} before (peak ${fmt(peak(m.before))})`);
      const a = overlayFigure(imgSrc(), `image ${index}`, `#${latent} after (peak ${fmt(peak(m.after))})`);
      drawHeat(b.canvas, m.before, Math.abs(peak(m.before)));
      drawHeat(a.canvas, m.after, Math.abs(peak(m.after)));
      return h("div", { class: "map-row" }, b.fig, a.fig);
    }))));
    if (r.segmentation) {
      const s = r.segmentation;
      const b = overlayFigure(imgSrc(), `image ${index}`, "probe: parts before");
      const a = overlayFigure(imgSrc(), `image ${index}`, "probe: parts after");
      drawParts(b.canvas, s.before);
      drawParts(a.canvas, s.after);
      const used = new Set([...s.before.flat(), ...s.after.flat()]);
      blocks.push(section("Part probe (per patch)", h("div", { class: "map-row" }, b.fig, a.fig),
        h("ul", { class: "legend" }, (s.parts || []).map((p, i) => used.has(i) ? h("li", {}, h("span", { class: "swatch", style: { background: partColour(i) } }), p) : null))));
    }
    results.replaceChildren(...blocks);
  }
  const peak = (g) => g.flat().reduce((a, v) => (Math.abs(v) > Math.abs(a) ? v : a), 0);
  const imgSrc = () => `/api${runUrl(run, `/images/${index}.png`)}`;

  drawRows();
  view.replaceChildren(
    h("h1", {}, "Steering playground"),
    h("p", { class: "muted" }, "Each edited latent is set to scale × its max activation at the chosen cells (0 removes it, negative values push against it)."),
    h("div", { class: "steer-layout" },
      h("section", { class: "card steer-image" },
        h("h2", {}, h("a", { href: href(`image/${index}`) }, `Image ${index}`), im.class ? h("span", { class: "muted" }, ` · ${im.class}`) : null),
        gridImage(run, index, grid, onCell, `image ${index}`),
        h("p", { class: "muted small" }, grid ? "Click cells to select them for edits set to 'selected cells'." : "This layer has no grid."),
        pick),
      h("section", { class: "card" }, h("h2", {}, "Latents"), rows, add, state)),
    results);
  await steer();
}
