"""``visae demo``: the reference study, end to end, on the embedded default.

Procedural aircraft -> ConvNeXt classifier trained from scratch -> spatial activations of
its final stage -> TopK SAE -> feature analysis -> static report. Each step writes its own
artifact under ``out``; a step whose artifact is already complete is reused, so an
interrupted demo continues where it stopped (``--force`` starts over).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from visae.artifact import clear, read_marker
from visae.config import Config
from visae.errors import VisaeError
from visae.lock import LOCK_NAME, locked
from visae.progress import info


class DemoConfig(Config):
    """How big a demo to run and where to put it."""

    out: Path = Path("runs/demo")
    """Directory that receives every step's artifact (data/, classifier/, store/, sae/, report.html)."""
    quick: bool = False
    """A small, fast version of every step (used by the tests): about a minute on 2 cores."""
    force: bool = False
    """Delete a previous demo in --out and start over instead of reusing its finished steps."""
    seed: int = Field(0, ge=0)
    """Seed of every step."""
    serve: bool = False
    """After the demo, open the web viewer on its run (http://127.0.0.1:PORT/, until Ctrl-C; needs the web extra)."""
    port: int = Field(8000, ge=1, le=65535)
    """With --serve: the viewer's port."""


class Sizes(Config):
    """Step sizes of one demo flavour."""

    n_train: int
    n_val: int
    n_ood: int
    epochs: int
    sae_tokens: int
    sae_batch: int
    expansion: int
    k: int
    top: int
    steer_images: int
    steer_per_group: int
    eval_images: int


FULL = Sizes(n_train=24_000, n_val=2_000, n_ood=1_000, epochs=8, sae_tokens=6_000_000, sae_batch=4096,
             expansion=8, k=8, top=32, steer_images=512, steer_per_group=4, eval_images=1000)  # fmt: skip
QUICK = Sizes(n_train=6_000, n_val=400, n_ood=200, epochs=8, sae_tokens=400_000, sae_batch=2048,
              expansion=4, k=8, top=16, steer_images=96, steer_per_group=2, eval_images=200)  # fmt: skip


def demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run (or finish) every step of the demo; return the summary it prints. ``out`` is locked
    throughout (one demo at a time), and each step locks its own folder. With ``serve``, the CLI then
    opens the viewer on the demo's run (``serve_demo``)."""
    with locked(cfg.out):
        return _demo(cfg)


def serve_demo(cfg: DemoConfig) -> None:
    """The web viewer on the demo's SAE run, until interrupted."""
    from visae.web.config import ServeConfig
    from visae.web.serve import serve

    serve(ServeConfig(runs=[Path(cfg.out) / "sae"], port=cfg.port))


def _demo(cfg: DemoConfig) -> dict[str, Any]:
    sizes = QUICK if cfg.quick else FULL
    out = Path(cfg.out)
    marker = read_marker(out)
    if marker is not None:  # the demo's folder has no marker of its own: this is another artifact
        raise VisaeError(f"{out} holds a visae {marker.get('kind')}, not a demo", "choose another --out")
    if cfg.force and out.exists():
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".report.html.*.tmp"):  # a killed report's (the steps clean their own folders)
        tmp.unlink()
    paths = {k: out / k for k in ("data", "classifier", "store", "sae")} | {"heldout": out / "store-val"}
    _check_steps(paths)
    report_path = out / "report.html"
    timings: dict[str, float] = {}

    def step(name: str, done: Callable[[], bool], run: Callable[[], Any]) -> None:
        if done():
            where = {"analysis": paths["sae"] / "features.sqlite", "steer-eval": paths["sae"] / "steer",
                     "eval": paths["sae"] / "eval", "report": report_path}  # fmt: skip
            info(f"[demo] {name}: reusing {paths.get(name, where.get(name))}")
            return
        info(f"[demo] {name} ...")
        t0 = time.perf_counter()
        run()
        timings[name] = time.perf_counter() - t0

    step("data", lambda: _complete(paths["data"], "synth-aircraft"), lambda: _make_data(paths["data"], sizes, cfg))
    data_spec = f"synth-aircraft:{paths['data']}"
    step("classifier", lambda: _complete(paths["classifier"], "classifier"),
         lambda: _train_classifier(data_spec, paths["classifier"], sizes, cfg))  # fmt: skip
    model_spec = f"hf:{paths['classifier']}"
    step("store", lambda: _complete(paths["store"], "store"),
         lambda: _extract(model_spec, data_spec, paths["store"]))  # fmt: skip
    step("sae", lambda: _complete(paths["sae"], "sae-run"), lambda: _train_sae(paths["store"], paths["sae"], sizes, cfg))
    step("analysis", lambda: (paths["sae"] / "features.sqlite").is_file(),
         lambda: _analyze(paths["sae"], paths["store"], sizes))  # fmt: skip
    step("steer-eval", lambda: (paths["sae"] / "steer" / "summary.json").is_file() and "analysis" not in timings,
         lambda: _steer_eval(paths["sae"], sizes, cfg))  # fmt: skip
    step("heldout", lambda: _complete(paths["heldout"], "store"),
         lambda: _extract(model_spec, data_spec, paths["heldout"], split="val"))  # fmt: skip
    step("eval", lambda: (paths["sae"] / "eval" / "summary.json").is_file() and not {"sae", "heldout"} & set(timings),
         lambda: _eval(paths["sae"], paths["heldout"], sizes, cfg))  # fmt: skip
    step("report", lambda: report_path.is_file() and not {"steer-eval", "eval"} & set(timings),  # new results: a new report
         lambda: _report(paths["sae"], report_path))  # fmt: skip
    return _summary(paths, report_path, timings)


