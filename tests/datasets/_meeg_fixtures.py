"""Small EEG/MEG datasets written in the native layouts of THINGS-EEG2, THINGS-MEG and MASC.

Every builder returns the arrays it wrote so that tests compare the adapters' output with
these independent ground truths.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- THINGS-EEG2

#: Fixture sizes: 3 training concepts x 2 images, 4 test concepts x 1 image.
EEG2_TRAIN_CONCEPTS = ("aardvark", "abacus", "accordion")
EEG2_IMAGES_PER_CONCEPT = 2
EEG2_TEST_CONCEPTS = ("banana", "cat", "dog", "eagle")
EEG2_N_TRAIN = len(EEG2_TRAIN_CONCEPTS) * EEG2_IMAGES_PER_CONCEPT
EEG2_N_TEST = len(EEG2_TEST_CONCEPTS)


def small_things_eeg2_manifest(
    folder: Path, *, n_train: int = EEG2_N_TRAIN, n_test: int = EEG2_N_TEST
) -> Path:
    """Copy of data_manifests/things_eeg2.yaml whose expected counts fit the fixture.

    Point ``BDS_MANIFEST_DIR`` at the returned folder: its manifests win over the repo's.
    """
    data = yaml.safe_load((REPO_ROOT / "data_manifests" / "things_eeg2.yaml").read_text())
    data["expected"]["conditions"] = {"training": n_train, "test": n_test}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "things_eeg2.yaml").write_text(yaml.safe_dump(data))
    return folder


def make_eeg2_image_set(root: Path, *, test_concepts=EEG2_TEST_CONCEPTS) -> dict:
    """``image_set/{training,test}_images/<NNNNN_concept>/<img>.jpg`` (empty files)."""
    out = {}
    for part, concepts, per in (
        ("training", EEG2_TRAIN_CONCEPTS, EEG2_IMAGES_PER_CONCEPT),
        ("test", test_concepts, 1),
    ):
        names = []
        # folders created in reverse order so that listing order is not sorted order
        for i, concept in reversed(list(enumerate(concepts))):
            folder = root / "image_set" / f"{part}_images" / f"{i + 1:05d}_{concept}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in reversed(range(per)):
                img = folder / f"{concept}_{k + 1:02d}{'b' if k % 2 else 's'}.jpg"
                img.write_bytes(b"\xff\xd8\xff")
        for i, concept in enumerate(concepts):
            for k in range(per):
                names.append(
                    f"{part}_images/{i + 1:05d}_{concept}/{concept}_{k + 1:02d}"
                    f"{'b' if k % 2 else 's'}.jpg"
                )
        out[part] = sorted(names)
    return out


def make_things_eeg2(
    root: Path,
    subject: int = 1,
    *,
    variant: str = "official",
    test_reps: int = 80,
    partitions=("training", "test"),
    seed: int = 0,
) -> dict:
    """Write preprocessed files (and the image set) for one subject; return the arrays."""
    rng = np.random.default_rng(seed)
    if variant == "official":
        n_ch, n_t = 17, 100
        times = np.round(np.arange(-0.2, 0.8, 0.01), 2)
        folder = root / "eeg_dataset" / "preprocessed_data" / f"sub-{subject:02d}"
    else:
        n_ch, n_t = 63, 250
        times = np.round(np.arange(-0.2, 1.0, 0.004), 3)  # 300 entries, data 0-1 s
        folder = root / "Preprocessed_data_250Hz" / f"sub-{subject:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    ch_names = [f"P{i}" for i in range(n_ch // 2)] + [f"O{i}" for i in range(n_ch - n_ch // 2)]
    out = {"ch_names": ch_names, "times": times, "images": make_eeg2_image_set(root)}
    for part in partitions:
        n_cond = EEG2_N_TRAIN if part == "training" else EEG2_N_TEST
        n_rep = 4 if part == "training" else test_reps
        data = rng.standard_normal((n_cond, n_rep, n_ch, n_t))
        obj = {"preprocessed_eeg_data": data, "ch_names": ch_names, "times": times}
        path = folder / f"preprocessed_eeg_{part}.npy"
        if variant == "official":
            np.save(path, obj)
        else:
            with open(path, "wb") as f:
                pickle.dump(obj, f, protocol=4)
        out[part] = data
        out[f"{part}_path"] = path
    return out


def make_things_eeg2_raw(
    root: Path, subject: int = 1, session: int = 1, partition: str = "test"
) -> dict:
    """A ``raw_eeg_{partition}.npy`` dict: 4 EEG channels + stim at 1000 Hz, 3 s."""
    rng = np.random.default_rng(1)
    sfreq, n = 1000, 3000
    eeg = rng.standard_normal((4, n)) * 1e-5
    stim = np.zeros((1, n))
    onsets = np.array([200, 700, 1200, 1700, 2200])
    values = np.array([3, 1, 99999, 3, 2])
    stim[0, onsets] = values
    folder = root / "eeg_dataset" / "raw_data" / f"sub-{subject:02d}" / f"ses-{session:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    obj = {
        "raw_eeg_data": np.concatenate([eeg, stim]),
        "ch_names": ["Fp1", "Oz", "Pz", "O1", "stim"],
        "ch_types": ["eeg"] * 4 + ["stim"],
        "sfreq": sfreq,
        "highpass": 0.01,
        "lowpass": 100,
    }
    path = folder / f"raw_eeg_{partition}.npy"
    np.save(path, obj)
    return {"path": path, "eeg": eeg, "onsets": onsets, "values": values, "obj": obj}


# --------------------------------------------------------------------------- THINGS-MEG


def make_things_meg_epochs(root: Path, subject: int = 1, seed: int = 0) -> dict:
    """``derivatives/preprocessed/preprocessed_P{n}-epo.fif`` with THINGS-data metadata.

    2 sessions x 2 runs; per run: 3 ``exp`` images (each shown once overall), 2 ``test``
    images (shown in every run) and 1 catch trial.
    """
    import mne
    import pandas as pd

    rng = np.random.default_rng(seed)
    ch_names = ["MLC11-1609", "MLO11-1609", "MRO12-1609", "MRT21-1609", "MZO01-1609"]
    info = mne.create_info(ch_names, 200.0, "mag")
    rows = []
    exp_counter = 0
    for ses in (1, 2):
        for run in (1, 2):
            for _ in range(3):
                concept = ("zebra", "apple", "kite")[exp_counter % 3]
                rows.append(
                    (
                        "exp",
                        ses,
                        run,
                        exp_counter % 3 + 10,
                        f"images_meg/{concept}/{concept}_{exp_counter:02d}s.jpg",
                    )
                )
                exp_counter += 1
            rows.append(("test", ses, run, 1, "images_test_meg/bird/bird_01b.jpg"))
            rows.append(("catch", ses, run, 0, "images_catch_meg/catch_01.jpg"))
            rows.append(("test", ses, run, 2, "images_test_meg/cake/cake_02s.jpg"))
    meta = pd.DataFrame(
        rows, columns=["trial_type", "session_nr", "run_nr", "things_category_nr", "image_path"]
    )
    n = len(meta)
    data = rng.standard_normal((n, len(ch_names), 21)) * 1e-12
    events = np.column_stack([np.arange(n) * 300, np.zeros(n, int), np.arange(1, n + 1)])
    epochs = mne.EpochsArray(data, info, events=events, tmin=-0.05, metadata=meta, verbose=False)
    folder = root / "derivatives" / "preprocessed"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"preprocessed_P{subject}-epo.fif"
    epochs.save(path, overwrite=True, verbose=False)
    return {"path": path, "data": data, "metadata": meta, "ch_names": ch_names}


def _meg_raw(n_ch: int, sfreq: float, seconds: float, seed: int, *, stim: bool = True):
    import mne

    rng = np.random.default_rng(seed)
    names = [f"MEG{i:03d}" for i in range(n_ch)]
    types = ["mag"] * n_ch
    if stim:
        names.append("UPPT001")
        types.append("stim")
    n = int(seconds * sfreq)
    data = rng.standard_normal((len(names), n)) * 1e-12
    if stim:
        data[-1] = 0
    raw = mne.io.RawArray(data, mne.create_info(names, sfreq, types), verbose=False)
    raw.set_meas_date(None)
    return raw


def make_things_meg_bids(root: Path, subject: int = 1, sessions=(1, 2), runs=(1, 2)) -> dict:
    """A BIDS tree ``sub-BIGMEG{n}/ses-SS/meg/`` of FIF runs and THINGS-style events.tsv.

    The events.tsv columns, and ``N/A`` for catch trials, follow ds004212's own files.

    The real recordings are CTF ``.ds`` folders, which MNE cannot write; the fixture uses
    FIF through ``mne_bids.write_raw_bids``, which the same reader path handles.
    """
    import mne_bids
    import pandas as pd

    out = {}
    for ses in sessions:
        for run in runs:
            raw = _meg_raw(3, 120.0, 10.0, seed=ses * 10 + run)
            bp = mne_bids.BIDSPath(
                subject=f"BIGMEG{subject}",
                session=f"{ses:02d}",
                task="main",
                run=f"{run:02d}",
                datatype="meg",
                root=root,
            )
            with warnings.catch_warnings():  # "No events found": events.tsv is ours
                warnings.simplefilter("ignore", RuntimeWarning)
                mne_bids.write_raw_bids(
                    raw, bp, format="FIF", allow_preload=True, overwrite=True, verbose=False
                )
            sample = np.array([110, 250, 400, 555]) + run
            value = [17.0 + ses, np.nan, 4001.0, 22.0]
            table = pd.DataFrame(
                {
                    "onset": sample / 120.0,
                    "duration": 0.5,
                    "trial_type": ["exp", "catch", "exp", "test"],
                    "things_category_nr": [3.0, np.nan, 280.0, 2.0],
                    "value": value,
                    "sample": sample,
                }
            )
            tsv = Path(str(bp.copy().update(suffix="events", extension=".tsv")))
            table.to_csv(tsv, sep="\t", index=False, na_rep="N/A")  # as ds004212 writes it
            out[(ses, run)] = {"sample": sample, "value": value, "events_tsv": tsv}
    return out


# --------------------------------------------------------------------------- MEG-MASC

MASC_WORDS = [
    # (onset s, word, start within the sound)
    (1.0, "tara", 0.05),
    (1.6, "was", 0.65),
    (2.3, "tara", 1.35),
    (3.1, "home", 2.15),
    (9.7, "late", 8.75),  # its window [9.5, 10.1] s ends after the 10 s recording
]


def masc_trial_types() -> list[tuple[float, float, str]]:
    """(onset, duration, trial_type dict literal) rows in MEG-MASC's style."""
    rows = [
        (
            0.95,
            9.0,
            str(
                {"kind": "sound", "sound": "Stimuli/Audio/LW1.0.WAV", "story": "lw1", "start": 0.0}
            ),
        )
    ]
    for i, (onset, word, start) in enumerate(MASC_WORDS):
        common = {
            "story": "lw1",
            "sound": "stimuli/audio/lw1.0.wav",
            "pronounced": 1.0,
            "word_index": i,
        }
        rows.append((onset, 0.3, str({"kind": "word", "word": word, "start": start, **common})))
        rows.append(
            (
                onset,
                0.1,
                str({"kind": "phoneme", "phoneme": f"{word[0]}_B", "start": start, **common}),
            )
        )
        rows.append(
            (
                onset + 0.1,
                0.1,
                str({"kind": "phoneme", "phoneme": f"{word[1]}_I", "start": start + 0.1, **common}),
            )
        )
    return rows


