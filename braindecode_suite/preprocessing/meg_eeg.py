"""EEG/MEG preprocessing with MNE-Python: read, clean, epoch, scale.

Readers (:func:`read_raw`, :func:`read_bids`) hand back ``mne.io.Raw`` objects; one
:class:`PreprocessConfig` names every step and :func:`preprocess_raw` applies them in a
fixed order; :func:`make_epochs` cuts epochs around events and applies the robust scaling
and clamping of Défossez et al. (2023). :func:`sensor_info` turns ``raw.info`` into the
JSON-able sensor description that is stored beside the data. Streaming a list of
recordings into an HDF5 epoch store is :func:`~braindecode_suite.preprocessing.epochs_to_store`.

Order of :func:`preprocess_raw`
-------------------------------
1. ``picks`` (channel names to keep), ``montage`` (positions from a built-in montage);
2. flat and saturated channels are marked bad (on the unfiltered data), with a warning;
3. notch filter, band-pass filter;
4. noisy channels are marked bad (on the filtered data), with a warning;
5. bad channels are interpolated (spherical splines, needs positions);
6. re-reference;
7. optional ICA (components labelled by ICLabel or matched to EOG) removed;
8. resampling.

Bad-channel rules
-----------------
* **flat**: peak-to-peak amplitude over the recording below ``flat_threshold`` of its type
  (default 0.1 µV for EEG-like channels, 1 fT for magnetometers, 0.1 pT/m for gradiometers);
* **saturated**: at least ``saturation_fraction`` (default 5 %) of the samples sit exactly at
  the channel's minimum or maximum value — a clipped amplifier plateaus at its rail;
* **noisy**: among the good channels of one type (at least 4), after the filters, the robust
  z-score of the channel's robust standard deviation (IQR / 1.349) exceeds ``noisy_z``
  (default 5). The z-score is (value - median) / (1.4826 * MAD) across channels: the PREP
  pipeline's deviation criterion (Bigdely-Shamlo et al., 2015).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..utils.logging import logger
from ..utils.validation import BadInputError, _did_you_mean, check_option, check_type
from .meg_eeg_io import READERS, Recording, read_bids, read_raw, sensor_info

__all__ = [
    "ICAConfig",
    "PreprocessConfig",
    "READERS",
    "Recording",
    "iter_epoch_blocks",
    "make_epochs",
    "preprocess_raw",
    "read_bids",
    "read_raw",
    "robust_scale",
    "sensor_info",
]

_FLAT_DEFAULTS = {"mag": 1e-15, "grad": 1e-13}  # everything else: 1e-7 (0.1 µV)
_EEG_LIKE_FLAT = 1e-7
_NON_BRAIN = ("eye blink", "muscle artifact", "heart beat", "line noise", "channel noise")


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ICAConfig:
    """Independent component analysis settings.

    Parameters
    ----------
    n_components : int | float | None
        Components to fit (a float < 1 keeps that fraction of variance).
    method : 'fastica' | 'infomax' | 'picard'
        ``'infomax'`` fits extended infomax, the decomposition ICLabel was trained on.
    iclabel : bool
        Label components with ICLabel (mne-icalabel) and remove those labelled
        ``exclude_labels`` with probability above ``threshold``. When False, components
        matching an EOG channel (``mne.preprocessing.ICA.find_bads_eog``) are removed.
    threshold : float
        Probability above which an ICLabel non-brain component is removed; with
        ``iclabel=False``, the absolute correlation with the EOG above which a component is.
    exclude_labels : tuple of str
        ICLabel classes to remove.
    eog_channels : tuple of str | None
        Channels used as EOG when ``iclabel=False`` (default: the EOG-typed channels).
    random_state : int
    """

    n_components: int | float | None = 15
    method: str = "fastica"
    iclabel: bool = False
    threshold: float = 0.5
    exclude_labels: tuple[str, ...] = _NON_BRAIN
    eog_channels: tuple[str, ...] | None = None
    random_state: int = 0

    def __post_init__(self):
        check_option("ica.method", self.method, ("fastica", "infomax", "picard"))
        if not 0.0 < float(self.threshold) <= 1.0:
            raise BadInputError(f"ica.threshold must be in (0, 1], got {self.threshold!r}.")


@dataclass(frozen=True)
class PreprocessConfig:
    """Every preprocessing step, in one place (see the module docstring for the order).

    Parameters
    ----------
    picks : tuple of str | None
        Channel names to keep (``None``: all).
    montage : str | None
        Built-in mne montage (e.g. ``'standard_1020'``) to take EEG positions from.
    l_freq, h_freq : float | None
        Band-pass edges in Hz (``None`` leaves that side open).
    filter_kwargs : dict | None
        Extra arguments of ``raw.filter`` (default: mne's zero-phase FIR). E.g. a causal
        5th-order Butterworth: ``{"method": "iir", "iir_params": {"order": 5, "ftype":
        "butter"}, "phase": "forward"}``.
    notch : float | tuple of float | None
        Line frequency (and harmonics) to notch out, in Hz.
    sfreq : float | None
        Resample to this rate (Hz); also what lets recordings of different rates be stored
        together.
    reference : 'average' | tuple of str | None
        EEG re-reference: average, the mean of named channels, or unchanged.
    detect_bad : bool
        Mark flat, saturated and noisy channels bad (rules in the module docstring).
    flat_threshold : dict | None
        Peak-to-peak threshold per channel type overriding the defaults.
    saturation_fraction : float
        Fraction of samples at the channel's extreme value that makes it saturated.
    noisy_z : float
        Robust z-score above which a channel is noisy.
    interpolate_bads : bool
        Interpolate bad channels (needs positions: set ``montage``).
    ica : ICAConfig | None
        ICA artifact removal, or none.
    tmin, tmax : float
        Epoch window around each event, in seconds.
    baseline : tuple of (float | None, float | None) | None
        Baseline interval for mean subtraction, ``None`` for no baseline correction.
    robust_scale : bool
        Scale each channel by a RobustScaler fitted on the whole (preprocessed) recording.
    clamp : float | None
        After scaling, clip values to ``±clamp`` (Défossez et al. use 20).
    """

    picks: tuple[str, ...] | None = None
    montage: str | None = None
    l_freq: float | None = None
    h_freq: float | None = None
    filter_kwargs: dict | None = None
    notch: float | tuple[float, ...] | None = None
    sfreq: float | None = None
    reference: str | tuple[str, ...] | None = None
    detect_bad: bool = True
    flat_threshold: dict | None = None
    saturation_fraction: float = 0.05
    noisy_z: float = 5.0
    interpolate_bads: bool = False
    ica: ICAConfig | None = None
    tmin: float = -0.2
    tmax: float = 0.8
    baseline: tuple[float | None, float | None] | None = (None, 0.0)
    robust_scale: bool = False
    clamp: float | None = 20.0

    def __post_init__(self):
        for name in ("l_freq", "h_freq", "sfreq", "clamp"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                raise BadInputError(f"{name} must be a positive number or None, got {value!r}.")
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise BadInputError(
                f"l_freq ({self.l_freq}) must be below h_freq ({self.h_freq}) for a band-pass."
            )
        if not (_is_number(self.tmin) and _is_number(self.tmax)) or self.tmin >= self.tmax:
            raise BadInputError(
                f"tmin must be below tmax (seconds), got tmin={self.tmin!r}, tmax={self.tmax!r}."
            )
        if isinstance(self.reference, str) and self.reference != "average":
            raise BadInputError(
                f"reference must be 'average', a tuple of channel names or None, got "
                f"{self.reference!r}."
            )
        if not 0.0 < self.saturation_fraction <= 1.0:
            raise BadInputError(
                f"saturation_fraction must be in (0, 1], got {self.saturation_fraction!r}."
            )
        if self.ica is not None:
            check_type("ica", self.ica, ICAConfig)
        if self.baseline is not None and len(self.baseline) != 2:
            raise BadInputError(
                f"baseline must be (start, stop) in seconds or None, got {self.baseline!r}."
            )

    def to_dict(self) -> dict:
        """JSON-able form (stored beside preprocessed data)."""
        return asdict(self)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------- helpers
def _check_names(name: str, wanted: Sequence[str], available: Sequence[str], where: str) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        more = "..." if len(available) > 10 else ""
        raise BadInputError(
            f"{name}: unknown channel names {missing} (not in {where}, which has "
            f"{len(available)} channels: {list(available)[:10]}{more})."
            f"{_did_you_mean(missing[0], available)}"
        )


def _set_montage(raw, montage) -> None:
    import mne

    if isinstance(montage, str):
        builtin = mne.channels.get_builtin_montages()
        for old, new in (("standard_", "colin27_"), ("colin27_", "standard_")):
            # mne 1.13 renamed standard_1020 & co. to colin27_*; accept either name
            if montage not in builtin and montage.replace(old, new) in builtin:
                montage = montage.replace(old, new)
        check_option("montage", montage, builtin)
        montage = mne.channels.make_standard_montage(montage)
    check_type("montage", montage, (mne.channels.DigMontage,))
    eeg = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True, exclude=())]
    lower = {c.lower() for c in montage.ch_names}
    _check_names(
        "montage",
        [c for c in eeg if c.lower() not in lower],
        montage.ch_names,
        "the montage",
    )
    raw.set_montage(montage, match_case=False, on_missing="raise", verbose="error")


def _flat_limits(config: PreprocessConfig) -> dict:
    limits = dict(_FLAT_DEFAULTS)
    limits.update(config.flat_threshold or {})
    return limits


def _data_picks(raw) -> np.ndarray:
    import mne

    return mne.pick_types(
        raw.info, meg=True, eeg=True, seeg=True, ecog=True, dbs=True, eog=True, ecg=True,
        emg=True, exclude=(),
    )  # fmt: skip


def _mark_bad(raw, names: list[str], why: str) -> None:
    new = [c for c in names if c not in raw.info["bads"]]
    if new:
        logger.warning("marking %d channel(s) bad (%s): %s", len(new), why, new)
        raw.info["bads"] = list(raw.info["bads"]) + new


def _detect_flat_saturated(raw, config: PreprocessConfig) -> tuple[list[str], list[str]]:
    limits = _flat_limits(config)
    types = raw.get_channel_types()
    flat, saturated = [], []
    for idx in _data_picks(raw):
        x = raw._data[idx]
        lo, hi = float(x.min()), float(x.max())
        if hi - lo < limits.get(types[idx], _EEG_LIKE_FLAT):
            flat.append(raw.ch_names[idx])
            continue
        at_rail = np.count_nonzero(x == lo) + np.count_nonzero(x == hi)
        if at_rail >= config.saturation_fraction * x.size:
            saturated.append(raw.ch_names[idx])
    return flat, saturated


def _robust_sd(x: np.ndarray) -> float:
    step = max(1, x.size // 1_000_000)  # a million samples estimate the IQR well enough
    q25, q75 = np.percentile(x[::step], [25, 75])
    return float(q75 - q25) / 1.349


def _detect_noisy(raw, config: PreprocessConfig) -> list[str]:
    types = raw.get_channel_types()
    noisy = []
    for kind in sorted(set(types[i] for i in _data_picks(raw))):
        idx = [
            i
            for i in _data_picks(raw)
            if types[i] == kind and raw.ch_names[i] not in raw.info["bads"]
        ]
        if len(idx) < 4:
            continue
        value = np.array([_robust_sd(raw._data[i]) for i in idx])
        med = np.median(value)
        mad = 1.4826 * np.median(np.abs(value - med))
        if mad <= 0:
            continue
        z = (value - med) / mad
        noisy += [raw.ch_names[i] for i, zi in zip(idx, z, strict=True) if zi > config.noisy_z]
    return noisy


def _interpolate(raw) -> list[str]:
    bads = list(raw.info["bads"])
    if not bads:
        return []
    no_pos = [
        ch["ch_name"]
        for ch in raw.info["chs"]
        if ch["kind"] in (2,)  # FIFFV_EEG_CH
        and (not np.all(np.isfinite(ch["loc"][:3])) or not np.any(ch["loc"][:3]))
    ]
    if no_pos:
        raise BadInputError(
            f"interpolate_bads: cannot interpolate the bad channels {bads}: channels {no_pos[:10]}"
            f"{'...' if len(no_pos) > 10 else ''} have no positions. Set a montage "
            "(PreprocessConfig(montage='standard_1020') or raw.set_montage) first."
        )
    raw.interpolate_bads(reset_bads=True, verbose="error")
    return bads


def _apply_ica(raw, ica_config: ICAConfig, report: dict) -> list[int]:
    import mne

    # ICA dislikes drift; ICLabel was trained on 1-100 Hz band-passed data
    h_freq = 100.0 if ica_config.iclabel and raw.info["sfreq"] > 250 else None
    fit_raw = raw.copy().filter(l_freq=1.0, h_freq=h_freq, verbose="error")
    method = "infomax" if ica_config.method == "infomax" else ica_config.method
    fit_params = {"extended": True} if method == "infomax" else None
    ica = mne.preprocessing.ICA(
        n_components=ica_config.n_components,
        method=method,
        fit_params=fit_params,
        random_state=ica_config.random_state,
        max_iter="auto",
        verbose="error",
    )
    ica.fit(fit_raw, verbose="error")
    if ica_config.iclabel:
        try:
            from mne_icalabel import label_components
        except ImportError:
            raise BadInputError(
                "ica.iclabel=True needs mne-icalabel: install it with "
                "`pip install 'braindecode_suite[icalabel]'` (or `pip install mne-icalabel`)."
            ) from None
        with warnings.catch_warnings():  # its advice on filtering/reference is logged below
            warnings.simplefilter("ignore", RuntimeWarning)
            out = label_components(fit_raw, ica, method="iclabel")
        proba, labels = np.asarray(out["y_pred_proba"]), list(out["labels"])
        report["ica_labels"] = [[lab, float(p)] for lab, p in zip(labels, proba, strict=True)]
        exclude = [
            i
            for i, (p, lab) in enumerate(zip(proba, labels, strict=True))
            if lab in ica_config.exclude_labels and p > ica_config.threshold
        ]
    else:
        eog = list(ica_config.eog_channels or [])
        if eog:
            _check_names("ica.eog_channels", eog, raw.ch_names, "the recording")
        elif not len(mne.pick_types(raw.info, eog=True)):
            logger.warning(
                "ICA: no EOG channel and iclabel=False, so no component is removed; give "
                "ICAConfig(eog_channels=...) or iclabel=True"
            )
            return []
        exclude, _ = ica.find_bads_eog(
            fit_raw, ch_name=eog or None, measure="correlation", threshold=ica_config.threshold,
            verbose="error",
        )  # fmt: skip
        exclude = [int(i) for i in exclude]
    ica.exclude = exclude
    if exclude:
        logger.info("ICA: removing components %s", exclude)
        ica.apply(raw, verbose="error")
    return exclude


# ---------------------------------------------------------------------------- preprocessing
def preprocess_raw(
    raw, config: PreprocessConfig, *, copy: bool = True, return_report: bool = False
):
    """Apply the steps of ``config`` to a raw recording (order in the module docstring).

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording (loaded into memory if it is not).
    config : PreprocessConfig
    copy : bool
        Work on a copy (``False`` modifies ``raw`` in place, saving memory).
    return_report : bool
        Also return what was done: channels marked bad and why (``flat``, ``saturated``,
        ``noisy``), ``interpolated`` channels, removed ICA components (``ica_excluded``, and
        ``ica_labels``: ICLabel's [label, probability] per component), the sampling rate before
        and after (``sfreq_in``, ``sfreq_out``), remaining ``bads``.

    Returns
    -------
    raw : mne.io.BaseRaw
    report : dict
        Only with ``return_report=True``.
    """
    import mne

    check_type("raw", raw, mne.io.BaseRaw)
    check_type("config", config, PreprocessConfig)
    raw = raw.copy() if copy else raw
    if not raw.preload:
        raw.load_data(verbose="error")
    report: dict[str, Any] = {"sfreq_in": float(raw.info["sfreq"])}
    if config.picks is not None:
        _check_names("picks", list(config.picks), raw.ch_names, "the recording")
        raw.pick(list(config.picks))
    if config.montage is not None:
        _set_montage(raw, config.montage)
    if config.detect_bad:
        flat, saturated = _detect_flat_saturated(raw, config)
        _mark_bad(raw, flat, "flat")
        _mark_bad(raw, saturated, "saturated")
        report.update(flat=flat, saturated=saturated)
    nyq = raw.info["sfreq"] / 2
    if config.notch is not None:
        freqs = np.atleast_1d(np.asarray(config.notch, dtype=float))
        freqs = freqs[freqs < nyq]
        if freqs.size:
            raw.notch_filter(freqs, picks=_data_picks(raw), verbose="error")
    if config.l_freq is not None or config.h_freq is not None:
        h_freq = config.h_freq
        if h_freq is not None and h_freq >= nyq:
            raise BadInputError(
                f"h_freq={h_freq} Hz is not below the Nyquist frequency {nyq} Hz of the "
                f"recording (sfreq={raw.info['sfreq']} Hz); lower h_freq or set it to None."
            )
        kwargs = dict(config.filter_kwargs or {})
        try:
            raw.filter(config.l_freq, h_freq, picks=_data_picks(raw), verbose="error", **kwargs)
        except (TypeError, ValueError) as err:
            raise BadInputError(
                f"filter_kwargs={kwargs!r} were refused by raw.filter: {err}"
            ) from None
    if config.detect_bad:
        noisy = _detect_noisy(raw, config)
        _mark_bad(raw, noisy, "noisy")
        report["noisy"] = noisy
    report["interpolated"] = _interpolate(raw) if config.interpolate_bads else []
    if config.reference is not None:
        if not len(mne.pick_types(raw.info, eeg=True)):
            raise BadInputError(
                "reference: the recording has no EEG channel to re-reference; set "
                "reference=None for MEG."
            )
        ref = "average" if config.reference == "average" else list(config.reference)
        if ref != "average":
            _check_names("reference", ref, raw.ch_names, "the recording")
        raw.set_eeg_reference(ref, projection=False, verbose="error")
    report["ica_excluded"] = _apply_ica(raw, config.ica, report) if config.ica is not None else []
    if config.sfreq is not None and not math.isclose(config.sfreq, raw.info["sfreq"]):
        raw.resample(config.sfreq, verbose="error")
    report["sfreq_out"] = float(raw.info["sfreq"])
    report["bads"] = list(raw.info["bads"])
    return (raw, report) if return_report else raw


# ---------------------------------------------------------------------------- scaling
def robust_scale(
    data: np.ndarray,
    clamp: float | None = 20.0,
    *,
    center: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Scale each channel by its median and interquartile range, then clamp.

    The same numbers as ``sklearn.preprocessing.RobustScaler`` fitted on the samples of each
    channel (a zero IQR scales by 1, as sklearn does), followed by ``clip(-clamp, clamp)``.

    Parameters
    ----------
    data : ndarray of shape (n_channels, n_times) or (n_epochs, n_channels, n_times)
    clamp : float | None
        Clip to ``±clamp`` after scaling (``None``: no clipping).
    center, scale : ndarray of shape (n_channels,) | None
        Statistics fitted elsewhere (e.g. on the whole recording); default: fit on ``data``.

    Returns
    -------
    scaled : ndarray, same shape as ``data``, float32
    """
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise BadInputError(
            f"data must be (n_channels, n_times) or (n_epochs, n_channels, n_times), got shape "
            f"{data.shape}."
        )
    if clamp is not None and not (_is_number(clamp) and clamp > 0):
        raise BadInputError(f"clamp must be a positive number or None, got {clamp!r}.")
    if center is None or scale is None:
        center, scale = _fit_robust(np.moveaxis(data, -2, 0).reshape(data.shape[-2], -1))
    n_ch = data.shape[-2]
    center = np.asarray(center, dtype=np.float64).reshape(-1)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    if center.size != n_ch or scale.size != n_ch:
        raise BadInputError(
            f"center and scale need one value per channel ({n_ch}), got {center.size} and "
            f"{scale.size}."
        )
    out = ((data - center[:, None]) / scale[:, None]).astype(np.float32)
    if clamp is not None:
        np.clip(out, -clamp, clamp, out=out)
    return out


def _fit_robust(rows) -> tuple[np.ndarray, np.ndarray]:
    """Median and IQR of each row (an array or a callable ``i -> row``)."""
    n = len(rows)
    center, scale = np.empty(n), np.empty(n)
    for i in range(n):
        q25, q50, q75 = np.percentile(rows[i], [25, 50, 75])
        center[i], scale[i] = q50, q75 - q25
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0  # sklearn's _handle_zeros_in_scale
    return center, scale


# ---------------------------------------------------------------------------- epochs
def _events_from_raw(raw) -> tuple[np.ndarray, dict]:
    import mne

    if len(raw.annotations):
        events, event_id = mne.events_from_annotations(raw, verbose="error")
        return events, event_id
    stim = mne.pick_types(raw.info, meg=False, stim=True)
    if len(stim):
        events = mne.find_events(raw, shortest_event=1, verbose="error")
        return events, {str(c): int(c) for c in np.unique(events[:, 2])}
    return np.empty((0, 3), dtype=np.int64), {}


def _check_events(raw, events: np.ndarray, where: str) -> np.ndarray:
    events = np.asarray(events)
    if events.ndim != 2 or events.shape[1] != 3 or events.shape[0] == 0:
        hint = (
            " No events were found in the recording (no annotations, no stim channel): pass "
            "events explicitly."
            if events.size == 0
            else ""
        )
        raise BadInputError(
            f"events of {where} must be an (n_events, 3) integer array with at least one "
            f"event, got shape {events.shape}.{hint}"
        )
    events = events.astype(np.int64)
    first, last = raw.first_samp, raw.last_samp
    outside = (events[:, 0] < first) | (events[:, 0] > last)
    if outside.any():
        bad = int(events[np.flatnonzero(outside)[0], 0])
        raise BadInputError(
            f"{int(outside.sum())} event(s) of {where} lie outside the recording: first at "
            f"sample {bad}, but the recording spans samples {first} to {last} "
            f"({raw.n_times} samples, {raw.times[-1]:.3f} s at {raw.info['sfreq']} Hz). Are the "
            "events in samples of this recording (after resampling)?"
        )
    return events


def _select_events(events: np.ndarray, event_id: dict | None, where: str):
    codes = np.unique(events[:, 2])
    if event_id is None:
        return np.ones(len(events), dtype=bool), {str(int(c)): int(c) for c in codes}
    check_type("event_id", event_id, dict)
    missing = {k: v for k, v in event_id.items() if v not in codes}
    if missing:
        raise BadInputError(
            f"event_id: the codes {missing} never occur in the events of {where} (codes present: "
            f"{codes.tolist()})."
        )
    return np.isin(events[:, 2], list(event_id.values())), dict(event_id)


def make_epochs(
    raw,
    events: np.ndarray | None = None,
    config: PreprocessConfig | None = None,
    *,
    event_id: dict | None = None,
):
    """Cut epochs around events, baseline-correct, robust-scale and clamp.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        A preprocessed recording (:func:`preprocess_raw`), loaded in memory.
    events : ndarray of shape (n_events, 3) | None
        mne events (sample, previous value, code) in samples of ``raw``; ``None`` takes them
        from the annotations, else from the stim channel.
    config : PreprocessConfig | None
        ``tmin``, ``tmax``, ``baseline``, ``robust_scale``, ``clamp`` are used.
    event_id : dict of str to int | None
        Keep only these event codes (and name them); ``None`` keeps every code.

    Returns
    -------
    data : ndarray of shape (n_epochs, n_channels, n_times), float32
        Every data channel (bad channels that were not interpolated included; see
        ``raw.info['bads']``).
    times : ndarray of shape (n_times,)
        Seconds relative to the event.
    metadata : pandas.DataFrame
        One row per epoch: ``event_index`` (row in ``events``), ``sample``, ``onset`` (s),
        ``event_code``, ``event``.

    Notes
    -----
    With ``robust_scale``, the median and IQR of each channel are fitted on the whole
    recording; epochs are scaled, then baseline-corrected, then clamped (the order of
    Défossez et al.). Windows that run past either end of the recording are dropped with a
    warning.
    """
    blocks = list(iter_epoch_blocks(raw, events, config, event_id=event_id))
    import pandas as pd

    if not blocks:  # pragma: no cover - iter_epoch_blocks raises first
        raise BadInputError("make_epochs: no epoch could be cut.")
    data = np.concatenate([b[0] for b in blocks])
    times = blocks[0][1]
    metadata = pd.concat([b[2] for b in blocks], ignore_index=True)
    return data, times, metadata


def iter_epoch_blocks(
    raw,
    events: np.ndarray | None = None,
    config: PreprocessConfig | None = None,
    *,
    event_id: dict | None = None,
    block_bytes: int = 64 * 2**20,
    where: str = "the recording",
):
    """Yield ``(data, times, metadata)`` blocks of epochs, each under ``block_bytes``.

    Same arguments and results as :func:`make_epochs`, cut into blocks of whole epochs so
    that a long recording never needs all its epochs in memory at once.
    """
    import mne
    import pandas as pd
    from mne.baseline import rescale

    check_type("raw", raw, mne.io.BaseRaw)
    config = (
        PreprocessConfig() if config is None else check_type("config", config, PreprocessConfig)
    )
    if not raw.preload:
        raw.load_data(verbose="error")
    names = None
    if events is None:
        events, names = _events_from_raw(raw)
        if event_id is None and names:
            event_id = names
    events = _check_events(raw, events, where)
    keep, event_id = _select_events(events, event_id, where)
    index = np.flatnonzero(keep)
    events = events[keep]
    sfreq = raw.info["sfreq"]
    start = events[:, 0] + int(round(config.tmin * sfreq))
    stop = events[:, 0] + int(round(config.tmax * sfreq))
    inside = (start >= raw.first_samp) & (stop <= raw.last_samp)
    if not inside.all():
        logger.warning(
            "%s: dropping %d of %d epochs whose window [%s, %s] s runs past the recording",
            where, int((~inside).sum()), len(events), config.tmin, config.tmax,
        )  # fmt: skip
        events, index = events[inside], index[inside]
    if not len(events):
        raise BadInputError(
            f"no epoch of {where} fits in the recording with tmin={config.tmin}, "
            f"tmax={config.tmax}."
        )
    picks = _data_picks(raw)
    epochs = mne.Epochs(
        raw, events, event_id=event_id, tmin=config.tmin, tmax=config.tmax, baseline=None,
        picks=picks, preload=False, reject_by_annotation=False, event_repeated="drop",
        on_missing="ignore", verbose="error",
    )  # fmt: skip
    epochs.drop_bad(verbose="error")
    kept, index = events[epochs.selection], index[epochs.selection]
    if len(kept) < len(events):
        logger.warning("%s: %d epochs dropped by mne (repeated event samples)", where,
                       len(events) - len(kept))  # fmt: skip
    code_to_name = {v: k for k, v in event_id.items()}
    times = epochs.times.copy()
    center = scale = None
    if config.robust_scale:
        center, scale = _fit_robust(_RowReader(raw, picks))
    per_epoch = len(picks) * len(times) * 8
    step = max(1, int(block_bytes) // max(per_epoch, 1))
    for s in range(0, len(epochs), step):
        data = epochs.get_data(item=slice(s, s + step), copy=True, verbose="error")
        if center is not None:
            data = (data - center[:, None]) / scale[:, None]
        if config.baseline is not None:
            data = rescale(data, times, tuple(config.baseline), mode="mean", copy=False,
                           verbose="error")  # fmt: skip
        data = data.astype(np.float32)
        if config.clamp is not None and config.robust_scale:
            np.clip(data, -config.clamp, config.clamp, out=data)
        ev = kept[s : s + step]
        meta = pd.DataFrame(
            {
                "event_index": index[s : s + step].astype(np.int64),
                "sample": ev[:, 0].astype(np.int64),
                "onset": (ev[:, 0] - raw.first_samp) / sfreq,
                "event_code": ev[:, 2].astype(np.int64),
                "event": [code_to_name.get(int(c), str(int(c))) for c in ev[:, 2]],
            }
        )
        yield data, times, meta


class _RowReader:
    """``rows[i]`` is channel ``picks[i]`` of a loaded raw, without copying all channels."""

    def __init__(self, raw, picks):
        self.raw, self.picks = raw, list(picks)

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.raw._data[self.picks[i]]
