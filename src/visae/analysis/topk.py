"""Streaming top-k per latent: keep the K best candidates of every latent across batches.

``TopK`` holds, for each of S latents, K slots (score, image, and any payload such as an
activation map). Each batch offers B candidates per latent; a slot changes only when one
of them beats it, so a slot's payload is written once per replacement and never copied
wholesale. Slots are unordered until ``sorted()``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Payload = dict[str, torch.Tensor]


class TopK:
    """The K highest-scoring candidates of each of S latents, with a payload per slot."""

    def __init__(self, S: int, K: int, payload: dict[str, tuple[tuple[int, ...], torch.dtype]]):
        self.S, self.K = S, K
        self.score_SK = torch.full((S, K), float("-inf"))
        self.data: Payload = {
            name: torch.zeros((S, K, *shape), dtype=dtype) for name, (shape, dtype) in payload.items()
        }

    def update(self, score_BS: torch.Tensor, fetch: Callable[[torch.Tensor, torch.Tensor], Payload]) -> None:
        """Offer B candidates per latent; ``fetch(b_idx, s_idx)`` gives the payload of the winners.

        ``fetch`` receives the candidate row and latent of every (candidate, latent) pair that
        enters the top K and returns a dict of tensors with those pairs along the first axis.
        """
        if score_BS.shape[0] == 0:
            return
        # Only latents where some candidate beats the current worst slot can change.
        live_S = (score_BS.float() > self.score_SK.min(dim=1).values).any(dim=0)
        if not live_S.any():
            return
        rows_S = live_S.nonzero(as_tuple=True)[0]
        cand_SX = torch.cat([self.score_SK[rows_S], score_BS[:, rows_S].T.float()], dim=1)
        _, pos_SK = cand_SX.topk(self.K, dim=1, sorted=False)
        chosen_SX = torch.zeros_like(cand_SX, dtype=torch.bool).scatter_(1, pos_SK, True)
        # Per latent, the number of old slots dropped equals the number of candidates taken;
        # both nonzero() lists run latent by latent, so they pair up one to one.
        s_free, k_free = (~chosen_SX[:, : self.K]).nonzero(as_tuple=True)
        s_new, b_new = chosen_SX[:, self.K :].nonzero(as_tuple=True)
        if s_new.numel() == 0:
            return
        s_free, s_new = rows_S[s_free], rows_S[s_new]
        self.score_SK[s_free, k_free] = score_BS[b_new, s_new].float()
        for name, value in fetch(b_new, s_new).items():
            self.data[name][s_free, k_free] = value.to(self.data[name].dtype)

    def sorted(self) -> tuple[torch.Tensor, Payload]:
        """Scores (S, K) in descending order per latent and the payload in the same order."""
        score_SK, order_SK = self.score_SK.sort(dim=1, descending=True)
        out = {}
        for name, t in self.data.items():
            idx = order_SK.view(self.S, self.K, *([1] * (t.dim() - 2))).expand_as(t)
            out[name] = t.gather(1, idx)
        return score_SK, out
