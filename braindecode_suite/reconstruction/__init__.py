"""Reconstruct images (and later captions and 3D objects) from predicted features."""

from .image import METHODS, reconstruct_lowlevel

__all__ = ["METHODS", "reconstruct_lowlevel"]