def _clear(out: Path) -> None:
    """Remove the demo's own artifacts only; anything else in ``out`` is refused."""
    known = {"data", "classifier", "store", "store-val", "sae", "report.html", LOCK_NAME}
    foreign = [p.name for p in out.iterdir() if p.name not in known]
    if foreign:
        raise VisaeError(f"{out} holds files the demo did not write ({', '.join(sorted(foreign)[:3])})",
                         "choose another --out")  # fmt: skip
    clear(out)  # a step folder that another process is writing is refused, not wiped


STEP_KINDS = {"data": "synth-aircraft", "classifier": "classifier", "store": "store", "sae": "sae-run", "heldout": "store"}
"""The artifact each step folder holds (the steps run with force=True, so anything else there would be wiped)."""


def _check_steps(paths: dict[str, Path]) -> None:
    """Refuse a step folder that holds something other than that step's own artifact."""
    for step, path in paths.items():
        if path.exists() and not path.is_dir():
            raise VisaeError(f"{path} is a file, not the demo's {step} folder", "choose another --out")
        if not path.is_dir() or not any(p.name != LOCK_NAME and not p.name.endswith(".tmp") for p in path.iterdir()):
            continue
        marker = read_marker(path)
        found = marker.get("kind") if marker else None
        if found != STEP_KINDS[step]:
            what = f"a visae {found}" if found else "files visae did not write"
            raise VisaeError(f"{path} holds {what}, not the demo's {STEP_KINDS[step]}", "choose another --out")


def _complete(path: Path, kind: str) -> bool:
    marker = read_marker(path) if path.is_dir() else None
    return bool(marker) and marker.get("kind") == kind and marker.get("complete", True) is not False


def _make_data(path: Path, sizes: Sizes, cfg: DemoConfig) -> None:
    from visae.data.synth import SynthAircraftConfig, generate_synth_aircraft

    generate_synth_aircraft(SynthAircraftConfig(out=path, n_train=sizes.n_train, n_val=sizes.n_val,
                                                n_ood=sizes.n_ood, seed=cfg.seed, force=True))  # fmt: skip


def _train_classifier(data: str, path: Path, sizes: Sizes, cfg: DemoConfig) -> None:
    from visae.classifier import ClassifierConfig, train_classifier

    train_classifier(ClassifierConfig(data=data, out=path, epochs=sizes.epochs, seed=cfg.seed, force=True))


def final_stage(model_spec: str) -> str:
    """The module path of the classifier's last ConvNeXt stage (its final spatial map)."""
    from visae.backbones import load_backbone

    names = [layer.name for layer in load_backbone(model_spec).layers()]
    stages = [n for n in names if re.search(r"encoder\.stages\.\d+$", n)]
    if not stages:
        raise VisaeError(f"{model_spec} has no ConvNeXt stages", "train the classifier again with --force")
    return max(stages, key=lambda n: int(n.rsplit(".", 1)[1]))


def _extract(model: str, data: str, path: Path, split: str = "train") -> None:
    from visae.extraction import ExtractConfig, extract

    extract(ExtractConfig(model=model, layers=[final_stage(model)], data=data, split=split, out=path,
                          dtype="bf16", batch_size=256, force=True))  # fmt: skip


def _train_sae(store: Path, path: Path, sizes: Sizes, cfg: DemoConfig) -> None:
    from visae.sae import SAEHparams, TrainConfig, train

    hp = SAEHparams(name="topk", arch="topk", k=sizes.k, expansion=sizes.expansion)
    train(TrainConfig(store=str(store), out=str(path), saes=[hp], training_tokens=sizes.sae_tokens,
                      batch_size=sizes.sae_batch, seed=cfg.seed, force=True))  # fmt: skip


def _analyze(run: Path, store: Path, sizes: Sizes) -> None:
    from visae.analysis import AnalyzeConfig, analyze

    analyze(AnalyzeConfig(run=run, store=store, top=sizes.top, force=True))


