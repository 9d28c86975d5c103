"""MindBridge-style decoder: adaptive pooling of each subject's voxels to a common size, a
subject-specific embedder into a shared space and builder back to voxels, a shared
translator to CLIP tokens, the cycle-reconstruction loss, and reset-tuning for a new
subject (after Wang et al., CVPR 2024).

Loss = clip_weight · SoftCLIP/InfoNCE + mse_weight · MSE(CLIP tokens)
+ cycle_weight · MSE(builder(embedder(pooled voxels)), pooled voxels).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.validation import BadInputError, check_option, check_positive_int
from ._base import DeepDecoder, DeepDecoderConfig, subject_key
from .losses import info_nce, soft_clip_loss

__all__ = ["MindBridgeConfig", "MindBridgeDecoder"]


@dataclasses.dataclass
class MindBridgeConfig(DeepDecoderConfig):
    """MindBridge-style decoder settings.

    Defaults (24 GB GPU, 8 subjects): voxels pooled to 8192, shared space 1024, 2 translator
    blocks, 256 × 768 CLIP tokens — 355 M parameters for 8 subjects (≈19 M per subject's
    embedder and builder, 201 M in the CLIP head). :meth:`paper_scale` uses 2048-wide
    embeddings and 4 translator blocks (756 M; verify against the paper).

    Parameters
    ----------
    n_voxels : dict
        Subject → number of voxels.
    pool_size : int
        Common size every subject's voxels are pooled to.
    pool : 'avg' | 'max'
        Adaptive average (default) or max pooling.
    hidden_dim : int
        Width of the shared space.
    n_blocks : int
        Residual blocks of the shared translator.
    dropout : float
        Dropout in embedders, builders and translator.
    n_tokens, clip_dim : int
        CLIP tokens predicted.
    clip_loss : 'softclip' | 'infonce'
    temperature, clip_weight, mse_weight, cycle_weight : float
        Loss settings.
    """

    pool_size: int = 8192
    pool: str = "avg"
    hidden_dim: int = 1024
    n_blocks: int = 2
    dropout: float = 0.1
    n_tokens: int = 256
    clip_dim: int = 768
    clip_loss: str = "softclip"
    temperature: float = 0.05
    clip_weight: float = 1.0
    mse_weight: float = 1.0
    cycle_weight: float = 1.0

    @classmethod
    def paper_scale(cls, n_voxels: dict) -> MindBridgeConfig:
        """A larger setting in the spirit of the paper (verify sizes against it)."""
        return cls(n_voxels=n_voxels, pool_size=8192, hidden_dim=2048, n_blocks=4)

    def validate(self) -> None:
        super().validate()
        for name in ("pool_size", "hidden_dim", "n_tokens", "clip_dim"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("n_blocks", self.n_blocks, minimum=0)
        check_option("pool", self.pool, ("avg", "max"))
        check_option("clip_loss", self.clip_loss, ("softclip", "infonce"))


def _mlp(n_in: int, n_hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, n_hidden),
        nn.LayerNorm(n_hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(n_hidden, n_out),
    )


class _Block(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.f = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, h):
        return h + self.f(h)


class MindBridgeDecoder(DeepDecoder):
    """MindBridge-style decoder. Outputs ``"clip"`` (B, n_tokens, clip_dim), ``"clip_proj"``,
    ``"latent"`` (B, hidden_dim), ``"pooled"`` (B, pool_size) and ``"reconstruction"``
    (the builder's rebuild of ``"pooled"``)."""

    config_class = MindBridgeConfig
    primary_output = "clip"

    def __init__(self, config: MindBridgeConfig):
        super().__init__(config)
        c = config
        self.embedders = nn.ModuleDict()
        self.builders = nn.ModuleDict()
        for s in c.n_voxels:
            self._new_subject_modules(s)
        self.translator = nn.Sequential(
            *[_Block(c.hidden_dim, c.dropout) for _ in range(c.n_blocks)],
            nn.LayerNorm(c.hidden_dim),
        )
        self.clip_head = nn.Linear(c.hidden_dim, c.n_tokens * c.clip_dim)
        self.projector = nn.Sequential(
            nn.LayerNorm(c.clip_dim), nn.GELU(), nn.Linear(c.clip_dim, c.clip_dim)
        )

    def _new_subject_modules(self, subject):
        c = self.config
        self.embedders[subject_key(subject)] = _mlp(
            c.pool_size, c.hidden_dim, c.hidden_dim, c.dropout
        )
        self.builders[subject_key(subject)] = _mlp(
            c.hidden_dim, c.hidden_dim, c.pool_size, c.dropout
        )

    def add_subject(self, subject, n_voxels: int) -> None:
        """Add a subject with freshly initialised embedder and builder."""
        check_positive_int("n_voxels", n_voxels)
        if subject in self.n_voxels:
            raise BadInputError(f"subject {subject!r} already has an embedder.")
        self._new_subject_modules(subject)
        dev = self.clip_head.weight.device
        self.embedders[subject_key(subject)].to(dev)
        self.builders[subject_key(subject)].to(dev)
        self.n_voxels[subject] = int(n_voxels)
        self.config.n_voxels[subject] = int(n_voxels)

    def reset_subject(self, subject) -> None:
        """Re-initialise a subject's embedder and builder (reset-tuning), keeping the rest."""
        self.check_subject(subject)
        for mod in (self.embedders[subject_key(subject)], self.builders[subject_key(subject)]):
            for layer in mod.modules():
                if hasattr(layer, "reset_parameters") and layer is not mod:
                    layer.reset_parameters()

    def subject_parameters(self, subject):
        self.check_subject(subject)
        return [
            *self.embedders[subject_key(subject)].parameters(),
            *self.builders[subject_key(subject)].parameters(),
        ]

    def target_shapes(self):
        return {"clip": (self.config.n_tokens, self.config.clip_dim)}

    def pool_voxels(self, x: torch.Tensor) -> torch.Tensor:
        """Adaptive pooling of (B, n_voxels) to (B, pool_size)."""
        fn = F.adaptive_avg_pool1d if self.config.pool == "avg" else F.adaptive_max_pool1d
        return fn(x[:, None, :], self.config.pool_size)[:, 0]

    def decode(self, batch):
        subject, x = self.check_batch(batch)
        c = self.config
        pooled = self.pool_voxels(x)
        h = self.embedders[subject_key(subject)](pooled)
        rec = self.builders[subject_key(subject)](h)
        z = self.translator(h)
        clip = self.clip_head(z).reshape(len(x), c.n_tokens, c.clip_dim)
        return {
            "clip": clip,
            "clip_proj": self.projector(clip),
            "latent": z,
            "pooled": pooled,
            "reconstruction": rec,
        }

    def compute_loss(self, outputs, targets, ctx, *, progress):
        c = self.config
        y = targets["clip"].float()
        fn = soft_clip_loss if c.clip_loss == "softclip" else info_nce
        contrast = fn(outputs["clip_proj"], y, temperature=c.temperature)
        mse = F.mse_loss(outputs["clip"].float(), y)
        cycle = F.mse_loss(outputs["reconstruction"].float(), outputs["pooled"].float())
        loss = c.clip_weight * contrast + c.mse_weight * mse + c.cycle_weight * cycle
        return loss, {
            "contrastive": contrast.detach(),
            "mse": mse.detach(),
            "cycle": cycle.detach(),
        }
