"""resolve_device: one spec string for every stage's --device, one-line errors for what is not there."""

from __future__ import annotations

import pytest
import torch

from visae.device import resolve_device
from visae.errors import VisaeError


def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_is_the_gpu_when_there_is_one(monkeypatch):
    no_gpu(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(" CPU ") == torch.device("cpu")
    one_gpu(monkeypatch)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize(
    "spec, gpu, message",
    [("gpu", False, "unknown device 'gpu'"), ("mps", True, "unsupported device 'mps'"),
     ("cuda", False, "torch sees no GPU"), ("cuda:1", True, "has 1 GPU(s)")],  # fmt: skip
)
def test_what_is_not_there_is_a_one_line_error(monkeypatch, spec, gpu, message):
    (one_gpu if gpu else no_gpu)(monkeypatch)
    with pytest.raises(VisaeError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        resolve_device(spec)
    assert "\n" not in str(e.value) and e.value.hint
