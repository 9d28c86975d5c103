"""Trunks of :class:`~braindecode_suite.models.meeg.BrainEncoder`: (B, C, T) → (B, n_outputs).

- ``"simple_conv"`` — our own small version of Défossez et al.'s (2023) brain module: a 1×1
  input convolution, residual dilated convolutions (BatchNorm + GELU), a GLU convolution and
  temporal pooling into a few bins. Needs only torch.
- ``"atm"`` — the ATM encoder of Li et al. (2024) in small: a transformer over channels (each
  channel's time course is a token, plus a learned channel embedding), then NICE's
  temporal-spatial convolution (Song et al. 2024). Needs only torch.
- ``"eegnet"``, ``"shallow_fbcsp"``, ``"eeg_conformer"``, ``"brain_module"`` — braindecode's
  ``EEGNet``, ``ShallowFBCSPNet``, ``EEGConformer`` and ``BrainModule`` (the reference
  brainmagick SimpleConv), built with ``n_chans``, ``n_times`` and ``n_outputs``.
  ShallowFBCSPNet and EEGConformer need about 100 time samples or more with their defaults.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..utils.validation import BadInputError, check_option

__all__ = ["BACKBONES", "BRAINDECODE_BACKBONES", "ATMTrunk", "SimpleConv", "make_backbone"]

#: our name → braindecode.models class name
BRAINDECODE_BACKBONES = {
    "eegnet": "EEGNet",
    "shallow_fbcsp": "ShallowFBCSPNet",
    "eeg_conformer": "EEGConformer",
    "brain_module": "BrainModule",
}
BACKBONES = ("simple_conv", "atm", *BRAINDECODE_BACKBONES)


class SimpleConv(nn.Module):
    """Residual dilated convolutions + GELU + temporal pooling (after Défossez et al. 2023).

    Parameters
    ----------
    n_channels, n_times : int
        Input shape (per trial).
    n_outputs : int
        Features out.
    hidden_dim : int
        Convolution channels.
    depth : int
        Residual blocks; block ``i`` has dilation ``2 ** (i % dilation_period)``.
    kernel_size : int
        Odd temporal kernel size.
    dilation_period : int
        Dilation cycle length.
    n_pool : int
        Temporal bins kept by adaptive average pooling (1 = mean over time).
    dropout : float
        Dropout after each block.
    """

    def __init__(
        self,
        n_channels: int,
        n_times: int,
        n_outputs: int,
        *,
        hidden_dim: int = 64,
        depth: int = 4,
        kernel_size: int = 3,
        dilation_period: int = 3,
        n_pool: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise BadInputError(f"kernel_size must be odd, got {kernel_size}.")
        self.inp = nn.Conv1d(n_channels, hidden_dim, 1)
        self.blocks = nn.ModuleList()
        for i in range(depth):
            dil = 2 ** (i % dilation_period)
            self.blocks.append(
                nn.Sequential(
                    nn.Conv1d(
                        hidden_dim,
                        hidden_dim,
                        kernel_size,
                        dilation=dil,
                        padding=dil * (kernel_size - 1) // 2,
                    ),
                    nn.BatchNorm1d(hidden_dim),
                    nn.GELU(),
                    nn.Dropout(dropout),
                )
            )
        self.glu = nn.Sequential(nn.Conv1d(hidden_dim, 2 * hidden_dim, 1), nn.GLU(dim=1))
        n_pool = min(n_pool, n_times)
        self.pool = nn.AdaptiveAvgPool1d(n_pool)
        self.out = nn.Linear(hidden_dim * n_pool, n_outputs)

    def forward(self, x):
        x = self.inp(x)
        for block in self.blocks:
            x = x + block(x)
        x = self.pool(self.glu(x))
        return self.out(x.flatten(1))


class ATMTrunk(nn.Module):
    """Channel-wise transformer + NICE temporal-spatial convolution (ATM, Li et al. 2024).

    Parameters
    ----------
    n_channels, n_times : int
        Input shape (per trial).
    n_outputs : int
        Features out.
    d_model : int
        Token width of the channel transformer (each channel's time course is a token).
    n_heads : int
        Attention heads (must divide ``d_model``).
    n_layers : int
        Transformer layers.
    n_filters : int
        Filters of the temporal-spatial convolution (40 in NICE/ATM).
    dropout : float
        Dropout in the transformer and after the convolution.
    """

    def __init__(
        self,
        n_channels: int,
        n_times: int,
        n_outputs: int,
        *,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 1,
        n_filters: int = 40,
        dropout: float = 0.25,
    ):
        super().__init__()
        if d_model % n_heads:
            raise BadInputError(f"n_heads={n_heads} must divide d_model={d_model}.")
        self.embed = nn.Linear(n_times, d_model)
        self.channel_embedding = nn.Parameter(0.02 * torch.randn(n_channels, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.unembed = nn.Linear(d_model, n_times)
        k = max(1, min(25, n_times // 4))
        after = n_times - k + 1
        pool = max(1, min(51, after // 2))
        stride = max(1, min(5, pool))
        self.conv = nn.Sequential(
            nn.Conv2d(1, n_filters, (1, k)),
            nn.AvgPool2d((1, pool), (1, stride)),
            nn.BatchNorm2d(n_filters),
            nn.ELU(),
            nn.Conv2d(n_filters, n_filters, (n_channels, 1)),
            nn.BatchNorm2d(n_filters),
            nn.ELU(),
            nn.Dropout(dropout),
            nn.Conv2d(n_filters, n_filters, 1),
        )
        n_steps = (after - pool) // stride + 1
        self.out = nn.Linear(n_filters * n_steps, n_outputs)

    def forward(self, x):
        tokens = self.embed(x) + self.channel_embedding
        x = x + self.unembed(self.transformer(tokens))
        return self.out(self.conv(x.unsqueeze(1)).flatten(1))


def make_backbone(
    name: str, n_channels: int, n_times: int, n_outputs: int, **kwargs: Any
) -> nn.Module:
    """Build the trunk ``name`` (see :data:`BACKBONES`) mapping (B, C, T) → (B, n_outputs)."""
    check_option("backbone", name, BACKBONES)
    if name == "simple_conv":
        return SimpleConv(n_channels, n_times, n_outputs, **kwargs)
    if name == "atm":
        return ATMTrunk(n_channels, n_times, n_outputs, **kwargs)
    try:
        import braindecode.models as bm
    except ImportError as err:
        raise BadInputError(
            f"backbone={name!r} needs braindecode: pip install 'braindecode_suite[meeg]' "
            "(or pip install braindecode), or use backbone='simple_conv' or 'atm'."
        ) from err
    cls = getattr(bm, BRAINDECODE_BACKBONES[name])
    try:
        return cls(n_chans=n_channels, n_outputs=n_outputs, n_times=n_times, **kwargs)
    except (RuntimeError, ValueError, TypeError) as err:
        raise BadInputError(
            f"braindecode's {cls.__name__} could not be built for n_channels={n_channels}, "
            f"n_times={n_times} with {kwargs}: {' '.join(str(err).split())[:300]} (its "
            "default kernels need longer epochs: use more time samples, smaller kernels via "
            "backbone_kwargs, or backbone='simple_conv')."
        ) from err
