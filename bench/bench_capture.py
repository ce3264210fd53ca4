"""Backbone capture: what hooks cost and what early stopping saves, measured in one run.

A random-init ViT-S/16 (transformers, 12 layers, d=384, 224 px; built from a config and
saved locally, loaded through ``hf:PATH``) on one batch of images:

- reference: the bare forward, ``model(pixel_values=x)``, no hooks;
- peer: the usual way to get a layer, ``output_hidden_states=True`` (full forward, all layers kept);
- visae: ``Backbone.capture(x, [layer])`` for an early, a middle and the last block.

Ratios near k/12 for block k say the forward really stops after the layer; the last block's
ratio near 1.0 says the hooks cost nothing measurable. Timings are the best of ``--repeats``
interleaved runs (the CPU is shared and noisy).

    python bench/bench_capture.py [--batch 8] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch


def best_of(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Interleave the candidates ``repeats`` times; keep each one's fastest time."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import transformers

    from visae.backbones import load_backbone

    transformers.logging.set_verbosity_error()
    cfg = transformers.ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        transformers.ViTModel(cfg, add_pooling_layer=False).save_pretrained(tmp)
        bb = load_backbone(f"hf:{tmp}")  # no image processor saved: 224 px defaults
    model = bb.model
    x_BCHW = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    layers = {"block 3": "layers.2", "block 6": "layers.5", "block 12": "layers.11"}
    bb.layers()  # the one-off dummy forward that lists the layers is not part of the timing

    with torch.no_grad():
        out = bb.capture(x_BCHW, ["layers.5"])["layers.5"]
        hidden = model(pixel_values=x_BCHW, output_hidden_states=True).hidden_states
        assert torch.allclose(out, hidden[6], atol=1e-5), "capture differs from output_hidden_states"
        fns = {
            "bare forward": lambda: model(pixel_values=x_BCHW),
            "output_hidden_states": lambda: model(pixel_values=x_BCHW, output_hidden_states=True),
            **{f"capture {k}": (lambda layer=v: bb.capture(x_BCHW, [layer])) for k, v in layers.items()},
        }
        best = best_of(fns, args.repeats)

    ref = best["bare forward"]
    print(f"ViT-S/16 random init, batch {args.batch}, 224 px, {args.threads} thread(s), best of {args.repeats}")
    print(f"{'path':<26}{'seconds':>9}{'img/s':>9}{'ratio to bare forward':>24}")
    for name, t in best.items():
        print(f"{name:<26}{t:>9.3f}{args.batch / t:>9.1f}{t / ref:>24.2f}")


if __name__ == "__main__":
    main()
