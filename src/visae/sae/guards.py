"""Guards with advice before training: defaults that fit the store, warnings, and refusals.

An SAE trained for two steps, or with more latents than the store has tokens to teach them,
is a number that misleads. Before training, ``plan(cfg, source)``:

- fills the defaults a user did not set so that they fit the store, and says what it chose:
  the batch size (at most 4096, at least ``MIN_STEPS`` steps a pass where the store allows),
  the training tokens (one pass, or enough passes for ``MIN_STEPS`` steps, at most
  ``MAX_EPOCHS``) and the width (at most one latent per ``MIN_TOKENS_PER_LATENT`` distinct
  training tokens; a narrowed top-k SAE gets a default k of at most 1/``K_SHARE`` of its latents);
- warns about too few optimiser steps, too few distinct tokens per latent, an SAE wider than
  the number of training images, and a store of very few images;
- refuses, unless ``--force``, what would be meaningless: fewer than ``REFUSE_STEPS`` steps,
  fewer training tokens than latents, or a k as large as the width (every latent on every token).
"""

from __future__ import annotations

from typing import Any

from visae.errors import VisaeError
from visae.progress import info
from visae.sae.spec import needs_k
from visae.sae.train_config import DEFAULT_K, SAEHparams, TrainConfig

MIN_STEPS = 500
"""Fewer optimiser steps than this get a warning (and adaptive defaults aim above it)."""
REFUSE_STEPS = 10
"""Fewer steps than this are refused without --force."""
MIN_TOKENS_PER_LATENT = 64
"""Distinct training tokens per latent below which latents tend to memorise single tokens."""
FEW_IMAGES = 100
"""A store with fewer training images than this gets a warning."""
MAX_EPOCHS = 50
"""Adaptive training length never repeats the store more often than this."""
K_SHARE = 16
"""A default k never exceeds 1/K_SHARE of the latents; a k above 1/4 of them is warned about."""
MAX_BATCH = 4096
MIN_BATCH = 256


def plan(cfg: TrainConfig, source: Any, d: int, notes: list[str] | None = None) -> TrainConfig:
    """``cfg`` with its unset defaults fitted to ``source``; prints the choices and warnings (or appends them to
    ``notes``, for the caller to print once it has checked the rest of the command)."""
    say = notes.append if notes is not None else info
    n = len(source)
    n_images = _training_images(source)
    set_ = cfg.model_fields_set
    chose: list[str] = []
    updates: dict[str, Any] = {}
    batch = cfg.batch_size
    if "batch_size" not in set_:
        batch = _pow2_floor(max(MIN_BATCH, min(MAX_BATCH, n // MIN_STEPS)))
        batch = min(batch, _pow2_floor(max(1, n)))
        if batch != cfg.batch_size:
            updates["batch_size"] = batch
            chose.append(f"--batch-size {batch} (one pass over {n:,} tokens is {n // batch} steps)")
    tokens = cfg.training_tokens or n
    if cfg.training_tokens is None and n // batch < MIN_STEPS:
        epochs = min(MAX_EPOCHS, -(-MIN_STEPS * batch // n))
        if epochs > 1:
            tokens = epochs * n
            updates["training_tokens"] = tokens
            chose.append(f"--training-tokens {tokens:,} ({epochs} passes, {tokens // batch} steps)")
    saes = []
    for hp in cfg.saes:
        saes.append(_fit_width(hp, n, d, chose))
    if any(a is not b for a, b in zip(saes, cfg.saes)):
        updates["saes"] = saes
    if updates:
        cfg = cfg.model_copy(update=updates)
    if chose:
        say("chose for this store: " + "; ".join(chose) + " (set them to override)")
    _check(cfg, n, n_images, tokens, batch, d, say)
    return cfg


def _fit_width(hp: SAEHparams, n: int, d: int, chose: list[str]) -> SAEHparams:
    """The SAE with its default width capped at one latent per MIN_TOKENS_PER_LATENT distinct tokens."""
    if hp.d_sae is not None or "expansion" in hp.model_fields_set:
        return hp
    width = hp.expansion * d
    cap = max(16, _pow2_floor(max(1, n // MIN_TOKENS_PER_LATENT)))
    if width <= cap:
        return hp
    k = hp.k
    if k is not None and k > cap // 2:
        return hp  # the user's k needs the width; the warning below will say so
    update: dict[str, Any] = {"d_sae": cap}
    said = ""
    if k is None and needs_k(hp.arch) and DEFAULT_K > cap // K_SHARE:
        update["k"] = max(1, cap // K_SHARE)
        said = f" and k {update['k']}, not {DEFAULT_K}"
    chose.append(f"{hp.label()}: {cap} latents, not {width} (x{hp.expansion}){said}: {n:,} training tokens give fewer "
                 f"than {MIN_TOKENS_PER_LATENT} per latent")  # fmt: skip
    return hp.model_copy(update=update)


def _check(cfg: TrainConfig, n: int, n_images: int | None, tokens: int, batch: int, d: int, say: Any = info) -> None:
    steps = tokens // batch
    warnings: list[str] = []
    refusals: list[str] = []
    if steps < REFUSE_STEPS:
        refusals.append(f"only {steps} optimiser step(s) ({tokens:,} tokens at --batch-size {batch})")
    elif steps < MIN_STEPS:
        warnings.append(f"only {steps} optimiser steps; SAEs usually need thousands (raise --training-tokens or lower "
                        f"--batch-size)")  # fmt: skip
    for hp in cfg.saes:
        width = hp.d_sae or hp.expansion * d
        k = (hp.k or DEFAULT_K) if needs_k(hp.arch) else None
        if k is not None and k >= width:
            refusals.append(f"{hp.label()} keeps k={k} of its {width} latents: every latent fires on every token (a dense code)")
        elif k is not None and k > width // 4:
            warnings.append(f"{hp.label()} keeps k={k} of {width} latents per token: hardly sparse (use --k {max(1, width // K_SHARE)} "
                            f"or a wider SAE)")  # fmt: skip
        if tokens < width:
            refusals.append(f"{hp.label()} has {width:,} latents but trains on {tokens:,} tokens")
        elif n < MIN_TOKENS_PER_LATENT * width:
            warnings.append(f"{hp.label()}: {n / width:.1f} distinct training tokens per latent (< {MIN_TOKENS_PER_LATENT}): "
                            f"latents will memorise single tokens; use fewer latents (--d-sae) or a larger store")  # fmt: skip
        if n_images is not None and width > n_images:
            warnings.append(f"{hp.label()} has more latents ({width:,}) than the store has training images ({n_images:,}): "
                            f"latents may each describe one image")  # fmt: skip
    if n_images is not None and n_images < FEW_IMAGES:
        warnings.append(f"the store has only {n_images} training images: features and labels will describe those images "
                        f"rather than the model")  # fmt: skip
    for w in warnings:
        say(f"warning: {w}")
    if refusals and not cfg.force:
        raise VisaeError("; ".join(refusals) + ": the SAE would mean nothing",
                         "train on more tokens (a larger store, --training-tokens) or pass --force to train anyway")  # fmt: skip


def _training_images(source: Any) -> int | None:
    store, sel = getattr(source, "store", None), getattr(source, "selection", None)
    if store is None or sel is None:
        return None
    return len(sel.images) if sel.keep_images else store.n_images - len(sel.images)


def _pow2_floor(x: int) -> int:
    return 1 << (max(1, int(x)).bit_length() - 1)
