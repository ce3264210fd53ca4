"""The HTML report: self-contained, complete, and rendered by a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from visae.analysis import AnalyzeConfig, analyze
from visae.errors import VisaeError
from visae.reporting import ReportConfig, report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def html_report(planted, tmp_path):
    run, _, _ = planted
    analyze(AnalyzeConfig(run=run, top=6, per_image=4, min_images=4))  # 12 images: a looser evidence bar
    return report(ReportConfig(run=run, out=tmp_path / "r.html", images=3, thumb=64))


def test_report_is_self_contained_and_complete(html_report, planted):
    html = html_report.read_text()
    assert re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html) is None  # nothing fetched from the network
    imgs = re.findall(r'<img [^>]*src="data:image/png;base64,', html)
    assert len(imgs) >= 1 + 3  # the density histogram and at least one latent's heatmaps
    # every measure as a fraction, next to the raw channels (both signs) and a random-init SAE
    assert re.search(r"<td>SAE</td><td><b>\d+\.\d%</b></td><td>[2-6] of 6 latents</td>", html)
    assert re.search(r"<td>raw channels</td><td><b>\d+\.\d%</b></td><td>\d+ of 12 signed channels</td>", html)
    assert html.count("<td>random-init SAE</td><td><b>") == 3  # part purity, border units and class selectivity
    assert "hf:test/tiny" in html and "blocks.3" in html
    for section in ("Run summary", "Latent density", "Part purity", "Class selectivity", "frequency band", "per class"):
        assert section.lower() in html.lower()
    assert "#0 · wing" in html  # latent 0 is labelled by the part it fires on
    # a latent below every threshold reads 'unlabelled', its best guess shown as a guess with the reason
    assert re.search(r"<span class='unlabelled'>unlabelled</span> <span class='guess'>\(best guess: [^<]+; not a label: "
                     r"[^<]+\)</span>", html)
    # the legend explains every mark: colour scale (with its bar), boxes relative to the latent's max, captions,
    # near-duplicates, labels and guesses, the border badge
    legend = html[html.index("How to read the heatmaps"):html.index("<h2>Latent density")]
    assert 'alt="colour scale"' in legend and "latent's largest activation over all analysed images" in legend
    assert "at least 50% of the latent's largest activation" in legend and "not of that image's own maximum" in legend
    for mark in ("Caption", "Near-duplicates", "best guess", "badge border"):
        assert mark in legend, mark
    assert (planted[0] / "heatmaps").is_dir()


def test_report_refuses_to_overwrite_foreign_file(planted, tmp_path):
    run, _, _ = planted
    with pytest.raises(VisaeError, match="visae analyze"):
        report(ReportConfig(run=run))
    analyze(AnalyzeConfig(run=run, top=2))
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    with pytest.raises(VisaeError, match="not a visae report"):
        report(ReportConfig(run=run, out=mine))
    first = report(ReportConfig(run=run, images=1))
    assert report(ReportConfig(run=run, images=1)) == first  # its own report is simply rewritten


MARK_IMAGES = """<script>
window.addEventListener('load', () => {
  for (const img of document.images) img.setAttribute('data-ok', img.complete && img.naturalWidth > 0 ? '1' : '0');
  document.body.setAttribute('data-checked', String(document.images.length));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(html_report, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(html_report.read_text().replace("</body>", MARK_IMAGES + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    checked = re.search(r'data-checked="(\d+)"', dom)
    assert checked, "the page did not finish loading in chromium"
    n = int(checked.group(1))
    assert n >= 4
    assert dom.count('data-ok="1"') == n and 'data-ok="0"' not in dom  # every image and heatmap decoded


def test_run_summary_shows_held_out_figures_and_labels_training_batch_ones(planted, tmp_path):
    import json

    run, _, _ = planted
    analyze(AnalyzeConfig(run=run, top=6, per_image=4, min_images=4))
    html = report(ReportConfig(run=run, out=tmp_path / "none.html", images=1, thumb=32)).read_text()
    assert "none recorded" in html  # a run without held-out figures says so

    cfg_path = run / "saes" / "relu" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["visae"]["heldout_eval"] = {"nmse": 0.1234, "explained_variance": 0.88, "l0": 7.5, "dead_pct": 2.0,
                                    "dense_pct": 1.0, "eval_tokens": 4096, "held_out": "5% of the store's images"}
    cfg_path.write_text(json.dumps(cfg))
    with open(run / "metrics.jsonl", "a") as f:  # a held-out line after the last training line
        f.write(json.dumps({"step": 2, "sae": "relu", "split": "heldout", "nmse": 0.1234, "l0": 7.5}) + "\n")
    analyze(AnalyzeConfig(run=run, top=6, per_image=4, min_images=4, force=True))
    html = report(ReportConfig(run=run, out=tmp_path / "h.html", images=1, thumb=32)).read_text()
    assert "held-out NMSE (4,096 tokens never trained on" in html and "<td>0.1234</td>" in html
    assert re.search(r"NMSE \(last training batch\)</td><td>0.05</td>", html), "training-batch figure, labelled"
