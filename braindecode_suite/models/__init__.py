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

# Deep decoders (torch): exported lazily so that importing the linear models stays torch-free.
_DEEP = (
    "BrainITConfig",
    "BrainITDecoder",
    "MindBridgeConfig",
    "MindBridgeDecoder",
    "MindEye2Config",
    "MindEye2Decoder",
    "TrainConfig",
    "adapt_new_subject",
    "load_decoder",
    "train_decoder",
    "train_from_scratch",
)
__all__ += list(_DEEP)


def __getattr__(name):
    if name in _DEEP:
        from . import deep

        return getattr(deep, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
