// #/features : the feature list; search, filters, sort and pages are server-side (offset/limit).
import { api, runUrl, debounce, showError, clearError } from "./api.js";
import { h, fmt, pct, href, className, partName, labelNode, badge } from "./ui.js";

const LIMIT = 50;
const BANDS = [["", "any frequency"], ["dead", "dead"], ["rare", "rare (< 0.1%)"], ["low", "low (0.1–1%)"], ["mid", "mid (1–10%)"], ["dense", "dense (≥ 10%)"]];
const SELECTIVE = [["", "any"], ["class", "class-selective"], ["part", "part-pure"], ["border", "border/position"]];
const SOURCES = [["", "any"], ["class", "class"], ["part", "part"], ["clip", "clip"], ["border", "border"]];
const SORTS = [["id", "id"], ["freq", "frequency"], ["max_act", "max activation"], ["class_selectivity", "class selectivity"], ["part_share", "part share"]];
const KEYS = ["q", "band", "selective", "part", "label_source", "sort", "order", "page"];

function select(name, label, options, value) {
  const id = `f-${name}`;
  return h("label", { for: id }, label,
    h("select", { id, name }, options.map(([v, t]) => h("option", { value: v, selected: v === value }, t))));
}

export async function render(view, { run, info, runs, params, signal }) {
  const state = Object.fromEntries(KEYS.map((k) => [k, params.get(k) || ""]));
  state.sort ||= "id";
  state.order ||= state.sort === "id" ? "asc" : "desc";
  state.page = Math.max(1, parseInt(state.page, 10) || 1);

  const parts = (info.parts || []).filter((p, i) => i > 0 || p !== "background").map((p) => [p, p]);
  const search = h("input", { id: "f-q", name: "q", type: "search", value: state.q, placeholder: "label or id", autocomplete: "off" });
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
    h("label", { for: "f-q" }, "Search", search),
    select("band", "Frequency", BANDS, state.band),
    select("selective", "Selective", SELECTIVE, state.selective),
    info.parts ? select("part", "Part", [["", "any"], ...parts], state.part) : null,
    select("label_source", "Label source", SOURCES, state.label_source),
    select("sort", "Sort by", SORTS, state.sort),
    select("order", "Order", [["desc", "descending"], ["asc", "ascending"]], state.order));
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" }, "Loading…");
  const tbody = h("tbody");
  const pager = h("nav", { class: "pager", "aria-label": "Pages of features" });
  const table = h("table", { class: "features" },
    h("caption", { class: "sr-only" }, "Features"),
    h("thead", {}, h("tr", {}, ["id", "label", "frequency", "max act.", "top class", "part", ""].map((t) => h("th", { scope: "col" }, t)))),
    tbody);
  view.replaceChildren(h("h1", {}, "Features"), form, status, h("div", { class: "table-wrap" }, table), pager);

  let inflight = null;
  signal.addEventListener("abort", () => inflight && inflight.abort(), { once: true });
  async function load() {
    if (signal.aborted) return; // the page was left (a debounced search may still fire)
    // Keep the state in the hash (without a hashchange: the form keeps its focus).
    const qs = new URLSearchParams();
    if (runs.length > 1 || params.get("run") != null) qs.set("run", run);
    for (const k of KEYS) if (state[k] && !(k === "page" && state.page === 1)) qs.set(k, state[k]);
    history.replaceState(null, "", `#/features${qs.toString() ? `?${qs}` : ""}`);
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const query = { q: state.q.trim(), band: state.band, selective: state.selective, part: state.part, label_source: state.label_source,
      sort: state.sort, order: state.order, offset: (state.page - 1) * LIMIT, limit: LIMIT };
    status.textContent = "Loading…";
    let data;
    try {
      data = await api(runUrl(run, "/features", query), { signal: inflight.signal });
    } catch (err) {
      if (err.name !== "AbortError") { status.textContent = "Could not load the features."; showError(err); }
      return;
    }
    clearError();
    const pages = Math.max(1, Math.ceil(data.total / LIMIT));
    const from = data.total ? data.offset + 1 : 0;
    status.textContent = `${data.total} feature${data.total === 1 ? "" : "s"}${data.total ? `; showing ${from}–${data.offset + data.items.length}` : ""}`;
    tbody.replaceChildren(...data.items.map((r) => row(r, info)));
    if (!data.items.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No feature matches.")));
    const go = (p) => () => { state.page = p; load(); };
    pager.replaceChildren(
      h("button", { type: "button", disabled: state.page <= 1, onclick: go(1), "aria-label": "First page" }, "«"),
      h("button", { type: "button", disabled: state.page <= 1, onclick: go(state.page - 1), rel: "prev" }, "‹ Previous"),
      h("span", {}, `page ${state.page} of ${pages}`),
      h("button", { type: "button", disabled: state.page >= pages, onclick: go(state.page + 1), rel: "next" }, "Next ›"),
      h("button", { type: "button", disabled: state.page >= pages, onclick: go(pages), "aria-label": "Last page" }, "»"));
  }

  const onSearch = debounce(() => { state.q = search.value; state.page = 1; load(); }, 200);
  search.addEventListener("input", onSearch);
  form.addEventListener("change", (e) => {
    if (e.target === search) return;
    state[e.target.name] = e.target.value;
    state.page = 1;
    load();
  });
  await load();
}

function row(r, info) {
  const link = href(`feature/${r.id}`);
  const cls = r.class_name ?? (typeof r.top_class === "string" ? r.top_class : className(info, r.top_class));
  const part = r.part_name ?? partName(info, r.part);
  const badges = [];
  if (r.border) badges.push(badge("border", "border"));
  if (r.class_selective) badges.push(badge("class", "class-selective"));
  if (r.part_pure) badges.push(badge("part", "part-pure"));
  if (r.freq === 0) badges.push(badge("dead", "dead"));
  return h("tr", {},
    h("td", { class: "num" }, h("a", { href: link }, `#${r.id}`)),
    h("td", {}, h("a", { href: link, class: "plain" }, labelNode(r))),
    h("td", { class: "num" }, pct(r.freq)),
    h("td", { class: "num" }, fmt(r.max_act)),
    h("td", {}, cls),
    h("td", {}, part),
    h("td", { class: "badges" }, badges));
}
