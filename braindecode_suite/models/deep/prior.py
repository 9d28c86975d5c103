"""A small DDPM diffusion prior in CLIP space (MindEye / DALL·E 2 style, kept modest).

The denoiser is a transformer over ``[condition tokens; noisy tokens; time token]`` that
predicts the noise ε added to the target CLIP tokens (epsilon prediction, cosine schedule).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...utils.validation import check_positive_int

__all__ = ["DiffusionPrior", "cosine_alphas_cumprod"]


def cosine_alphas_cumprod(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """ᾱ_t of the cosine schedule (Nichol & Dhariwal 2021), shape (timesteps,)."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ac = f / f[0]
    betas = (1 - ac[1:] / ac[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


class DiffusionPrior(nn.Module):
    """Epsilon-predicting transformer denoiser for (n_tokens, dim) embeddings.

    Parameters
    ----------
    dim : int
        Token width (CLIP embedding size).
    n_tokens : int
        Tokens per sample.
    depth, heads : int
        Transformer layers and attention heads (``dim`` must divide by ``heads``).
    timesteps : int
        Diffusion steps.
    """

    def __init__(
        self, dim: int, n_tokens: int, *, depth: int = 2, heads: int = 4, timesteps: int = 100
    ):
        super().__init__()
        check_positive_int("timesteps", timesteps)
        self.dim, self.n_tokens, self.timesteps = dim, n_tokens, timesteps
        self.pos = nn.Parameter(torch.randn(2 * n_tokens + 1, dim) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(1, dim), nn.GELU(), nn.Linear(dim, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.net = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(timesteps), persistent=False)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted noise, shape like ``x_t`` (B, n_tokens, dim)."""
        temb = self.time_mlp((t.float() / self.timesteps)[:, None])[:, None]
        h = torch.cat([cond, x_t, temb], 1) + self.pos
        return self.out(self.net(h)[:, cond.shape[1] : cond.shape[1] + x_t.shape[1]])

    def loss(self, x0: torch.Tensor, cond: torch.Tensor, generator=None) -> torch.Tensor:
        """DDPM training loss: MSE between the true and the predicted noise."""
        B = len(x0)
        t = torch.randint(0, self.timesteps, (B,), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        ab = self.alphas_cumprod.to(x0.device)[t].reshape(B, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        return torch.mean((self.denoise(x_t, t, cond).float() - noise.float()) ** 2)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, *, generator=None) -> torch.Tensor:
        """Ancestral DDPM sampling conditioned on ``cond`` (B, n_tokens, dim)."""
        B = len(cond)
        ac = self.alphas_cumprod.to(cond.device)
        x = torch.randn((B, self.n_tokens, self.dim), generator=generator).to(cond.device)
        for i in reversed(range(self.timesteps)):
            t = torch.full((B,), i, device=cond.device, dtype=torch.long)
            ab = ac[i]
            ab_prev = ac[i - 1] if i > 0 else torch.ones((), device=cond.device)
            beta = 1 - ab / ab_prev
            eps = self.denoise(x, t, cond).float()
            mean = (x - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
            if i > 0:
                var = beta * (1 - ab_prev) / (1 - ab)
                z = torch.randn(x.shape, generator=generator).to(x.device)
                x = mean + var.sqrt() * z
            else:
                x = mean
        return x
