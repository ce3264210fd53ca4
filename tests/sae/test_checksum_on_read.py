"""A run's SAE weights and its checkpoint are verified against the checksums recorded when they were
written: a bit-flipped, truncated or deleted file is refused in one line, with the repair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from visae.errors import VisaeError
from visae.sae import SAESpec, create_sae
from visae.sae.checkpoint import SUM_FILE, checkpoint_path, load_checkpoint, save_checkpoint
from visae.sae.importers import load_sae
from visae.sae.saelens import WEIGHTS_FILE, save_saelens


def flip(f: Path, at: int = -5) -> None:
    data = bytearray(f.read_bytes())
    data[at] ^= 0x01
    f.write_bytes(bytes(data))


@pytest.fixture
def folder(tmp_path) -> Path:
    torch.manual_seed(0)
    sae = create_sae(SAESpec.build(arch="topk", d_in=8, d_sae=16, k=2))
    sae.meta = {"backbone": "toy", "layer": "l"}
    return save_saelens(sae, tmp_path / "sae")


def test_saved_weights_carry_their_checksum_and_load(folder):
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["visae"]["weights_checksum"].startswith(("xxh3_128:", "sha256:"))
    sae = load_sae(folder)
    assert "weights_checksum" not in sae.meta  # not carried into a re-export, where it would be stale
    save_saelens(sae, folder.parent / "again")
    assert torch.equal(load_sae(folder.parent / "again").W_dec, sae.W_dec)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_weights_are_refused_in_one_line(folder, damage):
    f = folder / WEIGHTS_FILE
    {"flip": flip, "truncate": lambda f: f.write_bytes(f.read_bytes()[:-64]), "delete": Path.unlink}[damage](f)
    with pytest.raises(VisaeError) as e:
        load_sae(folder)
    msg = str(e.value)
    want = "is missing" if damage == "delete" else "fails its checksum"
    assert f"{WEIGHTS_FILE} of {folder} {want}" in msg and "--resume" in msg and "\n" not in msg


def test_foreign_folder_without_checksum_loads_and_a_torn_one_is_a_clean_error(folder):
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["visae"]["weights_checksum"]
    (folder / "cfg.json").write_text(json.dumps(cfg))
    load_sae(folder)
    (folder / WEIGHTS_FILE).write_bytes((folder / WEIGHTS_FILE).read_bytes()[:40])
    with pytest.raises(VisaeError, match="cannot be read"):
        load_sae(folder)


def state(step: int) -> dict:
    return {"step": step, "tokens": 8 * step, "members": {"a": {"w": torch.full((64,), float(step))}}}


def test_checkpoint_round_trip_and_damage(tmp_path):
    save_checkpoint(tmp_path, state(1))
    assert load_checkpoint(tmp_path)["step"] == 1
    flip(checkpoint_path(tmp_path), at=-100)
    with pytest.raises(VisaeError, match=r"state\.pt fails its checksum .*--force"):
        load_checkpoint(tmp_path)
    checkpoint_path(tmp_path).unlink()
    with pytest.raises(VisaeError, match=r"state\.pt is missing"):
        load_checkpoint(tmp_path)


def test_kill_between_the_sidecar_and_the_checkpoint_rename_keeps_the_previous_checkpoint(tmp_path):
    """state.sum.json lands first: a kill before state.pt's rename leaves the previous state.pt, still accepted."""
    save_checkpoint(tmp_path, state(1))
    previous = checkpoint_path(tmp_path).read_bytes()
    save_checkpoint(tmp_path, state(2))
    assert load_checkpoint(tmp_path)["step"] == 2
    checkpoint_path(tmp_path).write_bytes(previous)  # as if the kill came before the rename
    assert load_checkpoint(tmp_path)["step"] == 1


def test_checkpoint_without_sidecar_still_loads(tmp_path):
    save_checkpoint(tmp_path, state(3))
    (checkpoint_path(tmp_path).parent / SUM_FILE).unlink()  # written before checksums were kept
    assert load_checkpoint(tmp_path)["step"] == 3
