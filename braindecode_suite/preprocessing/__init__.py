"""Preprocessing of brain data (fMRI here; M/EEG in meg_eeg.py)."""

from .fmri import average_repeats, clean_trials, zscore_per_session
from .glm import HRF_MODELS, lss_betas, read_events
from .masking import mask_images
from .meg_eeg import (
    ICAConfig,
    PreprocessConfig,
    Recording,
    make_epochs,
    preprocess_raw,
    read_bids,
    read_raw,
    robust_scale,
    sensor_info,
)
from .meg_eeg_store import EpochStore, epochs_to_store

__all__ = [
    "EpochStore",
    "HRF_MODELS",
    "ICAConfig",
    "PreprocessConfig",
    "Recording",
    "epochs_to_store",
    "make_epochs",
    "preprocess_raw",
    "read_bids",
    "read_raw",
    "robust_scale",
    "sensor_info",
    "average_repeats",
    "clean_trials",
    "lss_betas",
    "mask_images",
    "read_events",
    "zscore_per_session",
]
