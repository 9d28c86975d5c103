"""Decoders and encoders from brain activity to stimulus features (and back)."""

from .ridge import DEFAULT_ALPHAS, RidgeCV

__all__ = ["DEFAULT_ALPHAS", "RidgeCV"]
