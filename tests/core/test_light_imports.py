"""The command line starts without torch: `visae --help` and config checks read torch-free modules only."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_and_the_configs_import_without_torch():
    code = ("import sys, visae.cli, visae.sae.train_config, visae.analysis.config, visae.reporting.config, "
            "visae.steering.config; heavy = sorted({'torch', 'transformers', 'scipy', 'sklearn'} & set(sys.modules)); "
            "print(heavy); sys.exit(1 if heavy else 0)")  # fmt: skip
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"imported at start-up: {p.stdout.strip()} {p.stderr[-1500:]}"


def test_the_torch_free_architecture_table_matches_the_registered_architectures():
    from visae.sae.base import ARCHS
    from visae.sae.spec import ARCH_NEEDS_K

    assert sorted(ARCHS.names()) == sorted(ARCH_NEEDS_K)
    assert {name: ARCHS.get(name).needs_k for name in ARCHS.names()} == ARCH_NEEDS_K
