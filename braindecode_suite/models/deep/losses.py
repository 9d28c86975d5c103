"""Contrastive and mixup losses of the MindEye family.

- :func:`info_nce` — symmetric InfoNCE (CLIP loss) between two batches of embeddings;
- :func:`soft_clip_loss` — MindEye's SoftCLIP: the targets of the brain→image softmax are
  the softmax of the image–image similarities, not the identity;
- :func:`mixco` / :func:`mixco_nce` — BiMixCo: voxels mixed with a permuted batch, the
  contrastive targets mixed the same way, in both directions (MindEye, Scotti et al. 2023).

Embeddings are L2-normalised inside; ``temperature`` divides the cosine similarities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["info_nce", "soft_clip_loss", "mixco", "mixco_nce"]


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.reshape(len(x), -1).float(), dim=-1)


def info_nce(preds: torch.Tensor, targets: torch.Tensor, temperature: float = 0.125):
    """Symmetric InfoNCE: mean of the brain→target and target→brain cross-entropies.

    Parameters
    ----------
    preds, targets : Tensor of shape (B, ...)
        Paired embeddings (flattened after the batch axis).
    temperature : float
        Softmax temperature.
    """
    logits = _norm(preds) @ _norm(targets).T / temperature
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def soft_clip_loss(preds: torch.Tensor, targets: torch.Tensor, temperature: float = 0.125):
    """MindEye's SoftCLIP loss.

    With p, t the normalised embeddings, S_bt = p tᵀ/τ and S_tt = t tᵀ/τ, the loss is
    ½ [ CE(softmax(S_tt), S_bt) + CE(softmax(S_ttᵀ), S_btᵀ) ], where CE(q, S) is the mean over
    rows of −Σ_j q_ij log softmax(S)_ij.
    """
    p, t = _norm(preds), _norm(targets)
    brain_clip = p @ t.T / temperature
    clip_clip = t @ t.T / temperature
    loss1 = -(brain_clip.log_softmax(-1) * clip_clip.softmax(-1)).sum(-1).mean()
    loss2 = -(brain_clip.T.log_softmax(-1) * clip_clip.softmax(-1)).sum(-1).mean()
    return 0.5 * (loss1 + loss2)


def mixco(voxels: torch.Tensor, *, beta: float = 0.15, s_thresh: float = 0.5, generator=None):
    """Mix each sample with a random other one (MixCo, as in MindEye).

    A fraction ``s_thresh`` of the batch gets mixed; ``lam ~ Beta(beta, beta)`` per sample.

    Returns
    -------
    mixed : Tensor like ``voxels``
    perm : LongTensor of shape (B,)
        Index of the sample each one was mixed with.
    betas : Tensor of shape (B,)
        Weight of the sample itself (1 where not mixed).
    select : BoolTensor of shape (B,)
        Which samples were mixed.
    """
    B = len(voxels)
    dev = voxels.device
    perm = torch.randperm(B, generator=generator).to(dev)
    u = torch.rand(B, generator=generator)
    # Beta(a, a) = G1 / (G1 + G2) with G ~ Gamma(a): seedable through ``generator``
    g1 = torch._standard_gamma(torch.full((B,), float(beta)), generator=generator)
    g2 = torch._standard_gamma(torch.full((B,), float(beta)), generator=generator)
    lam = g1 / (g1 + g2).clamp_min(1e-12)
    select = (u <= s_thresh).to(dev)
    lam = lam.to(dev, voxels.dtype)
    shape = (B,) + (1,) * (voxels.ndim - 1)
    mixed = voxels * lam.reshape(shape) + voxels[perm] * (1 - lam).reshape(shape)
    mixed = torch.where(select.reshape(shape), mixed, voxels)
    betas = torch.where(select, lam, torch.ones_like(lam))
    return mixed, perm, betas, select


def mixco_nce(
    preds: torch.Tensor,
    targets: torch.Tensor,
    perm: torch.Tensor,
    betas: torch.Tensor,
    select: torch.Tensor,
    temperature: float = 0.1,
    bidirectional: bool = True,
):
    """Contrastive loss for mixed inputs: the target row of a mixed sample puts weight
    ``beta`` on its own target and ``1 - beta`` on its partner's (BiMixCo)."""
    logits = _norm(preds) @ _norm(targets).T / temperature
    B = len(logits)
    probs = torch.diag(betas.float())
    probs[torch.arange(B, device=logits.device), perm] += 1 - betas.float()
    probs = torch.where(select[:, None], probs, torch.eye(B, device=logits.device))
    loss = -(logits.log_softmax(-1) * probs).sum(-1).mean()
    if bidirectional:
        loss2 = -(logits.T.log_softmax(-1) * probs.T).sum(-1).mean()
        loss = 0.5 * (loss + loss2)
    return loss
