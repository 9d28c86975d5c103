"""Stimulus features: extractors, resumable extraction, and the HDF5 FeatureStore."""

from .extract import extract_features, feature_cache_path
from .extractors import EXTRACTORS, Extractor, check_images, make_extractor
from .speech import segment_targets, speech_latents
from .store import FeatureStore, FeatureWriter, get_cache_dir, list_stores, prune_cache

__all__ = [
    "segment_targets",
    "speech_latents",
    "EXTRACTORS",
    "Extractor",
    "FeatureStore",
    "FeatureWriter",
    "check_images",
    "extract_features",
    "feature_cache_path",
    "get_cache_dir",
    "list_stores",
    "make_extractor",
    "prune_cache",
]
