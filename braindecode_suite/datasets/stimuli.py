"""Stimulus images of any dataset, read from what a data stage recorded in ``stimuli.json``.

Two formats (the ``format`` key of the record):

- ``"nsd_hdf5"``: NSD's ``nsd_stimuli.hdf5`` (``imgBrick``), ``path`` and 0-based 73k ids
  (:func:`~braindecode_suite.datasets.read_nsd_stimuli`). A record without ``format``, or
  with ``"nsd_imgBrick"``, means this.
- ``"image_files"``: ``files`` = one image path per stimulus id (the index of the dataset's
  ``info["stimulus_names"]``), ``None`` where the image was not found; images are read with
  PIL, converted to RGB and resized (squashed, bicubic) to ``image_size`` so that they stack.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils.io import hash_json
from ..utils.validation import BadInputError, check_option, check_positive_int, check_type
from .nsd import read_nsd_stimuli

__all__ = [
    "IMAGE_HOW_TO_GET",
    "STIMULUS_FORMATS",
    "image_files_fingerprint",
    "locate_stimulus_images",
    "read_stimulus_images",
    "stimulus_format",
]

#: Accepted ``format`` values (``nsd_imgBrick`` is another name of ``nsd_hdf5``).
STIMULUS_FORMATS = ("nsd_hdf5", "nsd_imgBrick", "image_files")
#: Datasets whose image-folder layout :func:`locate_stimulus_images` knows.
IMAGE_LAYOUTS = ("bold5000", "things_fmri", "god")
_MAX_LISTED = 5
#: Where each dataset's stimulus images come from (appended to "missing image" messages).
IMAGE_HOW_TO_GET = {
    "bold5000": (
        "BOLD5000 images are not downloaded automatically: get BOLD5000_Stimuli.zip from the "
        "BOLD5000 download page (bold5000-dataset.github.io) and unpack it in the data folder, "
        "so that Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,Scene}/ exist (or set "
        "stimuli_dir to the Presented_Stimuli folder)."
    ),
    "things_fmri": (
        "THINGS images are not downloaded automatically: get the THINGS object images from "
        "OSF (osf.io/jum2f; the zip password is in the project's description) and unpack "
        "them so that images/<concept>/<file>.jpg exist in the data folder (or set "
        "stimuli_dir to the folder of the concept folders)."
    ),
    "god": (
        "GOD images are ImageNet photographs that the authors give on request only (see "
        "KamitaniLab/GenericObjectDecoding data/README.md): put them in images/training/ and "
        "images/test/ in the data folder (or set stimuli_dir)."
    ),
}


def stimulus_format(stim: dict) -> str:
    """The canonical format of a stimulus record: ``'nsd_hdf5'`` or ``'image_files'``."""
    check_type("stim", stim, dict)
    fmt = check_option("format", stim.get("format", "nsd_hdf5"), STIMULUS_FORMATS)
    return "nsd_hdf5" if fmt == "nsd_imgBrick" else fmt


def _candidates(dataset: str, root: Path, name: str, i: int, info: dict) -> list[Path]:
    if dataset == "bold5000":
        # Presented_Stimuli/{COCO,ImageNet,Scene}/<name>; a leading 'rep_' is not in the file name
        base = name[4:] if name.startswith("rep_") else name
        source = str(info["stimulus_source"][i]) if "stimulus_source" in info else ""
        return [root / sub / n for n in dict.fromkeys((name, base)) for sub in (source, "")]
    if dataset == "things_fmri":
        concept = str(info["concept"][i]) if "concept" in info else ""
        return [root / concept / name, root / name]
    return [root / "training" / name, root / "test" / name, root / name]  # god


def locate_stimulus_images(dataset: str, stimuli_dir, info: dict) -> list[str | None]:
    """Paths of a dataset's stimulus images, one per ``info['stimulus_names']`` entry.

    Parameters
    ----------
    dataset : 'bold5000' | 'things_fmri' | 'god'
        Which folder layout to expect under ``stimuli_dir``: BOLD5000
        ``Scene_Stimuli/Presented_Stimuli`` (``{COCO,ImageNet,Scene}/<name>``, a leading
        ``rep_`` dropped), THINGS ``images`` (``<concept>/<name>``), GOD ``images``
        (``{training,test}/<name>``). A file directly in ``stimuli_dir`` is found too.
    stimuli_dir : str | PathLike
        The folder of the images (need not exist: then every entry is None).
    info : dict
        ``Trials.info`` of the dataset's adapter (``stimulus_names``, and
        ``stimulus_source`` / ``concept`` where the layout uses them).

    Returns
    -------
    files : list of str or None
        Absolute path of each stimulus image, None where no candidate file exists.
    """
    check_option("dataset", dataset, IMAGE_LAYOUTS)
    check_type("stimuli_dir", stimuli_dir, (str, os.PathLike))
    check_type("info", info, dict)
    if "stimulus_names" not in info:
        raise BadInputError(
            f"info has no 'stimulus_names' (keys: {sorted(info)}); pass the info of a "
            "dataset adapter's Trials."
        )
    root = Path(stimuli_dir).expanduser().resolve()
    out: list[str | None] = []
    for i, name in enumerate(info["stimulus_names"]):
        found = None
        if root.is_dir():
            found = next((p for p in _candidates(dataset, root, str(name), i, info)
                          if p.is_file()), None)  # fmt: skip
        out.append(None if found is None else str(found))
    return out


def image_files_fingerprint(files: Sequence[str | None], image_size: int) -> str:
    """Hash of the sorted ``(name, size, mtime)`` of the existing files, and ``image_size``.

    Cheap (one ``stat`` per file), and it changes when an image is added, removed,
    rewritten or touched, or when the images are resized differently.
    """
    image_size = check_positive_int("image_size", image_size)
    entries = []
    for f in files:
        if f is None:
            continue
        try:
            st = os.stat(f)
        except OSError:
            continue
        entries.append((str(f), int(st.st_size), int(st.st_mtime_ns)))
    return hash_json({"files": sorted(entries), "image_size": image_size})


def _check_ids(ids, n: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise BadInputError(
            f"ids must be a 1-D sequence of integer stimulus ids, got an array of dtype "
            f"{arr.dtype} and shape {arr.shape}."
        )
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise BadInputError(
            f"ids {bad[:_MAX_LISTED].tolist()} are out of range: the stimulus record lists "
            f"{n} images (ids 0..{n - 1})."
        )
    return arr


def _read_image(path: str, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise BadInputError(f"Could not read the stimulus image {path!r}: {err}") from err
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def _resize_all(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for k, im in enumerate(images):
        out[k] = np.asarray(
            Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8
        )
    return out


def read_stimulus_images(stim: dict, ids, *, size: int | None = None) -> np.ndarray:
    """Read the stimulus images of ``ids`` as uint8 (n, H, W, 3), in the order asked.

    Parameters
    ----------
    stim : dict
        A data stage's ``stimuli.json`` record. ``format`` ``'nsd_hdf5'`` (or absent):
        ``path`` to ``nsd_stimuli.hdf5``. ``'image_files'``: ``files`` (one path or None per
        stimulus id), ``image_size``, and optionally ``names`` (for messages),
        ``stimuli_dir`` and ``how_to_get`` (a hint appended when images are missing).
    ids : sequence of int
        Stimulus ids (NSD: 0-based 73k ids; image files: indices into ``files``).
    size : int | None
        Side of the square output. None: NSD images as stored (425 px), image files at
        the record's ``image_size``.

    Returns
    -------
    images : ndarray of uint8, shape (len(ids), H, W, 3)
    """
    fmt = stimulus_format(stim)
    if size is not None:
        size = check_positive_int("size", size)
    if fmt == "nsd_hdf5":
        if "path" not in stim:
            raise BadInputError(
                "stim: an 'nsd_hdf5' stimulus record needs 'path' (the nsd_stimuli.hdf5 file); "
                f"got keys {sorted(stim)}."
            )
        images = read_nsd_stimuli(stim["path"], ids)
        return images if size is None else _resize_all(images, size)
    files = stim.get("files")
    if not isinstance(files, list):
        raise BadInputError(
            "stim: an 'image_files' stimulus record needs 'files', a list with one image path "
            f"(or None) per stimulus id; got {type(files).__name__}."
        )
    if size is None:
        if "image_size" not in stim:
            raise BadInputError(
                "stim: an 'image_files' record needs 'image_size' (or pass size=...)."
            )
        size = check_positive_int("stim['image_size']", stim["image_size"])
    ids = _check_ids(ids, len(files))
    names = stim.get("names") or [None] * len(files)
    missing = []
    for i in np.unique(ids):
        f = files[i]
        if f is None or not Path(f).is_file():
            where = (
                f"{f!r}"
                if f is not None
                else f"{names[i]!r} (not found under {stim.get('stimuli_dir')!r})"
            )
            missing.append(f"stimulus id {int(i)}: {where}")
    if missing:
        listed = "; ".join(missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        hint = (
            stim.get("how_to_get") or "Put the stimulus images where the data stage expects them."
        )
        raise BadInputError(
            f"{len(missing)} stimulus image file(s) are missing: {listed}{more}. {hint}"
        )
    out = np.empty((len(ids), size, size, 3), dtype=np.uint8)
    for k, i in enumerate(ids):
        out[k] = _read_image(files[i], size)
    return out
