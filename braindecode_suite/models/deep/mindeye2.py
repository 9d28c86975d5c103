"""MindEye2-style decoder: per-subject linear adapters into a shared latent, a residual MLP
backbone, and heads to CLIP image tokens, a low-level (VAE latent) target and, optionally,
a diffusion prior in CLIP space (Scotti et al., 2024).

The contrastive head is trained with BiMixCo during the first ``mixco_fraction`` of training
and with SoftCLIP (or InfoNCE) afterwards; the low-level head with MSE.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...utils.validation import BadInputError, check_option, check_positive_int
from ._base import DeepDecoder, DeepDecoderConfig, subject_key
from .losses import info_nce, mixco, mixco_nce, soft_clip_loss
from .prior import DiffusionPrior

__all__ = ["MindEye2Config", "MindEye2Decoder"]


@dataclasses.dataclass
class MindEye2Config(DeepDecoderConfig):
    """MindEye2-style decoder settings.

    Defaults fit one 24 GB GPU for 8 NSD subjects (15,724 voxels each) in fp32 with AdamW:
    hidden 1024, 4 blocks, 256 × 768 CLIP tokens (ViT-L/14), 4×28×28 low-level latents —
    338 M parameters (226 M for one subject; ≈5.4 GB of weights, gradients and Adam
    states). :meth:`paper_scale` uses MindEye2's token size (256 × 1664 OpenCLIP
    ViT-bigG/14) with a larger prior: 715 M parameters for 8 subjects, for 40-80 GB GPUs.

    Parameters
    ----------
    n_voxels : dict
        Subject → number of voxels.
    hidden_dim : int
        Width of the shared latent.
    n_blocks : int
        Residual MLP blocks (Linear → LayerNorm → GELU → Dropout, with a skip).
    dropout : float
        Dropout in the blocks.
    n_tokens, clip_dim : int
        CLIP image tokens predicted per sample and their width.
    lowlevel_shape : tuple of int
        Shape of the low-level target per sample (e.g. VAE latents (4, 28, 28)); ``()`` for
        no low-level head.
    clip_loss : 'softclip' | 'infonce'
        Contrastive loss after the MixCo phase.
    temperature : float
        Softmax temperature of the contrastive losses.
    mixco_fraction : float
        Fraction of training (from the start) that uses BiMixCo; 0 to disable.
    mixco_beta, mixco_s_thresh : float
        MixCo's Beta(β, β) mixing weights and fraction of mixed samples.
    clip_weight, mse_weight, lowlevel_weight, prior_weight : float
        Weights of the contrastive loss, of an MSE on the CLIP tokens, of the low-level MSE
        and of the prior's loss.
    prior : bool
        Add a :class:`~.prior.DiffusionPrior` conditioned on the predicted CLIP tokens.
    prior_depth, prior_heads, prior_timesteps : int
        Size of the prior.
    """

    hidden_dim: int = 1024
    n_blocks: int = 4
    dropout: float = 0.15
    n_tokens: int = 256
    clip_dim: int = 768
    lowlevel_shape: tuple = (4, 28, 28)
    clip_loss: str = "softclip"
    temperature: float = 0.05
    mixco_fraction: float = 0.33
    mixco_beta: float = 0.15
    mixco_s_thresh: float = 0.5
    clip_weight: float = 1.0
    mse_weight: float = 0.0
    lowlevel_weight: float = 0.5
    prior: bool = False
    prior_weight: float = 30.0
    prior_depth: int = 2
    prior_heads: int = 8
    prior_timesteps: int = 100

    @classmethod
    def paper_scale(cls, n_voxels: dict) -> MindEye2Config:
        """MindEye2's published sizes (80 GB GPU): 256 × 1664 ViT-bigG tokens + prior."""
        return cls(
            n_voxels=n_voxels,
            hidden_dim=1024,
            n_blocks=4,
            n_tokens=256,
            clip_dim=1664,
            prior=True,
            prior_depth=6,
            prior_heads=52,
            prior_timesteps=100,
        )

    def validate(self) -> None:
        super().validate()
        for name in (
            "hidden_dim",
            "n_tokens",
            "clip_dim",
            "prior_depth",
            "prior_heads",
            "prior_timesteps",
        ):
            check_positive_int(name, getattr(self, name))
        check_positive_int("n_blocks", self.n_blocks, minimum=0)
        check_option("clip_loss", self.clip_loss, ("softclip", "infonce"))
        if not 0 <= self.mixco_fraction <= 1:
            raise BadInputError(f"mixco_fraction must be in [0, 1], got {self.mixco_fraction}.")
        if self.prior and self.clip_dim % self.prior_heads:
            raise BadInputError(
                f"clip_dim={self.clip_dim} must be divisible by prior_heads={self.prior_heads}."
            )


