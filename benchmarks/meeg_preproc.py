"""Benchmark M/EEG preprocessing into the epoch store against the same steps by hand in mne.

Generates a 64-channel EEG recording at 1 kHz (RawArray, standard 10-20 montage, an event
about every second), saves it as FIF, then in a fresh process each:

* ours: ``epochs_to_store`` with band-pass 0.1–40 Hz, notch 50 Hz, resample to 200 Hz,
  average reference, epochs −0.2–0.8 s with baseline, robust scaling + clamp 20 (plus the
  flat/saturated/noisy channel checks that are on by default);
* by hand: ``read_raw_fif`` → ``raw.filter`` → ``raw.notch_filter`` → ``raw.resample`` →
  ``set_eeg_reference`` → ``mne.Epochs(...).get_data()`` → sklearn ``RobustScaler`` fitted on
  the recording → baseline → clip, saved with ``np.save``.

Peak memory is the peak resident set size of each process (psutil, sampled every 20 ms).
Prints one table and the agreement of the two results.

    python benchmarks/meeg_preproc.py --minutes 60
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

L_FREQ, H_FREQ, NOTCH, SFREQ_OUT = 0.1, 40.0, 50.0, 200.0
TMIN, TMAX, CLAMP = -0.2, 0.8, 20.0


class PeakRSS:
    """Sample this process's resident memory in a thread; ``peak`` in bytes."""

    def __init__(self, interval=0.02):
        import psutil

        self._proc, self._interval = psutil.Process(), interval
        self.peak = self.start = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def make_recording(path: Path, minutes: float, n_channels: int = 64, sfreq: float = 1000.0):
    """Pink-ish noise + alpha + 50 Hz line noise + slow drift, in volts; events every ~1 s."""
    import mne

    rng = np.random.default_rng(0)
    n = int(minutes * 60 * sfreq)
    montage = mne.channels.make_standard_montage(
        "colin27_1020" if "colin27_1020" in mne.channels.get_builtin_montages() else "standard_1020"
    )
    names = [c for c in montage.ch_names if not c.startswith(("A", "M", "T3", "T4", "T5", "T6"))]
    names = names[:n_channels]
    info = mne.create_info(names + ["STI"], sfreq, ["eeg"] * len(names) + ["stim"])
    data = np.empty((len(names) + 1, n))
    t = np.arange(n) / sfreq
    for i in range(len(names)):  # channel by channel to keep memory at one copy
        x = np.cumsum(rng.standard_normal(n)) * 0.02
        x -= np.convolve(x, np.ones(1001) / 1001, mode="same")  # pinkish, no DC wander
        data[i] = 1e-6 * (
            5 * x
            + 3 * np.sin(2 * np.pi * 10 * t + i)
            + 2 * np.sin(2 * np.pi * 50 * t)
            + 20 * np.sin(2 * np.pi * 0.01 * t + i)
        )
    onsets = np.arange(int(1.0 * sfreq), n - int(1.5 * sfreq), int(sfreq))
    onsets = onsets + rng.integers(-100, 100, size=onsets.size)
    data[-1] = 0
    data[-1, onsets] = rng.integers(1, 5, size=onsets.size)
    raw = mne.io.RawArray(data, info, verbose="error")
    del data
    raw.set_montage(montage, on_missing="ignore", verbose="error")
    raw.save(path, overwrite=True, verbose="error")
    return len(names), onsets.size


def run_ours(fif: str, out: str, q):
    import mne  # noqa: F401 - imported before timing, as in run_by_hand

    from braindecode_suite.preprocessing import (
        EpochStore,
        PreprocessConfig,
        Recording,
        epochs_to_store,
    )

    with PeakRSS() as mem:
        t0 = time.perf_counter()
        cfg = PreprocessConfig(
            l_freq=L_FREQ, h_freq=H_FREQ, notch=NOTCH, sfreq=SFREQ_OUT, reference="average",
            tmin=TMIN, tmax=TMAX, baseline=(None, 0.0), robust_scale=True, clamp=CLAMP,
        )  # fmt: skip
        epochs_to_store(out, [Recording("rec", fif)], cfg)
        seconds = time.perf_counter() - t0
    X, _ = EpochStore(out).read("rec")
    np.save(out + ".npy", X)
    q.put({"seconds": seconds, "peak": mem.peak, "start": mem.start})


