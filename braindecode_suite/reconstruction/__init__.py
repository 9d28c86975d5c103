"""Reconstruct images, captions and 3D objects from decoded features.

Routes (docs/reconstruction.md): ``lowlevel`` (decoded pixels), Takagi & Nishimoto and
MindEye2-style img2img (:mod:`.diffusion`), with a depth ControlNet (:mod:`.controlnet`),
Brain-Diffuser with Stable unCLIP or Versatile Diffusion (:mod:`.unclip`), captions
(:mod:`.captions`: retrieval, CLIP-prefix decoder, GIT) and Shap-E 3D (:mod:`.shape3d`).
Every loader accepts ``"tiny"`` for a random tiny model built in code (offline demos).

The caption module needs torch at import time, so it is imported on first use of its
names here (``from braindecode_suite.reconstruction import retrieve_captions`` works).
"""

from .controlnet import load_controlnet_img2img_pipeline, reconstruct_img2img_depth
from .diffusion import load_img2img_pipeline, reconstruct_img2img
from .image import METHODS, reconstruct_lowlevel
from .shape3d import export_meshes, load_shap_e_pipeline, reconstruct_3d
from .unclip import (
    load_unclip_pipeline,
    load_versatile_pipeline,
    reconstruct_unclip,
    reconstruct_versatile,
)

_CAPTIONS = (
    "ClipPrefixCaptioner",
    "caption_from_git_features",
    "git_image_features",
    "load_clip_prefix_captioner",
    "load_git_captioner",
    "retrieve_captions",
)

__all__ = [
    "METHODS",
    *_CAPTIONS,
    "export_meshes",
    "load_controlnet_img2img_pipeline",
    "load_img2img_pipeline",
    "load_shap_e_pipeline",
    "load_unclip_pipeline",
    "load_versatile_pipeline",
    "reconstruct_3d",
    "reconstruct_img2img",
    "reconstruct_img2img_depth",
    "reconstruct_lowlevel",
    "reconstruct_unclip",
    "reconstruct_versatile",
]


def __getattr__(name):
    if name in _CAPTIONS:
        from . import captions

        return getattr(captions, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
