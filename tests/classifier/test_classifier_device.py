"""--device on the classifier: a device that is not there is a one-line error before anything is
written (resuming across devices: test_train.py::test_interrupted_run_resumes_to_the_same_weights)."""

from __future__ import annotations

import pytest
import torch

from visae.cli import main


@pytest.mark.parametrize(
    "device, message",
    [
        ("gpu", "unknown device 'gpu'"),
        pytest.param("cuda", "torch sees no GPU", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")),
    ],
)
def test_a_device_that_is_not_there_is_a_one_line_error(bars_spec, tmp_path, capsys, device, message):
    with pytest.raises(SystemExit) as e:
        main(["classifier", "train", "--data", bars_spec, "--out", str(tmp_path / "o"), "--device", device])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
