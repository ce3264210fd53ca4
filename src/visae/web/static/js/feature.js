// #/feature/ID : one latent: top images with heatmaps per ranking, density histogram, classes,
// part, labels, eval concepts and the effect of suppressing it.
import { api, runUrl } from "./api.js";
import { h, fmt, pct, href, className, partName, labelNode, badge, barList, kvTable, section, loading } from "./ui.js";

export async function render(view, { run, info, arg, signal }) {
  loading(view);
  if (!/^\d+$/.test(arg || "")) throw new Error(`'${arg}' is not a feature id (a whole number from 0 to ${info.n_latents - 1})`);
  const f = await api(runUrl(run, `/features/${arg}`), { signal });
  const id = f.id ?? Number(arg);
  const top = f.top || {};
  const firstImage = (top.max || Object.values(top)[0] || [])[0];

  const facts = [
    ["frequency", pct(f.freq)], ["mean act.", fmt(f.mean_act)], ["max act.", fmt(f.max_act)],
    ["images", f.n_images != null ? `${f.n_images}${f.distinct_images != null ? ` (${f.distinct_images} distinct)` : ""}` : null],
    ["top class", f.class_name ?? className(info, f.top_class)], ["class selectivity", fmt(f.class_selectivity)],
    ["part", f.part_name ?? (typeof f.part === "string" ? f.part : partName(info, f.part))],
    ["part share", f.part_share ? pct(f.part_share) : null], ["edge/interior", f.edge_ratio != null ? `${fmt(f.edge_ratio)}×` : null],
  ].filter(([, v]) => v != null);
  const badges = [f.border && badge("border", "border/position"), f.class_selective && badge("class", "class-selective"),
    f.part_pure && badge("part", "part-pure"), f.freq === 0 && badge("dead", "dead")].filter(Boolean);

  view.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: href("features") }, "Features"), " › ", `#${id}`),
    h("h1", {}, `Feature #${id} `, labelNode(f), " ", badges),
    h("div", { class: "feature-head" },
      h("section", { class: "card" }, h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
      labelsCard(f)),
    topImages(run, id, top),
    h("div", { class: "cols" },
      section("Activation density", histogram(f.histogram)),
      section("Classes", classBars(info, f.classes)),
      section("Part", partBlock(info, f))),
    h("div", { class: "cols" }, steerCard(f, id, firstImage), evalCard(f.eval)),
  );
}

