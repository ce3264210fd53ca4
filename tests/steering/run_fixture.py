"""A small real run on the synthetic aircraft for the steer tests: data -> classifier (one short
epoch, so better than chance but far from the demo's) -> store of its final stage -> TopK SAE ->
feature DB. Built once per test session through the notebook API, about 20 s on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest


def build_run(root: Path) -> dict[str, Path]:
    import visae
    from visae.classifier import ClassifierConfig, train_classifier
    from visae.data.synth import SynthAircraftConfig, generate_synth_aircraft

    data = root / "data"
    generate_synth_aircraft(SynthAircraftConfig(out=data, n_train=660, n_val=132, n_ood=0, seed=0, workers=1))
    spec = f"synth-aircraft:{data}"
    clf = root / "classifier"
    train_classifier(ClassifierConfig(data=spec, out=clf, epochs=2, hidden_sizes=(16, 32), depths=(1, 1),
                                      batch_size=64, device="cpu", precision="fp32"))  # fmt: skip
    store = visae.extract(model=f"hf:{clf}", layer="convnext.encoder.stages.1", data=spec, split="train",
                          out=root / "store", dtype="fp32", batch_size=128, device="cpu")  # fmt: skip
    run = root / "run"
    visae.train(store=str(store.path), out=str(run), arch="topk", k=4, d_sae=64, batch_size=256,
                training_tokens=40_000, holdout=0, device="cpu")  # fmt: skip
    visae.analyze(run=run, store=store.path, top=8, device="cpu")
    return {"data": data, "classifier": clf, "store": Path(store.path), "run": run}


@pytest.fixture(scope="session")
def synth_run(tmp_path_factory) -> dict[str, Path]:
    return build_run(tmp_path_factory.mktemp("steer_run"))
