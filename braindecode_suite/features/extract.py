"""Extract features of a stimulus set into the FeatureStore, resumably.

The cache file is named by a hash of the extractor's cache key and the
stimulus set, so the same stimuli with the same weights and library versions
hit the cache, and anything else is a miss, never a silent mix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..utils.io import hash_json
from ..utils.logging import logger, progress_disabled
from ..utils.validation import BadInputError, check_positive_int
from .extractors import Extractor
from .store import FeatureStore, get_cache_dir

__all__ = ["extract_features", "feature_cache_path"]


def feature_cache_path(extractor: Extractor, stimulus_set: dict, cache_dir=None) -> Path:
    """``<cache_dir>/<extractor kind>/<hash of key and stimulus set>.h5``."""
    cache_dir = Path(cache_dir) if cache_dir is not None else get_cache_dir()
    digest = hash_json({"key": extractor.cache_key(), "stimuli": stimulus_set})[:24]
    return cache_dir / extractor.kind / f"{digest}.h5"


def extract_features(
    extractor: Extractor,
    stimulus_ids: Sequence,
    load_images: Callable[[np.ndarray], np.ndarray],
    *,
    stimulus_set: dict,
    cache_dir=None,
    chunk: int = 256,
) -> Path:
    """Compute (or find in the cache) the features of ``stimulus_ids``.

    Parameters
    ----------
    extractor : Extractor
        What to compute.
    stimulus_ids : sequence of int or str
        The stimuli, in the order the store keeps them.
    load_images : callable
        ``load_images(ids) -> uint8 array (len(ids), H, W, 3)``; called on blocks
        of ``chunk`` ids so memory stays bounded.
    stimulus_set : dict
        Identifies the images (e.g. stimulus file fingerprint); part of the cache key.
    cache_dir : path | None
        Defaults to :func:`~braindecode_suite.features.get_cache_dir`.
    chunk : int
        Images loaded and written per block; a crash loses at most one block.

    Returns
    -------
    path : Path
        The complete store file. A second call with the same inputs computes nothing.
    """
    chunk = check_positive_int("chunk", chunk)
    ids = np.asarray(stimulus_ids)
    if ids.ndim != 1 or len(ids) == 0:
        raise BadInputError(
            f"stimulus_ids must be a non-empty 1-D sequence, got shape {ids.shape}."
        )
    path = feature_cache_path(extractor, stimulus_set, cache_dir)
    if FeatureStore.exists(path):
        logger.info("%s: features found in the cache (%s)", extractor.kind, path)
        return path
    if path.exists():  # there, but not a complete readable store
        try:
            FeatureStore(path)
        except BadInputError as err:
            raise BadInputError(
                f"The cached {extractor.kind} features are unreadable. {err}"
            ) from None
    attrs = {"cache_key": extractor.cache_key(), "stimulus_set": stimulus_set}
    writer = FeatureStore.open_writer(path, ids, extractor.fields(), attrs=attrs)
    with writer:
        todo = np.asarray(writer.remaining_ids)
        with tqdm(
            total=len(ids),
            initial=len(ids) - len(todo),
            desc=f"features:{extractor.kind}",
            disable=progress_disabled(),
            unit="img",
        ) as bar:
            for start in range(0, len(todo), chunk):
                block = todo[start : start + chunk]
                images = load_images(block)
                if len(images) != len(block):
                    raise BadInputError(
                        f"load_images returned {len(images)} images for {len(block)} ids."
                    )
                writer.append(block, extractor.transform(images))
                bar.update(len(block))
    if not FeatureStore.exists(path):  # the writer finalises in __exit__
        raise RuntimeError(f"feature extraction finished but {path} is not complete")
    return path
