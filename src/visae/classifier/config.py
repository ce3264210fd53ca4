"""Configs of the classifier stage: what to train on, which model, how long.

The defaults train a small ConvNeXt from scratch on the procedural aircraft data at
64 px in a few minutes on a 2-core CPU. Its last stage keeps an 8 x 8 spatial map
(patch 4 -> 16 x 16, one downsampling -> 8 x 8), which is what the SAE stage reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from visae.config import Config
from visae.registry import absolute_spec


class ClassifierConfig(Config):
    """Train (or fine-tune) an image classifier and save it as a Hugging Face model dir."""

    data: str
    """Data spec of the training images, e.g. 'synth-aircraft:runs/demo/data' (see `visae data --help`)."""
    out: Path
    """Directory to write the classifier into (config.json, model.safetensors, preprocessor_config.json, ...)."""
    init: str | None = None
    """Start from this checkpoint instead of a random init: 'hf:REPO_OR_PATH' (a Hugging Face ConvNeXt repo
    in the local cache, a local save_pretrained dir, or a visae classifier dir). Its head is replaced by one
    for this data's classes."""
    train_split: str | None = None
    """Split to train on (default: the data's training split)."""
    val_split: str | None = None
    """Split to report accuracy on after every epoch (default: the data's validation split)."""

    epochs: int = Field(8, ge=1)
    """Passes over the training split."""
    batch_size: int = Field(64, ge=1)
    """Images per optimisation step."""
    lr: float = Field(2e-3, gt=0)
    """Peak learning rate of AdamW (reached after the warmup, then cosine-decayed to lr * min_lr_ratio)."""
    min_lr_ratio: float = Field(0.02, ge=0, le=1)
    """Final learning rate as a fraction of the peak."""
    warmup_epochs: float = Field(0.5, ge=0)
    """Epochs of linear learning-rate warmup from 0 (fractions allowed)."""
    weight_decay: float = Field(0.05, ge=0)
    """AdamW decoupled weight decay (not applied to norms and biases)."""
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    """Cross-entropy label smoothing."""
    augment_shift: int = Field(4, ge=0)
    """Random translation of up to this many pixels (edge-padded), per image and axis; 0 turns it off."""
    augment_flip: bool = True
    """Random left-right flips (fine for aircraft; turn off for data where handedness is the label)."""
    seed: int = 0
    """Seed for the initial weights, the shuffling and the augmentation."""

    size: int | None = Field(None, ge=8, le=4096)
    """Side of the square input in pixels, 8 .. 4096 (images are resized by the shorter side and
    centre-cropped); default: 64 for a random init, the checkpoint's own size with --init."""
    patch_size: int = Field(4, ge=1)
    """Stem stride of the ConvNeXt (random init only): the first stage sees size / patch_size pixels."""
    hidden_sizes: tuple[int, ...] = (32, 64)
    """Channels of each ConvNeXt stage (random init only); each stage after the first halves the map."""
    depths: tuple[int, ...] = (1, 2)
    """Blocks in each ConvNeXt stage (random init only)."""
    layer_scale_init: float = Field(0.0, ge=0)
    """Initial per-channel scale of each block's residual branch (random init only); 0 turns layer scale
    off. ConvNeXt's ImageNet value 1e-6 keeps the blocks silent for hundreds of steps, far too long for a
    few-minute CPU run."""
    weight_init: Literal["torch", "hf"] = "torch"
    """Initial weights of a random init: 'torch' = PyTorch's default (Kaiming-uniform) conv/linear init,
    which leaves the loss plateau at chance in about half the steps of 'hf' (normal, std 0.02)."""
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    """Stochastic depth rate of the deepest block (random init only)."""

    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Compute dtype of the forward/backward: 'bf16' autocasts to bfloat16 (weights stay fp32), 'auto'
    times a few steps of both on this machine and keeps the faster. fp16 is never used on CPU."""
    channels_last: Literal["auto", "on", "off"] = "auto"
    """Memory layout of activations: 'auto' times both like `precision` and keeps the faster."""
    threads: int = Field(0, ge=0)
    """Torch CPU threads; 0 means one per available core."""
    device: str = "auto"
    """Where to train: auto (the GPU when torch sees one, else the CPU), cpu, or cuda[:N]. On a GPU the steps
    run under bf16 autocast unless precision is 'fp32', without timing the variants. Not part of the resume
    check: a run begun on one device can be continued on another."""
    eval_batch_size: int = Field(256, ge=1)
    """Images per forward pass when measuring accuracy."""

    force: bool = False
    """Replace whatever --out holds."""
    resume: bool = False
    """Continue an interrupted run in --out from its last finished epoch."""

    @field_validator("data", "init")
    @classmethod
    def _absolute(cls, spec: str | None) -> str | None:
        """A local path is recorded absolute in the classifier, whose later readers may run anywhere."""
        return None if spec is None else absolute_spec(spec)

    @model_validator(mode="after")
    def _check(self) -> "ClassifierConfig":
        if len(self.hidden_sizes) != len(self.depths):
            raise ValueError(f"hidden_sizes has {len(self.hidden_sizes)} stages but depths has {len(self.depths)}")
        if self.force and self.resume:
            raise ValueError("force and resume exclude each other (force starts over, resume continues)")
        return self


class EvalConfig(Config):
    """Measure a saved classifier's accuracy on a split of a dataset."""

    model: Path
    """A classifier directory written by `visae classifier train`."""
    data: str | None = None
    """Data spec to evaluate on; None reuses the spec the classifier was trained on."""
    split: str | None = None
    """Split to evaluate; None picks the data's default validation split."""
    batch_size: int = Field(256, ge=1)
    """Images per forward pass."""
    threads: int = Field(0, ge=0)
    """Torch CPU threads; 0 means one per available core."""
