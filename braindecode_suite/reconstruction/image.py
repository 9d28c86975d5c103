"""Image reconstruction from predicted features.

``lowlevel``: predicted downsampled pixels (the ``pixels`` feature space) are
clipped to [0, 1] and upsampled (bicubic) to the output size: the blurry
low-level image that diffusion methods (Brain-Diffuser's VDVAE stage, MindEye's
blurry branch) refine. The diffusion methods register beside it in ``METHODS``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..utils.validation import BadInputError, check_option, check_positive_int

__all__ = ["reconstruct_lowlevel", "METHODS"]


def reconstruct_lowlevel(pred_pixels, *, output_size: int = 256, blur: float = 0.0) -> np.ndarray:
    """Images from predicted low-resolution pixels.

    Parameters
    ----------
    pred_pixels : ndarray of shape (n_images, size, size, 3)
        Predicted RGB values on the [0, 1] scale (may fall outside it).
    output_size : int
        Side of the output images.
    blur : float
        Optional Gaussian blur radius in output pixels (0 = none).

    Returns
    -------
    images : ndarray of shape (n_images, output_size, output_size, 3), uint8
    """
    from PIL import ImageFilter

    pred = np.asarray(pred_pixels, dtype=np.float32)
    if pred.ndim != 4 or pred.shape[-1] != 3:
        raise BadInputError(
            f"pred_pixels must have shape (n_images, size, size, 3), got {pred.shape} instead."
        )
    if not np.all(np.isfinite(pred)):
        raise BadInputError("pred_pixels contains NaN or inf values.")
    output_size = check_positive_int("output_size", output_size)
    out = np.empty((len(pred), output_size, output_size, 3), np.uint8)
    for i, p in enumerate(pred):
        img = Image.fromarray((np.clip(p, 0, 1) * 255).round().astype(np.uint8))
        img = img.resize((output_size, output_size), Image.BICUBIC)
        if blur > 0:
            img = img.filter(ImageFilter.GaussianBlur(blur))
        out[i] = np.asarray(img)
    return out


METHODS = {"lowlevel": reconstruct_lowlevel}


def get_method(name: str):
    check_option("method", name, METHODS)
    return METHODS[name]
