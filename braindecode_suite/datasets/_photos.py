"""Natural photographs that ship inside installed packages (no download).

scikit-image ``data`` (only the images bundled in its wheel; the ones it fetches
with pooch are never called), scikit-learn ``load_sample_images()`` and, when
matplotlib is installed, its ``grace_hopper.jpg`` sample.
"""

from __future__ import annotations

import numpy as np

from ..utils.logging import logger

__all__ = ["PHOTO_CAPTIONS", "PHOTO_CATEGORIES", "load_photos"]

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

#: name -> three COCO-style captions written for the whole photograph (by looking at it).
#: The demo gives every crop of a photo these captions: crop and flip are not described.
PHOTO_CAPTIONS: dict[str, tuple[str, str, str]] = {
    "astronaut": (
        "A smiling woman in an orange space suit posing in front of an American flag.",
        "A female astronaut sitting next to her helmet with a model space shuttle behind her.",
        "A portrait of an astronaut in an orange flight suit with mission patches.",
    ),
    "camera": (
        "A black and white photo of a man looking through a camera on a tripod.",
        "A man in a dark coat filming on a grassy field with buildings in the distance.",
        "A photographer bends over a tripod camera in an open park.",
    ),
    "grace_hopper": (
        "An elderly woman in a navy uniform and cap in front of an American flag.",
        "A portrait of an older woman wearing glasses and a dark military uniform.",
        "A woman officer with ribbons on her jacket looks at the camera.",
    ),
    "chelsea": (
        "A close up of a tabby cat with green eyes.",
        "The face of a striped brown cat looking to the side.",
        "A cat with large yellow green eyes and a pink nose.",
    ),
    "rocket": (
        "A white rocket standing on a launch pad at dusk.",
        "A rocket between tall metal towers lit up by bright lights.",
        "A space rocket waiting for launch under a dark blue evening sky.",
    ),
    "china": (
        "A tall ornate Chinese pagoda on a hill overlooking a lake.",
        "A traditional tower with red and green tiered roofs surrounded by trees.",
        "A multi story palace building stands above the trees next to the water.",
    ),
    "moon": (
        "A black and white close up of the cratered surface of the moon.",
        "A grey lunar landscape with small craters and dark patches.",
        "A greyscale view of rough moon terrain with a round crater.",
    ),
    "hubble_deep_field": (
        "Many small colorful galaxies scattered across a black sky.",
        "A deep space image full of distant stars and galaxies.",
        "Tiny points of red, white and blue light against the darkness of space.",
    ),
    "coffee": (
        "A cup of espresso on a red saucer on a wooden table.",
        "A small red and white coffee cup with a spoon on its saucer.",
        "A cup of coffee sitting on a wooden table seen from above.",
    ),
    "coins": (
        "A black and white photo of rows of old coins on a dark background.",
        "Several ancient silver coins arranged in a grid.",
        "A collection of worn coins with faces and figures laid out in rows.",
    ),
    "clock": (
        "A blurry round clock hanging on a plain grey wall.",
        "A black and white photo of an out of focus wall clock.",
        "A small shiny clock face in the middle of an empty grey wall.",
    ),
    "flower": (
        "An orange dahlia flower in bloom against dark green leaves.",
        "A close up of a round orange flower with many petals.",
        "A large peach colored flower with a smaller one below it.",
    ),
    "immunohistochemistry": (
        "A microscope image of stained tissue in brown and blue.",
        "Brown stained cells forming curved glands on a pale blue background.",
        "A close up of a tissue sample under a microscope.",
    ),
    "brick": (
        "A black and white photo of a brick wall.",
        "Rows of long grey bricks seen at an angle.",
        "A close up of a wall made of narrow bricks and mortar.",
    ),
    "grass": (
        "A black and white close up of dry grass on the ground.",
        "A patch of ground covered in blades of grass and leaves.",
        "A greyscale texture of cut grass seen from above.",
    ),
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