class _Block(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.f = nn.Sequential(
            nn.Linear(dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, h):
        return h + self.f(h)


class MindEye2Decoder(DeepDecoder):
    """MindEye2-style multi-subject decoder.

    ``model({"subject": s, "voxels": (B, n_voxels_s)})`` returns ``"clip"`` (B, n_tokens,
    clip_dim), ``"clip_proj"`` (the contrastive projection, same shape), ``"lowlevel"``
    (B, *lowlevel_shape) when configured, and ``"latent"`` (B, hidden_dim).
    """

    config_class = MindEye2Config
    primary_output = "clip"

    def __init__(self, config: MindEye2Config):
        super().__init__(config)
        c = config
        self.adapters = nn.ModuleDict(
            {subject_key(s): nn.Linear(n, c.hidden_dim) for s, n in c.n_voxels.items()}
        )
        self.backbone = nn.Sequential(*[_Block(c.hidden_dim, c.dropout) for _ in range(c.n_blocks)])
        self.norm = nn.LayerNorm(c.hidden_dim)
        self.clip_head = nn.Linear(c.hidden_dim, c.n_tokens * c.clip_dim)
        self.projector = nn.Sequential(
            nn.LayerNorm(c.clip_dim), nn.GELU(), nn.Linear(c.clip_dim, c.clip_dim)
        )
        n_low = int(np.prod(c.lowlevel_shape)) if len(c.lowlevel_shape) else 0
        self.lowlevel_head = nn.Linear(c.hidden_dim, n_low) if n_low else None
        self.prior = (
            DiffusionPrior(
                c.clip_dim,
                c.n_tokens,
                depth=c.prior_depth,
                heads=c.prior_heads,
                timesteps=c.prior_timesteps,
            )
            if c.prior
            else None
        )

    # ------------------------------------------------------------------ subjects
    def add_subject(self, subject, n_voxels: int) -> None:
        """Add a new (randomly initialised) linear adapter for ``subject``."""
        check_positive_int("n_voxels", n_voxels)
        if subject in self.n_voxels:
            raise BadInputError(f"subject {subject!r} already has an adapter.")
        dev = self.clip_head.weight.device
        self.adapters[subject_key(subject)] = nn.Linear(n_voxels, self.config.hidden_dim).to(dev)
        self.n_voxels[subject] = int(n_voxels)
        self.config.n_voxels[subject] = int(n_voxels)

    def subject_parameters(self, subject):
        self.check_subject(subject)
        return list(self.adapters[subject_key(subject)].parameters())

    def target_shapes(self):
        c = self.config
        shapes = {"clip": (c.n_tokens, c.clip_dim)}
        if self.lowlevel_head is not None:
            shapes["lowlevel"] = tuple(c.lowlevel_shape)
        return shapes

    # ------------------------------------------------------------------ forward
    def decode(self, batch: dict) -> dict[str, torch.Tensor]:
        subject, x = self.check_batch(batch)
        c = self.config
        h = self.norm(self.backbone(self.adapters[subject_key(subject)](x)))
        clip = self.clip_head(h).reshape(len(x), c.n_tokens, c.clip_dim)
        out = {"clip": clip, "clip_proj": self.projector(clip), "latent": h}
        if self.lowlevel_head is not None:
            out["lowlevel"] = self.lowlevel_head(h).reshape(len(x), *c.lowlevel_shape)
        return out

    @torch.no_grad()
    def sample_prior(self, X, subject, *, seed: int = 0, device: str = "auto") -> np.ndarray:
        """CLIP tokens sampled from the diffusion prior given ``X`` (n, n_tokens, clip_dim)."""
        if self.prior is None:
            raise BadInputError("This MindEye2Decoder was built with prior=False.")
        clip = torch.as_tensor(self.predict(X, subject, device=device))
        dev = next(self.parameters()).device
        g = torch.Generator().manual_seed(seed)
        return self.prior.sample(clip.to(dev), generator=g).cpu().numpy()

    # ------------------------------------------------------------------ training
    def training_batch(self, batch, targets, *, progress, generator):
        c = self.config
        if c.clip_weight > 0 and progress < c.mixco_fraction and len(batch["voxels"]) > 1:
            mixed, perm, betas, select = mixco(
                batch["voxels"],
                beta=c.mixco_beta,
                s_thresh=c.mixco_s_thresh,
                generator=generator,
            )
            return {**batch, "voxels": mixed}, {
                "perm": perm,
                "betas": betas,
                "select": select,
                "generator": generator,
            }
        return batch, {"generator": generator}

    def compute_loss(self, outputs, targets, ctx, *, progress):
        c = self.config
        y = targets["clip"].float()
        logs = {}
        if "perm" in ctx:
            perm, betas = ctx["perm"], ctx["betas"].float()

            def mix(t):
                w = betas.reshape((-1,) + (1,) * (t.ndim - 1))
                return w * t + (1 - w) * t[perm]

            contrast = mixco_nce(
                outputs["clip_proj"],
                y,
                perm,
                ctx["betas"],
                ctx["select"],
                temperature=c.temperature,
            )
        else:

            def mix(t):
                return t

            fn = soft_clip_loss if c.clip_loss == "softclip" else info_nce
            contrast = fn(outputs["clip_proj"], y, temperature=c.temperature)
        loss = c.clip_weight * contrast
        logs["contrastive"] = contrast.detach()
        if c.mse_weight:
            mse = F.mse_loss(outputs["clip"].float(), mix(y))
            loss = loss + c.mse_weight * mse
            logs["clip_mse"] = mse.detach()
        if "lowlevel" in targets and self.lowlevel_head is not None and c.lowlevel_weight:
            low = F.mse_loss(outputs["lowlevel"].float(), mix(targets["lowlevel"].float()))
            loss = loss + c.lowlevel_weight * low
            logs["lowlevel"] = low.detach()
        if self.prior is not None and c.prior_weight:
            pl = self.prior.loss(mix(y), outputs["clip"], generator=ctx.get("generator"))
            loss = loss + c.prior_weight * pl
            logs["prior"] = pl.detach()
        return loss, logs
