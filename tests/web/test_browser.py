"""The browser front end of ``visae serve`` in a real headless Chromium (Debian's, through Playwright):
the feature list and its search, a feature page and its images, an image page, the steering
playground (a slider changes the probabilities) and the error banner. A screenshot of each page is
saved to test-artifacts/web/ at the repository root."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install 'visae[web]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "web"
TIMEOUT_MS = 20_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(web_run):
    """The app over conftest's analysed run, served by uvicorn on a free loopback port in a thread."""
    from visae.web.app import create_app
    from visae.web.config import ServeConfig

    app = create_app(ServeConfig(runs=[web_run["run"]], device="cpu", probe_images=100))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/api/runs", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            pytest.fail("the server did not answer /api/runs within 30 s")
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def images_loaded(page) -> None:
    """Every visible <img> has loaded with real pixels (lazy ones are scrolled into view first)."""
    page.evaluate("() => { for (const img of document.images) img.loading = 'eager'; }")
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=TIMEOUT_MS)
    broken = page.evaluate("""() => [...document.images]
        .filter(i => i.offsetParent !== null && !(i.naturalWidth > 0)).map(i => i.src)""")
    assert not broken, f"images that did not load: {broken}"


def banner_clear(page) -> None:
    assert page.locator("#banner").is_hidden(), f"error banner: {page.locator('#banner').inner_text()}"


def test_overview(page):
    page.goto("/#/")
    page.get_by_role("heading", name="Plots").wait_for()
    assert page.locator("dl.facts").first.is_visible()
    images_loaded(page)
    banner_clear(page)
    shot(page, "overview")


def test_feature_list_search_and_feature_page(page, base_url):
    page.goto("/#/features")
    rows = page.locator("table.features tbody tr")
    rows.first.locator("a").first.wait_for()
    assert rows.count() == min(50, httpx.get(f"{base_url}/api/runs").json()[0]["n_latents"])
    shot(page, "features")
    page.get_by_role("button", name="Next ›").click()  # the next 50, from the server (offset/limit)
    page.get_by_text("; showing 51–").wait_for()
    assert "page=2" in page.evaluate("() => location.hash")

    # Search by a label (or guess) the run has: the list narrows to rows that carry it.
    items = httpx.get(f"{base_url}/api/runs/0/features", params={"limit": 500}).json()["items"]
    word = next(r["label"] or r["guess"] for r in items if (r["label"] or r["guess"]) and r["freq"] > 0)
    page.get_by_label("Search").fill(word)
    page.wait_for_function("w => { const r = document.querySelectorAll('table.features tbody tr');"
                           " return r.length > 0 && [...r].every(x => x.textContent.includes(w)); }", arg=word)
    assert page.evaluate("() => location.hash").startswith("#/features?q=")
    shot(page, "features-search")

    # Open the first match: its top images (heatmaps) load and link to image pages.
    page.locator("table.features tbody tr").first.locator("td a").first.click()
    page.wait_for_url("**/#/feature/*")
    page.get_by_role("heading", name="Top images").wait_for()
    page.locator(".thumbs img").first.wait_for()
    assert page.locator(".tabs [role=tab]").count() >= 1
    assert page.locator("svg.hist rect").count() > 0
    images_loaded(page)
    banner_clear(page)
    shot(page, "feature")

    page.locator(".thumbs a").first.click()
    page.wait_for_url("**/#/image/*")
    page.locator(".grid-image .cell").first.wait_for()
    page.locator(".grid-image .cell").nth(5).click()
    page.get_by_role("heading", name="Cell (").wait_for()
    images_loaded(page)
    banner_clear(page)
    shot(page, "image")


def test_steering_slider_changes_probabilities(page, base_url):
    # The strongest latent's best image, then "Steer this image" (its top latents, nothing edited yet).
    query = {"sort": "max_act", "order": "desc", "limit": 1}
    latent = httpx.get(f"{base_url}/api/runs/0/features", params=query).json()["items"][0]["id"]
    image = httpx.get(f"{base_url}/api/runs/0/features/{latent}").json()["top"]["max"][0]["image_index"]
    page.goto(f"/#/image/{image}")
    page.get_by_role("link", name="Steer this image").click()
    page.wait_for_url("**/#/steer?*")
    before = page.locator(".probs-before .bar-value")
    after = page.locator(".probs-after .bar-value")
    after.first.wait_for()
    assert before.all_inner_texts() == after.all_inner_texts()  # nothing edited yet
    page.locator("input.scale").first.focus()
    page.keyboard.press("End")  # the slider to +10: set the latent to 10x its max activation
    page.wait_for_function("""() => {
        const t = s => [...document.querySelectorAll(s + ' .bar-value')].map(e => e.textContent).join('|');
        return t('.probs-after') !== '' && t('.probs-after') !== t('.probs-before'); }""")
    assert "scales=10" in page.evaluate("() => location.hash")
    page.locator(".map-row canvas").first.wait_for()
    images_loaded(page)
    banner_clear(page)
    shot(page, "steer")


def test_bad_feature_id_shows_the_api_error(page):
    page.goto("/#/feature/987654")
    banner = page.locator("#banner")
    banner.wait_for(state="visible")
    assert "987654" in banner.inner_text()
    page.get_by_role("heading", name="Could not show this page").wait_for()
    shot(page, "error")
