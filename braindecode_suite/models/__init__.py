"""Decoders and encoders from brain activity to stimulus features."""

from .ridge import RidgeDecoder

__all__ = ["RidgeDecoder"]
