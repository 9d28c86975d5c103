"""Reconstruct images (and later captions and 3D objects) from predicted features."""

from .diffusion import load_img2img_pipeline, reconstruct_img2img
from .image import METHODS, reconstruct_lowlevel

__all__ = ["METHODS", "load_img2img_pipeline", "reconstruct_img2img", "reconstruct_lowlevel"]