def run_by_hand(fif: str, out: str, q):
    import mne
    from sklearn.preprocessing import RobustScaler

    with PeakRSS() as mem:
        t0 = time.perf_counter()
        raw = mne.io.read_raw_fif(fif, preload=True, verbose="error")
        events = mne.find_events(raw, shortest_event=1, verbose="error")
        picks = mne.pick_types(raw.info, eeg=True)
        raw.filter(L_FREQ, H_FREQ, picks=picks, verbose="error")
        raw.notch_filter(NOTCH, picks=picks, verbose="error")
        raw, events = raw.resample(SFREQ_OUT, events=events, verbose="error")
        raw.set_eeg_reference("average", projection=False, verbose="error")
        scaler = RobustScaler().fit(raw.get_data(picks=picks).T)
        epochs = mne.Epochs(
            raw, events, tmin=TMIN, tmax=TMAX, baseline=None, picks=picks, preload=True,
            verbose="error",
        )  # fmt: skip
        X = epochs.get_data(copy=False)
        X = (X - scaler.center_[:, None]) / scaler.scale_[:, None]
        n_base = int(round(-TMIN * SFREQ_OUT)) + 1
        X -= X[..., :n_base].mean(axis=-1, keepdims=True)
        X = np.clip(X, -CLAMP, CLAMP).astype(np.float32)
        np.save(out, X)
        seconds = time.perf_counter() - t0
    q.put({"seconds": seconds, "peak": mem.peak, "start": mem.start})


def _in_process(fn, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="recording length")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        fif = str(Path(tmp) / "rec_raw.fif")
        t0 = time.perf_counter()
        n_ch, n_events = make_recording(Path(fif), args.minutes, args.channels)
        t_make = time.perf_counter() - t0
        mb_in = n_ch * args.minutes * 60 * 1000 * 8 / 2**20
        ours = _in_process(run_ours, fif, str(Path(tmp) / "store.h5"))
        hand = _in_process(run_by_hand, fif, str(Path(tmp) / "hand.npy"))
        X_ours = np.load(str(Path(tmp) / "store.h5") + ".npy")
        X_hand = np.load(str(Path(tmp) / "hand.npy"))

    print(
        f"recording: {n_ch} EEG channels, {args.minutes:g} min at 1000 Hz "
        f"({mb_in:.0f} MiB as float64), {n_events} events; generated and saved in {t_make:.1f} s"
    )
    header = f"{'method':<44}{'seconds':>9}{'peak RSS MiB':>14}{'above start MiB':>17}"
    print(header)
    print("-" * len(header))
    for name, r in (("ours: epochs_to_store (HDF5 store)", ours),
                    ("by hand: mne + sklearn RobustScaler (npy)", hand)):  # fmt: skip
        print(
            f"{name:<44}{r['seconds']:>9.1f}{r['peak'] / 2**20:>14.0f}"
            f"{(r['peak'] - r['start']) / 2**20:>17.0f}"
        )
    print(f"ours / by hand time: {ours['seconds'] / hand['seconds']:.2f}x")
    if X_ours.shape != X_hand.shape:
        print(f"agreement: shapes differ, ours {X_ours.shape} vs by hand {X_hand.shape}")
        return
    diff = np.abs(X_ours.astype(np.float64) - X_hand)
    r = np.corrcoef(X_ours.ravel(), X_hand.ravel())[0, 1]
    print(
        f"agreement: epochs {X_ours.shape}, max |diff| {diff.max():.2e}, mean |diff| "
        f"{diff.mean():.2e} (values in robust-scaled units), correlation {r:.6f}"
    )


if __name__ == "__main__":
    main()
