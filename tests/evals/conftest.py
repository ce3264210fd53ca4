"""The evals tests share the steering tests' small real run of the synthetic aircraft, plus a held-out
store of its validation split (the same model and layer)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "steering"))

from run_fixture import build_run  # noqa: E402


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory) -> dict[str, Path]:
    """{data, classifier, store, run, heldout}: the run, and its validation split as a held-out store."""
    import visae

    paths = build_run(tmp_path_factory.mktemp("eval_run"))
    held = visae.extract(model=f"hf:{paths['classifier']}", layer="convnext.encoder.stages.1", data=f"synth-aircraft:{paths['data']}",
                         split="val", out=paths["run"].parent / "heldout", dtype="fp32", batch_size=128, device="cpu")  # fmt: skip
    return {**paths, "heldout": Path(held.path)}


@pytest.fixture(scope="session")
def ctx(eval_run):
    """An EvalContext of the run on its held-out store."""
    from visae.evals.context import open_context

    return open_context(eval_run["run"], eval_run["heldout"], device="cpu")
