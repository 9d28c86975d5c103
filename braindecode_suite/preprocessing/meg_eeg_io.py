"""Reading EEG/MEG recordings with mne, their sensor description, and :class:`Recording`.

Part of :mod:`.meg_eeg` (which re-exports everything here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.validation import BadInputError, check_option, check_path, check_type

__all__ = ["READERS", "Recording", "read_bids", "read_raw", "sensor_info"]

#: File suffix → name of the mne reader used by :func:`read_raw`.
READERS = {
    ".fif": "read_raw_fif",
    ".fif.gz": "read_raw_fif",
    ".edf": "read_raw_edf",
    ".bdf": "read_raw_bdf",
    ".vhdr": "read_raw_brainvision",
    ".set": "read_raw_eeglab",
    ".ds": "read_raw_ctf",
}


# ---------------------------------------------------------------------------- reading
def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else path.suffix.lower()


def read_raw(path: str | os.PathLike, *, preload: bool = False, verbose: Any = "error"):
    """Read a raw M/EEG recording, choosing the mne reader from the file suffix.

    Parameters
    ----------
    path : str | PathLike
        ``.fif`` / ``.fif.gz`` (MNE/Elekta), ``.edf``, ``.bdf``, ``.vhdr`` (BrainVision),
        ``.set`` (EEGLAB) or a ``.ds`` folder (CTF). BIDS datasets: :func:`read_bids`.
    preload : bool
        Load the data into memory now (needed before filtering).
    verbose : bool | str | None
        Passed to the mne reader.

    Returns
    -------
    raw : mne.io.BaseRaw
    """
    import mne

    path = check_path("path", path)
    suffix = _suffix(path)
    if suffix not in READERS:
        raise BadInputError(
            f"path: cannot tell the format of {str(path)!r} from its suffix {suffix!r}; "
            f"supported suffixes are {sorted(READERS)} (BIDS folders: use read_bids)."
        )
    if suffix == ".ds" and not path.is_dir():
        raise BadInputError(f"path: a CTF recording is a '.ds' folder, {str(path)!r} is a file.")
    reader = getattr(mne.io, READERS[suffix])
    try:
        return reader(path, preload=preload, verbose=verbose)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise BadInputError(
            f"path: mne.io.{READERS[suffix]} could not read {str(path)!r} ({err})."
        ) from None


def read_bids(
    root: str | os.PathLike,
    subject: str,
    session: str | None = None,
    task: str | None = None,
    run: str | int | None = None,
    datatype: str = "eeg",
    *,
    verbose: Any = "error",
):
    """Read one recording of a BIDS dataset through mne-bids.

    Parameters
    ----------
    root : str | PathLike
        The BIDS root folder (holding ``dataset_description.json``).
    subject, session, task, run : str | None
        BIDS entities (without their ``sub-`` etc. prefixes).
    datatype : 'eeg' | 'meg' | 'ieeg'
    verbose : bool | str | None

    Returns
    -------
    raw : mne.io.BaseRaw
        With events as annotations, channel types and positions from the sidecars.
    """
    try:
        import mne_bids
    except ImportError:  # pragma: no cover - mne-bids is a dependency
        raise BadInputError(
            "read_bids needs mne-bids: install it with `pip install mne-bids`."
        ) from None
    root = check_path("root", root, kind="dir")
    check_option("datatype", datatype, ("eeg", "meg", "ieeg"))
    check_type("subject", subject, str)
    bids_path = mne_bids.BIDSPath(
        root=root,
        subject=subject,
        session=session,
        task=task,
        run=None if run is None else str(run),
        datatype=datatype,
    )
    matches = bids_path.match()
    readable = set(getattr(getattr(mne_bids, "config", None), "reader", {})) or {
        ".fif", ".vhdr", ".edf", ".bdf", ".set", ".ds", ".con", ".sqd"
    }  # fmt: skip
    matches = [m for m in matches if m.suffix == datatype and m.extension in readable]
    if not matches:
        raise BadInputError(
            f"read_bids: no {datatype} recording in {str(root)!r} matches subject={subject!r}, "
            f"session={session!r}, task={task!r}, run={run!r}."
        )
    if len(matches) > 1:
        names = [m.basename for m in matches]
        raise BadInputError(
            f"read_bids: {len(matches)} recordings match ({names}); give session, task and run "
            "to pick one."
        )
    return mne_bids.read_raw_bids(matches[0], verbose=verbose)


# ---------------------------------------------------------------------------- sensors
def sensor_info(info) -> dict:
    """JSON-able description of the sensors of a recording.

    Parameters
    ----------
    info : mne.Info

    Returns
    -------
    sensors : dict
        ``ch_names``, ``ch_types``, ``positions`` (x, y, z in metres or None per channel),
        ``orientations`` (the 9 coil-orientation numbers ``loc[3:12]`` for MEG channels, None
        otherwise), ``coil_types``, ``coord_frames``, ``units``, ``sfreq``, ``highpass``,
        ``lowpass``, ``line_freq``, ``bads``, ``device`` (``info['device_info']``: type, model,
        serial, site), ``dev_head_t`` (4×4 or None) and ``n_channels``.
    """
    import mne
    from mne.io.constants import FIFF

    check_type("info", info, mne.Info)
    frames = {
        FIFF.FIFFV_COORD_HEAD: "head",
        FIFF.FIFFV_COORD_DEVICE: "meg",
        FIFF.FIFFV_COORD_MRI: "mri",
        FIFF.FIFFV_COORD_UNKNOWN: "unknown",
    }
    positions, orientations, frames_out, coils, units = [], [], [], [], []
    for ch in info["chs"]:
        loc = np.asarray(ch["loc"], dtype=float)
        pos = loc[:3]
        positions.append(
            [float(v) for v in pos] if np.all(np.isfinite(pos)) and np.any(pos) else None
        )
        is_meg = ch["kind"] in (FIFF.FIFFV_MEG_CH, FIFF.FIFFV_REF_MEG_CH)
        ori = loc[3:12]
        orientations.append(
            [float(v) for v in ori] if is_meg and np.all(np.isfinite(ori)) else None
        )
        frames_out.append(frames.get(int(ch["coord_frame"]), str(int(ch["coord_frame"]))))
        coils.append(int(ch["coil_type"]))
        units.append(int(ch["unit"]))
    device = info.get("device_info") or {}
    trans = info.get("dev_head_t")
    return {
        "n_channels": len(info["ch_names"]),
        "ch_names": list(info["ch_names"]),
        "ch_types": list(info.get_channel_types()),
        "positions": positions,
        "orientations": orientations,
        "coil_types": coils,
        "coord_frames": frames_out,
        "units": units,
        "sfreq": float(info["sfreq"]),
        "highpass": float(info["highpass"]),
        "lowpass": float(info["lowpass"]),
        "line_freq": None if info["line_freq"] is None else float(info["line_freq"]),
        "bads": list(info["bads"]),
        "device": {k: str(v) for k, v in dict(device).items()},
        "dev_head_t": None if trans is None else np.asarray(trans["trans"]).tolist(),
    }


@dataclass
class Recording:
    """One recording to preprocess into an epoch store.

    Parameters
    ----------
    key : str
        Unique name in the store (no ``/``).
    source : str | PathLike | mne.io.BaseRaw | callable
        A file for :func:`read_raw`, a raw object, or a function returning one (called only
        when the recording is processed: streaming keeps one recording in memory).
    events : ndarray of shape (n_events, 3) | None
        In samples of the *source* recording (before resampling); ``None``: annotations or
        stim channel.
    event_id : dict | None
    stimulus_ids : ndarray of shape (n_events,) | None
        Stimulus of each event (default: the event code).
    subject, session, run : str
    """

    key: str
    source: Any
    events: np.ndarray | None = None
    event_id: dict | None = None
    stimulus_ids: np.ndarray | None = None
    subject: str = ""
    session: str = ""
    run: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        check_type("key", self.key, str)
        if not self.key or "/" in self.key:
            raise BadInputError(f"Recording key must be non-empty without '/', got {self.key!r}.")
        self.subject, self.session, self.run = str(self.subject), str(self.session), str(self.run)

    @classmethod
    def from_bids(cls, root, subject, session=None, task=None, run=None, datatype="eeg", **kw):
        """A recording read with :func:`read_bids` when processed; key from its entities."""
        parts = [f"sub-{subject}"]
        parts += [f"ses-{session}"] if session else []
        parts += [f"task-{task}"] if task else []
        parts += [f"run-{run}"] if run is not None else []

        def load():
            return read_bids(root, subject, session, task, run, datatype)

        return cls(
            key="_".join(parts), source=load, subject=subject, session=session or "",
            run="" if run is None else str(run), **kw,
        )  # fmt: skip

    def load(self):
        """Return the raw recording (reading it if needed)."""
        import mne

        src = self.source
        if isinstance(src, mne.io.BaseRaw):
            return src
        if callable(src):
            raw = src()
            check_type(f"Recording {self.key!r} source()", raw, mne.io.BaseRaw)
            return raw
        check_type(f"Recording {self.key!r} source", src, (str, os.PathLike))
        return read_raw(Path(src), preload=True)
