"""Natural photographs that ship inside installed packages (no download).

scikit-image ``data`` (only the images bundled in its wheel; the ones it fetches
with pooch are never called), scikit-learn ``load_sample_images()`` and, when
matplotlib is installed, its ``grace_hopper.jpg`` sample.
"""

from __future__ import annotations

import numpy as np

from ..utils.logging import logger

__all__ = ["PHOTO_CATEGORIES", "load_photos"]

#: name -> (category, loader kind). Every entry is bundled with its package.
PHOTO_CATEGORIES: dict[str, str] = {
    "astronaut": "person",
    "camera": "person",
    "grace_hopper": "person",
    "chelsea": "animal",
    "rocket": "vehicle",
    "china": "scene",
    "moon": "scene",
    "hubble_deep_field": "scene",
    "coffee": "object",
    "coins": "object",
    "clock": "object",
    "flower": "plant",
    "immunohistochemistry": "texture",
    "brick": "texture",
    "grass": "texture",
}

_SKIMAGE = (
    "astronaut",
    "camera",
    "chelsea",
    "rocket",
    "moon",
    "hubble_deep_field",
    "coffee",
    "coins",
    "clock",
    "immunohistochemistry",
    "brick",
    "grass",
)


def _to_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) / max(float(img.max()), 1e-12))).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def load_photos() -> dict[str, np.ndarray]:
    """Return {name: uint8 (H, W, 3)} for every bundled photo that loads offline."""
    photos: dict[str, np.ndarray] = {}
    import skimage.data

    for name in _SKIMAGE:
        try:
            photos[name] = _to_rgb(getattr(skimage.data, name)())
        except Exception as err:  # a missing file in an unusual install
            logger.debug("skimage.data.%s unavailable: %s", name, err)
    try:
        from sklearn.datasets import load_sample_images

        sample = load_sample_images()
        for fname, img in zip(sample.filenames, sample.images, strict=True):
            name = fname.rsplit("/", 1)[-1].split(".")[0]
            if name in PHOTO_CATEGORIES:
                photos[name] = _to_rgb(img)
    except Exception as err:
        logger.debug("sklearn sample images unavailable: %s", err)
    try:
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photos["grace_hopper"] = _to_rgb(np.asarray(Image.open(f).convert("RGB")))
    except Exception as err:
        logger.debug("matplotlib grace_hopper unavailable: %s", err)
    ordered = {name: photos[name] for name in PHOTO_CATEGORIES if name in photos}
    if len(ordered) < 2:
        raise RuntimeError(
            "Fewer than two bundled photographs could be loaded; reinstall scikit-image "
            "(pip install scikit-image)."
        )
    return ordered