def _steer_eval(run: Path, sizes: Sizes, cfg: DemoConfig) -> None:
    from visae.steering import SteerEvalConfig, steer_eval

    quick = sizes is QUICK
    steer_eval(SteerEvalConfig(run=run, n_images=sizes.steer_images, per_group=sizes.steer_per_group,
                               random_latents=2 * sizes.steer_per_group, per_latent=32 if quick else 64,
                               directions=2 if quick else 3, draws=3 if quick else 5, probe_images=300 if quick else 1000,
                               seed=cfg.seed, force=True))  # fmt: skip


def _eval(run: Path, heldout: Path, sizes: Sizes, cfg: DemoConfig) -> None:
    """Every eval suite but stability (the demo trains one SAE) on the held-out val split."""
    from visae.evals.config import EvalConfig
    from visae.evals.run import evaluate

    suites = ["core", "fidelity", "probe", "concepts", "ood", "ontology"]
    evaluate(EvalConfig(run=[run], store=heldout, suite=suites, max_images=sizes.eval_images, seed=cfg.seed))


def _report(run: Path, out: Path) -> None:
    from visae.reporting import ReportConfig, report

    report(ReportConfig(run=run, out=out, force=True))


def _summary(paths: dict[str, Path], report_path: Path, timings: dict[str, float]) -> dict[str, Any]:
    import json

    from visae.analysis import summary as analysis_summary
    from visae.analysis.baselines import headline
    from visae.sae.trainer import read_summary
    from visae.store import Store

    clf = json.loads((paths["classifier"] / "visae_classifier.json").read_text())
    store = Store(paths["store"])
    run = read_summary(paths["sae"]) or {}
    sae = (run.get("saes", {}).get("topk") or {}).get("heldout") or {}
    feats = analysis_summary(paths["sae"])
    grid = store.meta.layout.get("grid") if isinstance(store.meta.layout, dict) else None
    return {
        "data": f"{paths['data']} ({clf['data']})",
        "classifier val top-1": clf["val_top1"],
        **_weak_classifier(clf["val_top1"], len(clf.get("class_names") or [])),
        "classifier training time": duration(clf["train_seconds"]),
        "store": f"{store.meta.layer}: {len(store)} tokens x {store.d}" + (f", grid {grid[0]}x{grid[1]}" if grid else ""),
        "SAE": f"TopK, {feats['n_latents']} latents",
        "SAE held-out tokens": f"{sae.get('eval_tokens', 0):,} ({run.get('held_out')}, never trained on)",
        "SAE held-out NMSE": sae.get("nmse"),
        "SAE held-out L0": sae.get("l0"),
        "SAE held-out dead %": f"{sae.get('dead_pct', 0):.1f} (on the held-out train images above; eval's figure is on the val split)",
        "SAE held-out dense %": sae.get("dense_pct"),
        "part-pure latents": headline(feats.get("part_pure")) or "n/a (no part masks)",
        "class-selective latents": headline(feats.get("class_selective")),
        "border/position latents": headline(feats.get("border")) or "n/a (no grid)",
        **_causal(paths["sae"]),
        **_evaluation(paths["sae"]),
        "report": str(report_path),
        "time": ", ".join(f"{k} {duration(v)}" for k, v in timings.items()) or "none (every step reused)",
    }


def _causal(run: Path) -> dict[str, str]:
    """The steer-eval headline rows (RUN/steer/summary.json), each next to its baselines."""
    import json

    from visae.steering.headline import headline_rows

    path = run / "steer" / "summary.json"
    return headline_rows(json.loads(path.read_text())) if path.is_file() else {}


def _evaluation(run: Path) -> dict[str, str]:
    """The eval headline rows (RUN/eval/summary.json), each next to its baselines."""
    import json

    path = run / "eval" / "summary.json"
    if not path.is_file():
        return {}
    return {f"eval: {k}": f"{v} [val split]" for k, v in json.loads(path.read_text())["headline"].items()}


WEAK_TOP1 = 0.5
"""Below this validation top-1 the demo's summary calls its classifier weak."""


def _weak_classifier(top1: float, n_classes: int) -> dict[str, str]:
    """A summary row that says plainly when the classifier is too weak for its features to mean much."""
    chance = 1 / n_classes if n_classes else 0.0
    if top1 >= WEAK_TOP1 and top1 >= 2 * chance:
        return {}
    near = f"near chance ({chance:.2f} for {n_classes} classes)" if top1 < 2 * chance else f"below {WEAK_TOP1}"
    return {"classifier warning": f"weak classifier: val top-1 {top1:.2f} is {near}, so its features (and the SAE's "
                                  "latents) say little; run the full demo (without --quick), or train the "
                                  "classifier for more epochs"}  # fmt: skip


def duration(seconds: float) -> str:
    """A duration in plain words: '0.4 s', '12 s', '2 min 36 s', '1 h 5 min'."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60} s"
    return f"{total // 3600} h {total % 3600 // 60} min"
