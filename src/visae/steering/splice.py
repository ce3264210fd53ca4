"""The splice: a forward hook that swaps a layer's output for its SAE-edited version.

With x the layer's tokens, z = encode(x), x_hat = decode(z) and z_edit the edited codes:

    edit mode:   x' = x - x_hat + x_hat_edit = x + (z_edit - z) @ W_dec + sum_steer value * W_dec[l] / ||W_dec[l]||
    recon mode:  x' = x_hat                  (on the patch tokens; CLS and registers kept)

The SAE's error x - x_hat is kept, so an empty edit gives x' = x exactly; the decoder is linear,
so x_hat_edit - x_hat is computed on the edited latents alone (b_dec cancels), and a token no
operation touches gets x + 0 = x, bit for bit. Computed in float32; the layer's dtype comes back.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from visae.backbones.base import Backbone
from visae.backbones.tokens import TokenLayout
from visae.errors import VisaeError
from visae.sae.base import SAE, check_matches
from visae.sae.contract import Codes
from visae.steering.edit import Edit, LatentOp
from visae.steering.tokens import from_seq, patch_N, selected_N, to_seq

Mode = Literal["edit", "recon"]


def latent_acts(codes: Codes, latents_U: torch.Tensor) -> torch.Tensor:
    """``z_TU``: the activations of the latents ``latents_U`` per token, float32, without densifying all S."""
    if codes.dense_BS is not None:
        return codes.dense_BS[:, latents_U].float()
    assert codes.idx_BK is not None and codes.val_BK is not None
    hit_TKU = codes.idx_BK.unsqueeze(-1) == latents_U
    return (codes.val_BK.float().unsqueeze(-1) * hit_TKU).sum(dim=1)


def apply_op(op: LatentOp, z_TL: torch.Tensor) -> torch.Tensor:
    """The new activations of ``op``'s latents (steer leaves them alone)."""
    if op.op == "set":
        return torch.full_like(z_TL, op.value)  # type: ignore[arg-type]
    if op.op == "scale":
        return z_TL * op.value
    if op.op == "add":
        return z_TL + op.value
    if op.op == "zero":
        return torch.zeros_like(z_TL)
    if op.op == "clamp":
        return z_TL.clamp(min=op.low, max=op.high)
    return z_TL


def check_edit(edit: Edit, sae: SAE, layout: TokenLayout) -> None:
    """Refuse latents the SAE does not have and token selections the layer cannot take, before any forward."""
    for i in edit.latents():
        if i >= sae.d_sae:
            raise VisaeError(f"latent {i} is out of range: the SAE has {sae.d_sae} latents", f"pick latents 0..{sae.d_sae - 1}")
    n = n_tokens(layout)
    for op in edit.ops:
        selected_N(op, layout, n if n is not None else layout.n_prefix + 1)


def n_tokens(layout: TokenLayout) -> int | None:
    """Tokens per image of a layer output (None: a sequence of unknown length)."""
    if layout.kind == "pooled":
        return 1
    if layout.kind == "spatial":
        return layout.grid[0] * layout.grid[1]  # type: ignore[index]
    return layout.shape()[0]