def write_masc_events(path: Path, sfreq: float = 100.0) -> Path:
    import pandas as pd

    rows = masc_trial_types()
    table = pd.DataFrame(
        {
            "onset": [r[0] for r in rows],
            "duration": [r[1] for r in rows],
            "trial_type": [r[2] for r in rows],
            "value": 0,
            "sample": [int(round(r[0] * sfreq)) for r in rows],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False)
    return path


def make_masc_bids(root: Path, subject: int = 1, recordings=(("0", "0"), ("1", "0"))) -> dict:
    """MEG-MASC BIDS root with FIF recordings (real data: KIT ``.con``) and dict events."""
    import mne_bids

    out = {}
    for ses, task in recordings:
        raw = _meg_raw(4, 100.0, 10.0, seed=int(ses) * 4 + int(task), stim=False)
        bp = mne_bids.BIDSPath(
            subject=f"{subject:02d}", session=ses, task=task, datatype="meg", root=root
        )
        with warnings.catch_warnings():  # "No events found": events.tsv is ours
            warnings.simplefilter("ignore", RuntimeWarning)
            mne_bids.write_raw_bids(
                raw, bp, format="FIF", allow_preload=True, overwrite=True, verbose=False
            )
        tsv = Path(str(bp.copy().update(suffix="events", extension=".tsv")))
        write_masc_events(tsv)
        out[(ses, task)] = {"raw": raw, "events_tsv": tsv}
    return out


# ------------------------------------------------- pipelines: recordings with a known signal


def _pattern_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field (uint8, size x size x 3)."""
    from PIL import Image

    coarse = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))


def tiny_clip_embeddings(images: np.ndarray) -> np.ndarray:
    """``embeds`` of the tiny random OpenCLIP extractor, the one the test pipelines use."""
    from braindecode_suite.features import make_extractor

    return make_extractor("open_clip_image", model_name="tiny").transform(images)["embeds"]


def make_things_eeg2_signal(
    root: Path,
    manifest_dir: Path,
    *,
    subjects=(1, 2, 3),
    n_train_concepts: int = 40,
    images_per_concept: int = 2,
    n_test_concepts: int = 20,
    n_reps: int = 4,
    snr: float = 0.5,
    image_size: int = 32,
    seed: int = 0,
) -> dict:
    """THINGS-EEG2 in its native layout whose EEG carries the images' tiny-CLIP embeddings.

    Images are PNG colour fields in ``image_set/``; EEG (17 channels x 100 samples, official
    variant) = spatial patterns x ERP waveforms driven linearly by each image's embedding
    (:func:`~braindecode_suite.datasets.make_synthetic_meeg`) + noise, one subject mixing
    each. Training and test concepts are disjoint. ``manifest_dir`` receives a manifest
    whose expected counts fit (point ``BDS_MANIFEST_DIR`` at it).
    """
    from PIL import Image

    from braindecode_suite.datasets import make_synthetic_meeg

    rng = np.random.default_rng(seed)
    images = []
    for part, prefix, n_concepts, per in (
        ("training", "train", n_train_concepts, images_per_concept),
        ("test", "test", n_test_concepts, 1),
    ):
        for i in range(n_concepts):
            concept = f"{prefix}concept{i:03d}"
            folder = root / "image_set" / f"{part}_images" / f"{i + 1:05d}_{concept}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per):
                img = _pattern_image(rng, image_size)
                Image.fromarray(img).save(folder / f"{concept}_{k + 1:02d}s.png")
                images.append(img)
    n_train = n_train_concepts * images_per_concept
    emb = tiny_clip_embeddings(np.stack(images))
    trials, _ = make_synthetic_meeg(
        n_subjects=len(subjects), n_concepts_train=n_train, n_concepts_test=n_test_concepts,
        n_reps=n_reps, n_channels=17, n_times=100, sfreq=100.0, snr=snr, seed=seed,
        embeddings=emb, tmin=-0.2,
    )  # fmt: skip
    ch_names = [f"P{i}" for i in range(8)] + [f"O{i}" for i in range(9)]
    times = np.round(np.arange(-0.2, 0.8, 0.01), 2)
    for s, t in zip(subjects, trials, strict=True):
        data = t.X.reshape(n_train + n_test_concepts, n_reps, 17, 100)
        folder = root / "eeg_dataset" / "preprocessed_data" / f"sub-{s:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for part, block in (("training", data[:n_train]), ("test", data[n_train:])):
            obj = {"preprocessed_eeg_data": block, "ch_names": ch_names, "times": times}
            np.save(folder / f"preprocessed_eeg_{part}.npy", obj)
    manifest = yaml.safe_load((REPO_ROOT / "data_manifests" / "things_eeg2.yaml").read_text())
    manifest["expected"]["conditions"] = {"training": n_train, "test": n_test_concepts}
    manifest["expected"]["repetitions"] = {"training": n_reps, "test": n_reps}
    manifest_dir.mkdir(parents=True, exist_ok=True)
    (manifest_dir / "things_eeg2.yaml").write_text(yaml.safe_dump(manifest))
    return {"embeddings": emb, "n_train": n_train, "n_test": n_test_concepts}


def make_things_meg_signal(root: Path, *, subjects=(1, 2), n_train: int = 40, n_test: int = 10,
                           n_test_reps: int = 2, image_size: int = 32, seed: int = 0) -> dict:  # fmt: skip
    """THINGS-MEG derivatives epochs + ``images/<concept>/<file>`` that carry the images' signal.

    ``image_path`` in the metadata is ``images_meg/<concept>/<file>`` (``exp``) or
    ``images_test_meg/<concept>/<file>`` (``test``, shown ``n_test_reps`` times, once per
    session), as in THINGS-data; one catch trial per session is dropped by the loader.
    """
    import mne
    import pandas as pd
    from PIL import Image

    from braindecode_suite.datasets import make_synthetic_meeg

    rng = np.random.default_rng(seed)
    paths, images = [], []
    for i in range(n_train + n_test):
        concept = f"concept{i:03d}"
        name = f"{concept}_01{'b' if i % 2 else 's'}.jpg"
        paths.append(f"{'images_meg' if i < n_train else 'images_test_meg'}/{concept}/{name}")
        img = _pattern_image(rng, image_size)
        (root / "images" / concept).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "images" / concept / name, quality=95)
        images.append(np.asarray(Image.open(root / "images" / concept / name).convert("RGB")))
    emb = tiny_clip_embeddings(np.stack(images))
    trials, _ = make_synthetic_meeg(
        n_subjects=len(subjects), n_concepts_train=n_train, n_concepts_test=n_test,
        n_reps=n_test_reps, n_channels=6, n_times=60, sfreq=200.0, snr=1.0, seed=seed,
        embeddings=emb, tmin=-0.05,
    )  # fmt: skip
    ch_names = [f"MLO{i:02d}-1609" for i in range(6)]
    out = {"embeddings": emb, "paths": paths}
    for s, t in zip(subjects, trials, strict=True):
        keep = (t.split == "test") | (t.repeat == 0)  # exp images shown once
        X, ids, rep = t.X[keep], t.stimulus_ids[keep], t.repeat[keep]
        rows = [("exp" if i < n_train else "test", int(r) + 1, 1, i + 1, paths[i])
                for i, r in zip(ids, rep, strict=True)]  # fmt: skip
        catch = np.zeros((n_test_reps, 6, 60))
        rows += [
            ("catch", r + 1, 1, 0, "images_catch_meg/catch_01.jpg") for r in range(n_test_reps)
        ]
        data = np.concatenate([X, catch]) * 1e-12
        meta = pd.DataFrame(rows, columns=["trial_type", "session_nr", "run_nr",
                                           "things_category_nr", "image_path"])  # fmt: skip
        n = len(meta)
        events = np.column_stack([np.arange(n) * 300, np.zeros(n, int), np.ones(n, int)])
        epochs = mne.EpochsArray(
            data, mne.create_info(ch_names, 200.0, "mag"), events=events, tmin=-0.05,
            metadata=meta, verbose=False,
        )  # fmt: skip
        folder = root / "derivatives" / "preprocessed"
        folder.mkdir(parents=True, exist_ok=True)
        epochs.save(folder / f"preprocessed_P{s}-epo.fif", overwrite=True, verbose=False)
    return out


def make_masc_signal(
    root: Path,
    *,
    subjects=(1, 2),
    n_words: int = 120,
    spacing: float = 0.8,
    sfreq: float = 100.0,
    audio_sr: int = 8000,
    seed: int = 0,
) -> dict:
    """MEG-MASC BIDS root + ``stimuli/audio/lw1.wav`` whose MEG carries the tiny wav2vec latents.

    Words every ``spacing`` s from 1 s; each word's MEG window (-0.2 ... 0.6 s) carries the
    tiny-wav2vec latent of the audio window [onset - 0.2, onset + 0.6) s (the pipeline's),
    through spatial patterns x ERP waveforms, + noise; one recording (session 0, task 0) per
    subject, read through mne-bids as the real KIT files are.
    """
    import mne
    import mne_bids
    import pandas as pd
    import soundfile

    from braindecode_suite.datasets import make_synthetic_meeg
    from braindecode_suite.features import segment_targets

    rng = np.random.default_rng(seed)
    duration = 1.0 + n_words * spacing + 2.0
    t = np.arange(int(duration * audio_sr)) / audio_sr
    # a "voice": random syllable-rate amplitude and pitch per word
    wav = np.zeros_like(t)
    onsets = 1.0 + spacing * np.arange(n_words)
    for on in onsets:
        m = (t >= on) & (t < on + 0.5)
        f0 = rng.uniform(150, 1500)
        wav[m] = np.sin(2 * np.pi * f0 * t[m]) * rng.uniform(0.2, 1.0) + 0.3 * rng.standard_normal(
            m.sum()
        )
    audio = root / "stimuli" / "audio" / "lw1.wav"
    audio.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(audio, (0.3 * wav).astype(np.float32), audio_sr)
    wav_read, _ = soundfile.read(audio, dtype="float32")
    lat = segment_targets(wav_read, audio_sr, np.maximum(onsets - 0.2, 0), duration=0.8,
                          model="tiny", device="cpu")  # fmt: skip
    n_half = n_words // 2
    trials, _ = make_synthetic_meeg(
        n_subjects=len(subjects), n_concepts_train=n_half, n_concepts_test=n_words - n_half,
        n_reps=1, n_channels=8, n_times=81, sfreq=sfreq, snr=1.0, seed=seed,
        embeddings=lat, tmin=-0.2,
    )  # fmt: skip
    n_samp = int(duration * sfreq)
    for s, tr in zip(subjects, trials, strict=True):
        data = 0.2 * rng.standard_normal((8, n_samp))
        for i, on in enumerate(onsets):
            start = int(round((on - 0.2) * sfreq))
            data[:, start : start + 81] += tr.X[i]
        raw = mne.io.RawArray(data * 1e-12, mne.create_info(
            [f"MEG{i:03d}" for i in range(8)], sfreq, "mag"), verbose=False)  # fmt: skip
        raw.set_meas_date(None)
        bp = mne_bids.BIDSPath(subject=f"{s:02d}", session="0", task="0", datatype="meg", root=root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mne_bids.write_raw_bids(raw, bp, format="FIF", allow_preload=True, overwrite=True,
                                    verbose=False)  # fmt: skip
        rows = []
        for i, on in enumerate(onsets):
            d = {"kind": "word", "word": f"w{i % 7}", "start": float(on), "story": "lw1",
                 "sound": "Stimuli/Audio/LW1.0.WAV", "pronounced": 1.0, "word_index": i}  # fmt: skip
            rows.append((float(on), 0.3, str(d)))
        table = pd.DataFrame({"onset": [r[0] for r in rows], "duration": [r[1] for r in rows],
                              "trial_type": [r[2] for r in rows], "value": 0,
                              "sample": [int(round(r[0] * sfreq)) for r in rows]})  # fmt: skip
        table.to_csv(Path(str(bp.copy().update(suffix="events", extension=".tsv"))), sep="\t",
                     index=False)  # fmt: skip
    return {"latents": lat, "onsets": onsets}
