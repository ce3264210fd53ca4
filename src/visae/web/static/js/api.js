// The fetch wrapper: JSON in and out, API errors ({"detail": ...}) shown in the banner.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function detailText(detail, status) {
  if (detail == null) return `request failed (HTTP ${status})`;
  if (typeof detail === "string") return detail;
  // FastAPI validation errors: [{loc, msg, ...}]
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return JSON.stringify(detail);
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(`/api${path}`, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `cannot reach the server (${err.message}); is visae serve still running?`);
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, detailText(data && data.detail, res.status));
  return data;
}

const banner = () => document.getElementById("banner");

export function showError(err) {
  if (err && err.name === "AbortError") return;
  const msg = err instanceof Error ? err.message : String(err);
  const el = banner();
  el.querySelector(".banner-text").textContent = msg;
  el.hidden = false;
  console.error(err);
}

export function clearError() {
  banner().hidden = true;
}

/** Build a URL path under /api/runs/RUN with a query string of the non-empty params. */
export function runUrl(run, path, params = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v != null) qs.set(k, v);
  const q = qs.toString();
  return `/runs/${run}${path}${q ? `?${q}` : ""}`;
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
