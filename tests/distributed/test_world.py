"""visae.distributed: contiguous rank slices, a world of one outside torchrun, and a real 2-process gloo job."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from visae.distributed import World, shard_range, world


@pytest.mark.parametrize("n, size", [(10, 2), (11, 3), (2, 4), (0, 3), (100, 7)])
def test_rank_slices_cover_everything_once_in_order(n, size):
    spans = [shard_range(n, r, size) for r in range(size)]
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    lengths = [b - a for a, b in spans]
    assert max(lengths) - min(lengths) <= 1


def test_outside_torchrun_it_is_a_world_of_one_and_collectives_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    import visae.distributed as d

    monkeypatch.setattr(d, "_WORLD", None)
    w = world()
    assert w == World(0, 1, 0, None) and w.main and not w.distributed
    t = torch.tensor([2.0])
    assert w.all_reduce(t, "x") is t and float(t) == 2.0
    assert w.gather_objects("a", "x") == ["a"] and w.broadcast_object(5, "x") == 5 and w.slice(7) == (0, 7)
    w.barrier("x")


PROBE = textwrap.dedent('''
    import sys, time, torch
    from visae.distributed import shutdown, world
    from visae.errors import VisaeError
    w = world()
    t = torch.tensor([float(w.rank + 1)])
    w.all_reduce(t, "sum")
    print(f"rank {w.rank} sum {float(t)} objs {w.gather_objects(w.rank, 'gather')} slice {w.slice(10)}", flush=True)
    if sys.argv[1] == "die" and w.rank == 1:
        sys.exit(3)
    try:
        w.barrier("the final barrier")
    except VisaeError as e:
        print(f"rank {w.rank} error: {e}", flush=True)
        sys.exit(2)
    shutdown()  # leave the group as the CLI does: a rank exiting with gloo still up may abort its peer (SIGABRT)
''')


@pytest.mark.slow
def test_two_gloo_ranks_reduce_and_a_dead_rank_ends_the_others_with_a_message(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, "VISAE_DIST_TIMEOUT": "10", "OMP_NUM_THREADS": "1"}
    def launch(mode: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script), mode]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)

    ok = launch("live")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "rank 0 sum 3.0 objs [0, 1] slice (0, 5)" in ok.stdout and "rank 1 sum 3.0 objs [0, 1] slice (5, 10)" in ok.stdout
    dead = launch("die")
    assert dead.returncode != 0
    assert "rank 0 error: the final barrier: another rank stopped answering" in dead.stdout, dead.stdout + dead.stderr[-2000:]
