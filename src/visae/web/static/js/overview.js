// #/ : the run's summary, its headline numbers (analysis, SAE held-out, steer, eval) and its plots.
import { api, runUrl } from "./api.js";
import { h, fmt, href, kvTable, section, loading } from "./ui.js";

/** Headline rows {what: "one line"} as a definition list; nested objects as tables. */
function lines(obj, empty) {
  if (obj == null || (typeof obj === "object" && !Object.keys(obj).length)) return h("p", { class: "muted" }, empty);
  if (typeof obj !== "object") return h("p", {}, fmt(obj));
  const scalars = Object.fromEntries(Object.entries(obj).filter(([, v]) => typeof v === "number" || typeof v === "boolean"));
  const texts = Object.entries(obj).filter(([, v]) => typeof v === "string");
  const nested = Object.entries(obj).filter(([, v]) => v && typeof v === "object");
  return h("div", {},
    texts.length ? h("dl", { class: "headlines" }, texts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : null,
    Object.keys(scalars).length ? kvTable(scalars) : null,
    nested.map(([k, v]) => (Array.isArray(v) ? h("p", {}, `${k}: ${v.map((x) => (typeof x === "object" ? JSON.stringify(x) : fmt(x))).join(", ")}`) : kvTable(v, k))));
}

export async function render(view, { run, info, signal }) {
  loading(view);
  const ov = await api(runUrl(run, "/overview"), { signal });
  const s = ov.summary || {};
  const facts = [
    ["path", info.path], ["backbone", info.backbone], ["layer", info.layer], ["latents", info.n_latents],
    ["images", info.n_images], ["tokens", s.n_tokens], ["width (d)", s.d], ["mean L0", s.mean_l0],
    ["dead", s.dead_pct != null ? `${fmt(s.dead_pct)}%` : null], ["dense", s.dense_pct != null ? `${fmt(s.dense_pct)}%` : null],
    ["grid", info.grid ? info.grid.join(" × ") : "none"], ["classes", (info.classes || []).length],
    ["parts", info.parts ? info.parts.filter((p) => p !== "background").join(", ") : "none"],
    ["labels", s.labels ? `${Object.entries(s.labels.by_source || {}).map(([k, v]) => `${v} ${k}`).join(", ") || "none"}; ${s.labels.unlabelled ?? "?"} unlabelled` : null],
    ["text labels", s.text_labels],
  ].filter(([, v]) => v != null && v !== "");
  const plots = ov.plots || [];
  view.replaceChildren(
    h("h1", {}, `Run ${info.id}: ${info.name}`),
    h("div", { class: "blocks" },
      h("section", { class: "card" }, h("h2", {}, "Summary"),
        h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, fmt(v))])),
        h("p", {}, h("a", { class: "button", href: href("features") }, "Browse the features"), " ",
          h("a", { class: "button", href: href("steer") }, "Open the steering playground"))),
      section("Analysis", lines(ov.headlines, "No headline comparisons.")),
      section("SAE (held-out)", lines(ov.heldout, "Not recorded (the SAE was trained without a held-out split).")),
      section("Steering (steer-eval)", lines(ov.steer, "Not run: visae steer-eval RUN adds it.")),
      section("Evaluation (visae eval)", lines(ov.eval, "Not run: visae eval RUN adds it."))),
    section("Plots", plots.length
      ? h("div", { class: "plots" }, plots.map((name) => h("figure", {},
          h("a", { href: `/api${runUrl(run, `/plots/${encodeURIComponent(name)}`)}`, title: "open the full-size plot" },
            h("img", { src: `/api${runUrl(run, `/plots/${encodeURIComponent(name)}`)}`, alt: `plot: ${name}`, loading: "lazy" })),
          h("figcaption", {}, name))))
      : h("p", { class: "muted" }, "No plots (matplotlib was not installed when the run was analysed).")),
  );
}
