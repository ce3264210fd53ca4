// #/image/INDEX : the image with its grid over it; a cell's strongest latents; the top latents overall.
import { api, runUrl } from "./api.js";
import { h, fmt, href, section, loading } from "./ui.js";

/** The image with a grid of cell buttons over it; onCell(y, x, button) on click. */
export function gridImage(run, index, grid, onCell, alt) {
  const img = h("img", { src: `/api${runUrl(run, `/images/${index}.png`)}`, alt: alt || `image ${index}`, decoding: "async" });
  const stack = h("div", { class: "stack grid-image" }, img);
  if (grid) {
    const [H, W] = grid;
    const cells = h("div", { class: "cells", role: "grid", "aria-label": `${H} × ${W} grid of cells`,
      style: { gridTemplateColumns: `repeat(${W}, 1fr)`, gridTemplateRows: `repeat(${H}, 1fr)` } });
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const b = h("button", { type: "button", class: "cell", "aria-label": `cell ${y}, ${x}`, "aria-pressed": "false", dataset: { y, x } });
      b.addEventListener("click", () => onCell(y, x, b));
      cells.append(b);
    }
    stack.append(cells);
  }
  return stack;
}

export async function render(view, { run, info, arg, signal }) {
  loading(view);
  if (!/^\d+$/.test(arg || "")) throw new Error(`'${arg}' is not an image index (a whole number)`);
  const im = await api(runUrl(run, `/images/${arg}`), { signal });
  const index = im.image_index ?? Number(arg);
  const grid = im.grid || info.grid;
  const cellList = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, grid ? "Click a cell to list its strongest latents." : "This layer has no grid."));
  let pressed = null;
  const onCell = (y, x, button) => {
    if (pressed) pressed.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
    pressed = button;
    const row = (im.cells || [])[y * grid[1] + x] || [];
    cellList.replaceChildren(h("h3", {}, `Cell (${y}, ${x})`), row.length
      ? h("ol", { class: "latents" }, row.map(([latent, value]) => h("li", {}, h("a", { href: href(`feature/${latent}`) }, `#${latent}`), ` ${fmt(value)}`, labelOf(im, latent))))
      : h("p", { class: "muted" }, "No latent fires here."));
  };
  const top = im.top || [];
  const steerLink = href("steer", { image: index, latents: top.slice(0, 3).map((t) => t.latent).join(",") });
  const jump = h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); location.hash = href(`image/${e.target.elements.index.value}`); } },
    h("label", {}, "Image ", h("input", { name: "index", type: "number", min: 0, value: index, required: true, class: "narrow" })),
    h("button", { type: "submit" }, "Go"));
  view.replaceChildren(
    h("p", { class: "crumbs" }, index > 0 ? h("a", { href: href(`image/${index - 1}`), rel: "prev" }, "‹ previous") : null, " ",
      h("a", { href: href(`image/${index + 1}`), rel: "next" }, "next ›"), " ", jump),
    h("h1", {}, `Image ${index}`, im.image_id != null ? h("span", { class: "muted" }, ` ${im.image_id}`) : null),
    h("p", {}, `class: ${im.class ?? "–"}`, " ", h("a", { class: "button", href: steerLink }, "Steer this image")),
    h("div", { class: "cols" },
      h("section", { class: "card" }, gridImage(run, index, grid, onCell, `image ${index}${im.class ? `, ${im.class}` : ""}`)),
      section("Cell", cellList),
      section("Top latents", top.length
        ? h("ol", { class: "latents" }, top.map((t) => h("li", {}, h("a", { href: href(`feature/${t.latent}`) }, `#${t.latent}`), ` max ${fmt(t.max)}`,
            t.label ? h("span", { class: "muted" }, ` · ${t.label}`) : null)))
        : h("p", { class: "muted" }, "No latent fires on this image."))),
  );
}

function labelOf(im, latent) {
  const t = (im.top || []).find((r) => r.latent === latent);
  return t && t.label ? h("span", { class: "muted" }, ` · ${t.label}`) : null;
}
