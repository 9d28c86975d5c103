"""Preprocessing of brain data (fMRI here; M/EEG in meg_eeg.py)."""

from .fmri import average_repeats, zscore_per_session

__all__ = ["average_repeats", "zscore_per_session"]
