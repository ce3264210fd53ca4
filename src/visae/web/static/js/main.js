// The router: #/ (overview), #/features, #/feature/ID, #/image/INDEX, #/steer; ?run=N picks the run.
import { api, showError, clearError } from "./api.js";
import { h, setCurrentRun } from "./ui.js";

const PAGES = {
  "": () => import("./overview.js"),
  features: () => import("./features.js"),
  feature: () => import("./feature.js"),
  image: () => import("./image.js"),
  steer: () => import("./steer.js"),
};

let runs = [];
let current = null; // {controller}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  return { page: parts[0] || "", arg: parts[1], params: new URLSearchParams(query) };
}

function runOf(params) {
  const r = params.get("run");
  if (r == null || r === "") return runs.length ? runs[0].id : 0;
  return Number.isInteger(Number(r)) ? Number(r) : r;
}

async function route() {
  const view = document.getElementById("view");
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = { controller };
  clearError();
  const { page, arg, params } = parseHash();
  const run = runOf(params);
  const info = runs.find((r) => String(r.id) === String(run));
  setCurrentRun(run, runs.length > 1);
  const select = document.getElementById("run-select");
  if (info) select.value = String(info.id);
  document.getElementById("run-name").textContent = info ? `${info.name} · ${info.backbone} · ${info.layer}` : "";
  for (const a of document.querySelectorAll("[data-nav]")) {
    const q = runs.length > 1 ? `?run=${run}` : "";
    a.href = `#/${a.dataset.nav}${q}`;
    const active = a.dataset.nav === page || (a.dataset.nav === "features" && page === "feature");
    if (active) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const load = PAGES[page];
  if (!load) {
    view.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "No page ", h("code", {}, location.hash), ". ", h("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  if (!info) {
    view.replaceChildren(h("h1", {}, "No such run"));
    showError(`run '${run}' is not served; pick one of ${runs.map((r) => r.id).join(", ") || "(none)"}`);
    return;
  }
  try {
    const mod = await load();
    if (controller.signal.aborted) return;
    await mod.render(view, { run: info.id, info, runs, arg, params, signal: controller.signal });
  } catch (err) {
    if (controller.signal.aborted) return;
    showError(err);
    if (view.querySelector('[role="status"]') && view.children.length === 1) {
      view.replaceChildren(h("h1", {}, "Could not show this page"),
        h("p", {}, "The message above says why. ", h("a", { href: `#/features${runs.length > 1 ? `?run=${run}` : ""}` }, "Back to the features")));
    }
  }
}

async function start() {
  document.querySelector(".banner-close").addEventListener("click", clearError);
  try {
    runs = await api("/runs");
  } catch (err) {
    document.getElementById("view").replaceChildren(h("h1", {}, "visae"));
    showError(err);
    return;
  }
  const select = document.getElementById("run-select");
  select.replaceChildren(...runs.map((r) => h("option", { value: String(r.id) }, `${r.id}: ${r.name}`)));
  document.getElementById("run-switch").hidden = runs.length < 2;
  select.addEventListener("change", () => {
    const { page, params } = parseHash();
    // Features and images differ between runs: a feature or image page goes to the new run's list;
    // the list keeps its search, filters and sort (not its page).
    const target = page === "feature" || page === "image" ? "features" : page;
    const keep = new URLSearchParams(target === "features" && page === "features" ? params : "");
    keep.delete("page");
    keep.set("run", select.value);
    location.hash = `#/${target}?${keep}`;
  });
  window.addEventListener("hashchange", route);
  route();
}

start();