function labelsCard(f) {
  const rows = [];
  if (f.label) rows.push(["label", f.label, f.label_source, f.label_score]);
  if (f.guess) rows.push([f.label ? "best guess otherwise" : "best guess (not a label)", f.guess, f.guess_source, f.guess_score]);
  if (f.clip_phrase) rows.push(["nearest CLIP phrase", f.clip_phrase, "clip", f.clip_score]);
  return section("Labels",
    rows.length ? h("table", { class: "kv" }, h("thead", {}, h("tr", {}, ["", "name", "source", "score"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map(([k, name, src, score]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, name), h("td", {}, src || "–"), h("td", { class: "num" }, fmt(score))))))
      : h("p", { class: "muted" }, "Unlabelled, and no evidence for a guess."),
    !f.label && f.guess_why ? h("p", { class: "muted" }, `Why not a label: ${f.guess_why}`) : null);
}

function topImages(run, id, top) {
  const rankings = Object.keys(top);
  if (!rankings.length || rankings.every((r) => !top[r].length)) return section("Top images", h("p", { class: "muted" }, "This latent never fired on the analysed images."));
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Rankings" });
  const panel = h("div", { class: "thumbs", role: "tabpanel", id: "top-panel" });
  const show = (ranking) => {
    for (const b of tabs.children) {
      b.setAttribute("aria-selected", String(b.dataset.ranking === ranking));
      b.tabIndex = b.dataset.ranking === ranking ? 0 : -1;
    }
    panel.setAttribute("aria-label", `top images by ${ranking}`);
    panel.replaceChildren(...top[ranking].map((ex) => h("figure", {},
      h("a", { href: href(`image/${ex.image_index}`), title: `image ${ex.image_index}: open the image page` },
        h("img", { src: `/api${runUrl(run, `/features/${id}/heatmap/${encodeURIComponent(ranking)}/${ex.rank}.png`)}`,
          alt: `feature ${id} on image ${ex.image_id ?? ex.image_index}`, loading: "lazy", decoding: "async" })),
      h("figcaption", {}, `${ex.class ?? ""} · ${fmt(ex.score)}`))));
  };
  for (const r of rankings) tabs.append(h("button", { type: "button", role: "tab", "aria-controls": "top-panel", dataset: { ranking: r }, onclick: () => show(r) }, r));
  tabs.addEventListener("keydown", (e) => { // arrow keys move between the tabs
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (!step) return;
    const i = (rankings.indexOf(document.activeElement.dataset.ranking) + step + rankings.length) % rankings.length;
    show(rankings[i]);
    tabs.children[i].focus();
  });
  show(rankings.includes("max") ? "max" : rankings[0]);
  return section("Top images", tabs, panel);
}

/** The density histogram as inline SVG: bars over the bins, log-scaled counts. */
function histogram(hist) {
  if (!hist || !hist.counts || !hist.counts.length) return h("p", { class: "muted" }, "No histogram.");
  const { edges, counts } = hist;
  const W = 320, H = 120, pad = 18;
  const ys = counts.map((c) => Math.log10(1 + c));
  const ymax = Math.max(1e-9, ...ys);
  const bw = (W - 2) / counts.length;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + pad}`);
  svg.setAttribute("class", "hist");
  svg.setAttribute("role", "img");
  const total = counts.reduce((a, b) => a + b, 0);
  svg.setAttribute("aria-label", `histogram of ${counts.length} bins from ${fmt(edges[0])} to ${fmt(edges[edges.length - 1])}, ${total} values`);
  counts.forEach((c, i) => {
    const r = document.createElementNS(ns, "rect");
    const bh = (H * ys[i]) / ymax;
    r.setAttribute("x", String(1 + i * bw)); r.setAttribute("width", String(Math.max(0.5, bw - 1)));
    r.setAttribute("y", String(H - bh)); r.setAttribute("height", String(bh));
    const t = document.createElementNS(ns, "title");
    t.textContent = `${fmt(edges[i])} – ${fmt(edges[i + 1])}: ${c}`;
    r.append(t);
    svg.append(r);
  });
  for (const [x, anchor, v] of [[1, "start", edges[0]], [W - 1, "end", edges[edges.length - 1]]]) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", String(x)); t.setAttribute("y", String(H + pad - 4)); t.setAttribute("text-anchor", anchor);
    t.textContent = fmt(v);
    svg.append(t);
  }
  return h("div", {}, svg, h("p", { class: "muted small" }, "bar heights: log(1 + count)"));
}

function classBars(info, classes) {
  if (!classes || !classes.length) return h("p", { class: "muted" }, "No class mass.");
  return barList(classes.map((c) => ({ name: c.name ?? className(info, c.class), value: c.mass, text: fmt(c.mass) })));
}

function partBlock(info, f) {
  const name = f.part_name ?? (typeof f.part === "string" ? f.part : partName(info, f.part));
  if (!info.parts) return h("p", { class: "muted" }, "The dataset has no part masks.");
  if (!name || name === "–") return h("p", { class: "muted" }, "Its top patches fall on no one part.");
  return h("p", {}, h("strong", {}, name),
    f.part_share != null ? ` · ${pct(f.part_share)} of its top patches` : "",
    f.part_images != null ? ` · ${f.part_images} images` : "", f.part_pure ? " · part-pure" : "");
}

function steerCard(f, id, firstImage) {
  const test = h("a", { class: "button", href: href("steer", { image: firstImage ? firstImage.image_index : null, latents: id, scales: -2 }) },
    "Test suppression");
  if (!f.steer) return section("Suppression", h("p", { class: "muted" }, "Not among the latents steer-eval tested."), test);
  return section("Suppression (steer-eval)", kvTable(f.steer), h("p", {}, test));
}

function evalCard(ev) {
  if (!ev || !ev.length) return section("Evaluation", h("p", { class: "muted" }, "Not the SAE's best unit for any evaluated concept (or visae eval was not run)."));
  return section("Evaluation", h("p", {}, "The SAE's best unit for:"), ...ev.map((c, i) => kvTable(c, c.concept || c.name || `concept ${i + 1}`)));
}
