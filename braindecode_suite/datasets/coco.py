"""COCO caption annotations (``captions_<split>.json``), as NSD's stimuli use them.

Format of a COCO caption file (the 2017 originals are ~90 MB for train, ~4 MB for val)::

    {"images": [{"id": 9, "file_name": "000000000009.jpg", ...}, ...],
     "annotations": [{"id": 48, "image_id": 9, "caption": "A man ..."}, ...]}

Every COCO image has about five captions. :func:`read_coco_captions` parses each file
once with :mod:`json` and keeps only the images asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..utils.logging import logger
from ..utils.validation import BadInputError, check_path

__all__ = ["read_coco_captions"]

_N_SHOWN = 5  # missing ids listed in an error message


def _as_files(annotation_files) -> list[Path]:
    if isinstance(annotation_files, (str, os.PathLike)):
        annotation_files = [annotation_files]
    if not isinstance(annotation_files, Iterable):
        raise BadInputError(
            "annotation_files must be a path or a list of paths to COCO caption files "
            f"(captions_<split>.json), got {type(annotation_files).__name__}."
        )
    files: list[Path] = []
    for f in annotation_files:
        if not isinstance(f, (str, os.PathLike)):
            raise BadInputError(
                f"annotation_files must hold paths, got an item of type {type(f).__name__}."
            )
        path = check_path("annotation_files", f, kind="file")
        if path.resolve() not in {p.resolve() for p in files}:
            files.append(path)
    if not files:
        raise BadInputError(
            "annotation_files is empty; pass at least one COCO caption file "
            "(captions_<split>.json)."
        )
    return files


def _as_ids(name: str, ids) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim > 1:
        raise BadInputError(f"{name} must be a 1-D sequence of integers, got shape {arr.shape}.")
    arr = arr.reshape(-1)
    if arr.size and arr.dtype.kind not in "iu":
        raise BadInputError(f"{name} must be integers, got dtype {arr.dtype} ({arr[:3]!r}...).")
    return arr.astype(np.int64)


def _load_annotations(path: Path) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInputError(f"Could not read {str(path)!r} as JSON: {err}") from err
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list):
        raise BadInputError(
            f"{str(path)!r} is not a COCO caption file: expected a JSON object with an "
            "'annotations' list of {'id', 'image_id', 'caption'} records."
        )
    return anns


def _collect_captions(files: Sequence[Path], wanted: set[int]) -> dict[int, list[str]]:
    """{image_id: captions} for the ids in ``wanted`` found in ``files`` (read once each).

    Captions are sorted by annotation id (stable: records without an id keep their
    file order, after the ones with an id), stripped; empty captions are dropped.
    """
    found: dict[int, list[tuple[tuple, str]]] = {}
    seq = 0
    for path in files:
        anns = _load_annotations(path)
        logger.debug("read %d caption annotations from %s", len(anns), path)
        for ann in anns:
            seq += 1
            try:
                image_id = ann["image_id"]
                caption = ann["caption"]
            except (KeyError, TypeError):
                raise BadInputError(
                    f"{str(path)!r}: annotation {ann!r:.120} lacks 'image_id' or 'caption'; "
                    "is it a COCO caption file (captions_<split>.json)?"
                ) from None
            if image_id not in wanted:
                continue
            if not isinstance(caption, str):
                raise BadInputError(
                    f"{str(path)!r}: caption of image {image_id} is {caption!r}, not a string."
                )
            text = caption.strip()
            if not text:
                continue
            ann_id = ann.get("id")
            key = (0, ann_id, seq) if isinstance(ann_id, int) else (1, 0, seq)
            found.setdefault(int(image_id), []).append((key, text))
    return {k: [t for _, t in sorted(v, key=lambda kv: kv[0])] for k, v in found.items()}


def _missing_message(missing: Sequence[int]) -> str:
    """'3 id(s) (e.g. 7, 9, 12)': the count and the first few of ``missing``."""
    shown = ", ".join(str(int(m)) for m in missing[:_N_SHOWN])
    more = ", ..." if len(missing) > _N_SHOWN else ""
    return f"{len(missing)} id(s) ({shown}{more})"


def read_coco_captions(annotation_files, coco_ids) -> list[list[str]]:
    """Captions of COCO images, in the order of ``coco_ids``.

    Parameters
    ----------
    annotation_files : str | PathLike | sequence of str | PathLike
        COCO caption files (``captions_train2017.json``, ``captions_val2017.json``, or
        any file in the same format). Each is parsed once; a file given twice is read
        once.
    coco_ids : array-like of int, shape (n,)
        COCO image ids (``image_id`` in the annotations); repeats allowed.

    Returns
    -------
    captions : list of list of str, length n
        ``captions[i]`` = the captions of image ``coco_ids[i]`` in annotation-id order
        (COCO has ~5 per image), each stripped of surrounding whitespace; empty
        captions are dropped. Each inner list is a new list.

    Raises
    ------
    BadInputError
        A file is missing or not in COCO caption format, or an id has no caption in
        the files (the message gives the count and the first few such ids).
    """
    files = _as_files(annotation_files)
    ids = _as_ids("coco_ids", coco_ids)
    wanted = {int(i) for i in ids}
    found = _collect_captions(files, wanted)
    missing = sorted(wanted - set(found))
    if missing:
        raise BadInputError(
            f"coco_ids: {_missing_message(missing)} have no caption in "
            f"{[str(f) for f in files]}. Pass the caption files of the COCO split(s) these "
            "images belong to (captions_train2017.json / captions_val2017.json)."
        )
    return [list(found[int(i)]) for i in ids]
