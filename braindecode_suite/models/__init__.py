"""Decoders and encoders between brain activity and stimulus features."""

from .banded import BandedRidgeCV
from .encoding import (
    EncodingModel,
    compute_ncsnr,
    compute_noise_ceiling,
    compute_pearson_r,
    compute_r2,
    noise_normalized,
    score_encoding,
)
from .ridge import DEFAULT_ALPHAS, RidgeCV

__all__ = [
    "DEFAULT_ALPHAS",
    "BandedRidgeCV",
    "EncodingModel",
    "RidgeCV",
    "compute_ncsnr",
    "compute_noise_ceiling",
    "compute_pearson_r",
    "compute_r2",
    "noise_normalized",
    "score_encoding",
]