@torch.no_grad()
def splice_tokens(x_BND: torch.Tensor, layout: TokenLayout, sae: SAE, edit: Edit | None, mode: Mode = "edit",
                  directions: dict[int, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """``x'_BND`` (float32) for float32 tokens ``x_BND``: the formula of the module docstring.

    ``directions`` replaces some latents' decoder rows W_dec[l] in the edit (not in the encoder):
    the random-direction baseline moves x along another direction by the same coefficients."""
    b, n, d = x_BND.shape
    w = sae.W_dec
    x_TD = x_BND.reshape(b * n, d).to(w.device)
    if mode == "recon":
        recon_TD = sae.decode(sae.encode(x_TD)).float()
        keep_T = patch_N(layout, n).repeat(b).to(w.device)
        return torch.where(keep_T[:, None], recon_TD, x_TD).reshape(b, n, d).to(x_BND.device)
    if edit is None or not edit.ops:
        return x_BND
    latents = edit.latents()
    col = {latent: j for j, latent in enumerate(latents)}
    latents_U = torch.tensor(latents, device=w.device)
    z_TU = latent_acts(sae.encode(x_TD), latents_U)
    z_edit_TU = edited_codes(edit, layout, n, b, z_TU, latents)
    steer_TD = torch.zeros_like(x_TD)
    dir_UD = w[latents_U].float()
    for latent, d_D in (directions or {}).items():
        if latent in col:
            dir_UD[col[latent]] = d_D.to(dir_UD)
    for op in edit.ops:
        if op.op == "steer":
            cols = torch.tensor([col[i] for i in op.latents], device=w.device)
            unit_LD = dir_UD[cols] / dir_UD[cols].norm(dim=1, keepdim=True).clamp_min(1e-12)
            steer_TD += (selection(op, layout, n, b, z_TU[:, cols]).float() * op.value) @ unit_LD
    delta_TD = (z_edit_TU - z_TU) @ dir_UD + steer_TD  # = x_hat_edit - x_hat (+ steering)
    return (x_TD + delta_TD).reshape(b, n, d).to(x_BND.device)


def selection(op: LatentOp, layout: TokenLayout, n: int, b: int, z_TL: torch.Tensor) -> torch.Tensor:
    """(T, L) bool: the tokens of ``b`` images of ``n`` tokens that ``op`` edits, for each of its latents
    (``z_TL``: their unedited activations, for where='active')."""
    sel_TL = selected_N(op, layout, n).repeat(b).to(z_TL.device)[:, None].expand(-1, z_TL.shape[1])
    return sel_TL & (z_TL > 0) if op.where == "active" else sel_TL


def edited_codes(edit: Edit, layout: TokenLayout, n: int, b: int, z_TU: torch.Tensor, latents: list[int]) -> torch.Tensor:
    """``z_edit_TU``: the activations of ``latents`` (``edit.latents()``) on b images of n tokens after the edit's
    set/scale/add/zero/clamp operations, in order (steer operations leave the codes alone)."""
    col = {latent: j for j, latent in enumerate(latents)}
    z_edit_TU = z_TU.clone()
    for op in edit.ops:
        if op.op == "steer":
            continue
        cols = torch.tensor([col[i] for i in op.latents], device=z_TU.device)
        sel_TL = selection(op, layout, n, b, z_TU[:, cols])
        z_edit_TU[:, cols] = torch.where(sel_TL, apply_op(op, z_edit_TU[:, cols]), z_edit_TU[:, cols])
    return z_edit_TU


class Splice:
    """Run ``backbone`` with ``sae`` spliced in at ``layer``: ``with Splice(bb, sae, layer, edit): bb.forward(x)``.

    ``layer`` defaults to the SAE's own (``sae.meta['layer']``); ``attach()`` / ``detach()`` do
    what the context manager does; ``set_edit`` swaps the edit of an attached splice (a slider).
    ``directions`` ({latent: vector of d_in}) edits along other directions than the decoder's
    (the random-direction baseline).
    """

    def __init__(self, backbone: Backbone, sae: SAE, layer: str | None = None, edit: Edit | None = None, mode: Mode = "edit",
                 directions: dict[int, torch.Tensor] | None = None):  # fmt: skip
        if mode not in ("edit", "recon"):
            raise VisaeError(f"unknown splice mode '{mode}'", "use mode='edit' or mode='recon'")
        if mode == "recon" and edit is not None and edit.ops:
            raise VisaeError("mode 'recon' takes no edit (it gives x' = x_hat)", "drop the edit, or use mode='edit'")
        layer = layer or sae.meta.get("layer")
        if not layer:
            raise VisaeError("no layer to splice the SAE into: the SAE does not name one", "pass layer=... (visae layers MODEL lists them)")
        self.backbone, self.sae, self.mode, self.directions = backbone, sae, mode, directions
        self.layer = backbone.resolve_layer(layer)
        self.layout = backbone.layout(self.layer)
        check_matches(sae, self.layout.dim, f"layer '{self.layer}'")
        self.edit = Edit()
        self.set_edit(edit or Edit())
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def set_edit(self, edit: Edit) -> None:
        """Replace the edit (checked against the SAE and the layer first)."""
        check_edit(edit, self.sae, self.layout)
        self.edit = edit

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def attach(self) -> "Splice":
        if self._handle is None:
            module = self.backbone.model.get_submodule(self.layer)
            self._handle = module.register_forward_hook(self._hook)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> "Splice":
        return self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(out, torch.Tensor):
            raise VisaeError(f"layer '{self.layer}' returns {type(output).__name__}, not a tensor or a tuple", "splice another layer")
        new_BND = splice_tokens(to_seq(out, self.layout), self.layout, self.sae, self.edit, self.mode, self.directions)
        new = from_seq(new_BND, out, self.layout)
        if isinstance(output, tuple):
            return (new, *output[1:])
        if isinstance(output, list):
            return [new, *output[1:]]
        return new
