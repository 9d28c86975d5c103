"""Stages of the EEG/MEG routes: data, speech targets, contrastive decoders, identification.

- ``load_things_eeg2``, ``load_things_meg``: one or more subjects' epochs as ``trials``
  (X ``(n, n_channels, n_times)``, stimulus ids shared across subjects) and the stimulus
  images as an ``image_files`` record, so ``extract_features`` computes their CLIP embeddings.
- ``load_masc``: MEG-MASC word windows as ``trials`` (one stimulus = one audio segment, shared
  by every subject who heard it) and a ``segments`` record (sound file, onset, offset of each
  stimulus); ``speech_features`` turns the segments into wav2vec 2.0 latents (``features``).
- ``train_contrastive``: :class:`~braindecode_suite.models.meeg.BrainEncoder` trained with
  :func:`~braindecode_suite.models.meeg_training.fit_contrastive` within each subject or
  leave-one-subject-out; writes ``predictions`` (a FeatureStore whose field is the target key,
  read by ``reconstruct_unclip``) and zero-shot / segment identification ``metrics``.
- ``identification_report``: report.html of the identification metrics (no images needed).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ..datasets import (
    Trials,
    load_masc,
    load_things_eeg2,
    load_things_meg,
    masc_word_segments,
)
from ..evaluation import (
    PUBLISHED_MEEG,
    format_identification,
    segment_identification,
    write_report_html,
    zero_shot_identification,
)
from ..features import FeatureStore
from ..preprocessing import average_repeats, robust_scale
from ..utils.io import fingerprint_file, write_json_atomic
from ..utils.logging import logger
from ..utils.validation import BadInputError
from ._artifacts import load_trials, save_trials
from .base import Stage, StageConfig, register_stage
from .dataset_stages import _check_dir, _data_root, write_image_stimuli
from .report import provenance_statements
from .stages import _parse_target

__all__ = [
    "IdentificationReport",
    "LoadMASC",
    "LoadTHINGSEEG2",
    "LoadTHINGSMEG",
    "SpeechFeatures",
    "TrainContrastive",
    "combine_subjects",
]


# ----------------------------------------------------------------------------- helpers
def combine_subjects(parts: list[Trials]) -> Trials:
    """Stack the trials of several subjects on one stimulus index and common channels.

    Stimulus ids index the union of the subjects' ``stimulus_names`` (the first subject's in
    its order, then names new in later subjects; per-stimulus ``info`` arrays such as
    ``stimulus_concepts`` follow); channels are those every subject has, in the first
    subject's order.
    """
    if not parts:
        raise BadInputError("combine_subjects needs at least one Trials, got none.")
    names = list(dict.fromkeys(str(n) for t in parts for n in t.info["stimulus_names"]))
    index = {n: i for i, n in enumerate(names)}
    first = [str(c) for c in parts[0].info["ch_names"]]
    common = [c for c in first if all(c in set(map(str, t.info["ch_names"])) for t in parts)]
    if not common:
        raise BadInputError("The subjects share no channel name; they cannot be decoded together.")
    n_times = parts[0].X.shape[2]
    Xs, ids, per_stim = [], [], {}
    for t in parts:
        if t.X.shape[2] != n_times:
            raise BadInputError(
                f"subject {int(t.subject[0])} has {t.X.shape[2]} time samples per epoch, the "
                f"first subject {n_times}; use the same window and sampling rate for all."
            )
        ch = [str(c) for c in t.info["ch_names"]]
        Xs.append(t.X if ch == common else t.X[:, [ch.index(c) for c in common]])
        old = [index[str(n)] for n in t.info["stimulus_names"]]
        ids.append(np.asarray(old, dtype=np.int64)[t.stimulus_ids])
        for key, val in t.info.items():
            if key.startswith("stimulus_") and key != "stimulus_names":
                arr = np.asarray(val)
                if arr.shape[:1] == (len(old),):
                    per_stim.setdefault(key, np.empty(len(names), dtype=arr.dtype))[old] = arr
    if len(common) < len(first):
        logger.info("%d channel(s) missing in some subject were dropped", len(first) - len(common))
    info = {k: v for k, v in parts[0].info.items() if k not in per_stim}
    info.update(per_stim, stimulus_names=np.asarray(names), ch_names=common)
    info["files"] = {f"subject_{int(t.subject[0])}": t.info.get("files") for t in parts}
    return Trials(
        X=np.concatenate(Xs) if len(Xs) > 1 else Xs[0],
        stimulus_ids=np.concatenate(ids),
        split=np.concatenate([t.split for t in parts]),
        session=np.concatenate([t.session for t in parts]),
        repeat=np.concatenate([t.repeat for t in parts]),
        subject=np.concatenate([t.subject for t in parts]),
        info=info,
        run=np.concatenate([t.run for t in parts]),
    )


def _counts(ctx, trials: Trials) -> None:
    ctx.extra.update(
        n_trials=len(trials),
        epoch_shape=list(trials.X.shape[1:]),
        subjects=np.unique(trials.subject).tolist(),
        n_train=int(np.sum(trials.split == "train")),
        n_test=int(np.sum(trials.split == "test")),
    )


def _per_subject(parts: list[Trials], average_test: bool, average_train: bool) -> list[Trials]:
    """Repetition averaging within each subject (never across subjects)."""
    out = []
    for t in parts:
        if average_test and (t.split == "test").any():
            t = average_repeats(t, split="test")
        if average_train and (t.split == "train").any():
            t = average_repeats(t, split="train")
        out.append(t)
    return out


class _ImageEEGStage(Stage):
    """A multi-subject M/EEG image dataset: ``trials`` + ``image_files`` ``stimuli``."""

    writes = ("trials", "stimuli")
    dataset = ""
    root_means = ""
    how_to_get = ""

    def preflight(self):
        return _check_dir(self, "data_dir", self.config.data_dir, self.root_means) + _check_dir(
            self, "stimuli_dir", self.config.stimuli_dir, "the folder of the stimulus images"
        )

    def _load(self, root: Path) -> list[Trials]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _files(self, trials: Trials, stimuli_dir: Path) -> list[str | None]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _stimuli_dir(self, root: Path) -> Path:
        raise NotImplementedError  # pragma: no cover - abstract

    def run(self, ctx):
        c = self.config
        root = _data_root(self, ctx, self.root_means)
        parts = _per_subject(self._load(root), c.average_test_repeats, c.average_train_repeats)
        trials = combine_subjects(parts)
        save_trials(ctx.output("trials", "trials.h5"), trials)
        stim_dir = self._stimuli_dir(root).expanduser().resolve()
        files = self._files(trials, stim_dir)
        record = write_image_stimuli(
            ctx,
            self.name,
            self.dataset,
            trials,
            files,
            image_size=c.image_size,
            how_to_get=self.how_to_get,
            stimuli_dir=stim_dir,
        )
        _counts(ctx, trials)
        ctx.extra["n_stimulus_images_missing"] = record["n_missing"]


class _ImageEEGConfig(StageConfig):
    data_dir: str | None = None
    stimuli_dir: str | None = None
    image_size: int = Field(256, ge=16)
    average_test_repeats: bool = True
    average_train_repeats: bool = False


# ----------------------------------------------------------------------------- THINGS-EEG2
@register_stage
class LoadTHINGSEEG2(_ImageEEGStage):
    """THINGS-EEG2 preprocessed epochs of several subjects (:func:`load_things_eeg2`)."""

    kind = "load_things_eeg2"
    dataset = "things_eeg2"
    root_means = "the folder holding eeg_dataset/preprocessed_data/ (or Preprocessed_data_250Hz/)"
    how_to_get = (
        "Get image_set/ (training_images/, test_images/) from OSF project 3jk45 (osf.io/3jk45) "
        "into the data folder, or set stimuli_dir to that image_set folder."
    )

    class Config(_ImageEEGConfig):
        subjects: list[int] = Field(default_factory=lambda: [1], min_length=1)
        variant: Literal["official", "250hz"] = "official"

        @field_validator("subjects")
        @classmethod
        def _range(cls, v):
            if any(s < 1 or s > 10 for s in v) or len(set(v)) != len(v):
                raise ValueError("subjects must be distinct numbers in 1-10")
            return v

    def _stimuli_dir(self, root):
        return Path(self.config.stimuli_dir) if self.config.stimuli_dir else root / "image_set"

    def external_inputs(self, ctx):
        from ..datasets.things_eeg2 import _preprocessed_file

        root = _data_root(self, ctx, self.root_means)
        out = {}
        for s in self.config.subjects:
            for p in ("training", "test"):
                try:
                    out[f"sub{s:02d}_{p}"] = _preprocessed_file(root, self.config.variant, s, p)
                except BadInputError:
                    pass  # run() reports it
        return out

    def _load(self, root):
        c = self.config
        image_dir = self._stimuli_dir(root)
        return [
            load_things_eeg2(root, s, variant=c.variant, image_dir=image_dir) for s in c.subjects
        ]

    def _files(self, trials, stimuli_dir):
        return [
            str(p) if (p := stimuli_dir / str(n)).is_file() else None
            for n in trials.info["stimulus_names"]
        ]


# ----------------------------------------------------------------------------- THINGS-MEG
@register_stage
class LoadTHINGSMEG(_ImageEEGStage):
    """THINGS-MEG preprocessed epochs (derivatives) of several participants."""

    kind = "load_things_meg"
    dataset = "things_meg"
    root_means = "the BIDS root of ds004212 holding derivatives/preprocessed/"
    how_to_get = (
        "THINGS images are not downloaded automatically: get the THINGS object images from OSF "
        "(osf.io/jum2f; the zip password is in the project's description) and set stimuli_dir "
        "to the folder of the concept folders (object_images/<concept>/<file>.jpg)."
    )

    class Config(_ImageEEGConfig):
        subjects: list[int] = Field(default_factory=lambda: [1], min_length=1)

        @field_validator("subjects")
        @classmethod
        def _range(cls, v):
            if any(s < 1 or s > 4 for s in v) or len(set(v)) != len(v):
                raise ValueError("subjects must be distinct numbers in 1-4")
            return v

    def _stimuli_dir(self, root):
        return Path(self.config.stimuli_dir) if self.config.stimuli_dir else root / "images"

    def external_inputs(self, ctx):
        root = _data_root(self, ctx, self.root_means)
        folder = root / "derivatives" / "preprocessed"
        return {f"P{s}": folder / f"preprocessed_P{s}-epo.fif" for s in self.config.subjects}

    def _load(self, root):
        return [load_things_meg(root, s) for s in self.config.subjects]

    def _files(self, trials, stimuli_dir):
        # image_path is e.g. images_meg/<concept>/<file>.jpg; THINGS keeps <concept>/<file>.jpg
        out = []
        for name in trials.info["stimulus_names"]:
            p = Path(str(name))
            cands = [stimuli_dir / p, stimuli_dir / p.parent.name / p.name, stimuli_dir / p.name]
            out.append(next((str(c) for c in cands if c.is_file()), None))
        return out


# ----------------------------------------------------------------------------- MEG-MASC
@register_stage
class LoadMASC(Stage):
    """MEG-MASC word windows of several recordings; each stimulus is one audio segment."""

    kind = "load_masc"
    writes = ("trials", "segments")
    root_means = "the merged MEG-MASC BIDS root (bids_anonym/)"

    class Config(StageConfig):
        data_dir: str | None = None
        sounds_dir: str | None = None
        subjects: list[int | str] = Field(default_factory=lambda: [1], min_length=1)
        sessions: list[int | str] | None = None
        tasks: list[int | str] | None = None
        tmin: float = -0.5
        tmax: float = 2.5
        l_freq: float | None = Field(0.5, gt=0)
        h_freq: float | None = Field(30.0, gt=0)
        sfreq: float | None = Field(120.0, gt=0)
        clamp: float | None = Field(20.0, gt=0)
        test_fraction: float = Field(0.2, gt=0, lt=1)
        block_s: float = Field(30.0, gt=0)
        average_test_repeats: bool = True

    def preflight(self):
        c = self.config
        out = _check_dir(self, "data_dir", c.data_dir, self.root_means)
        out += _check_dir(
            self, "sounds_dir", c.sounds_dir, "the folder the event sound paths start"
        )
        if c.tmin >= c.tmax:
            out.append(f"stages.{self.name}.tmin: must be < tmax ({c.tmin} >= {c.tmax})")
        return out

    def _recordings(self, root: Path) -> list[tuple[str, str, str]]:
        from ..datasets import list_masc_recordings

        c = self.config
        found = []
        for s in c.subjects:
            recs = list_masc_recordings(root, s)
            if not recs:
                raise BadInputError(
                    f"stages.{self.name}.subjects: no MEG-MASC recording of subject {s!r} in "
                    f"{str(root)!r}."
                )
            found += [
                r
                for r in recs
                if (c.sessions is None or r[1] in {str(x) for x in c.sessions})
                and (c.tasks is None or r[2] in {str(x) for x in c.tasks})
            ]
        if not found:
            raise BadInputError(
                f"stages.{self.name}: no recording matches sessions={c.sessions}, tasks={c.tasks}."
            )
        return found

    def _segment_trials(self, root: Path, sub: str, ses: str, task: str) -> Trials:
        c = self.config
        raw, events = load_masc(root, sub, ses, task)
        raw.load_data()
        if c.l_freq or c.h_freq:
            raw.filter(c.l_freq, c.h_freq, picks="data", verbose=False)
        if c.sfreq and c.sfreq != raw.info["sfreq"]:
            raw.resample(c.sfreq, verbose=False)
        t = masc_word_segments(raw, events, tmin=c.tmin, tmax=c.tmax)
        if c.clamp is not None:  # Défossez et al.: robust scaling fitted on the recording
            q25, q50, q75 = np.percentile(raw.get_data(picks="data"), [25, 50, 75], axis=1)
            scale = np.where(q75 - q25 > 1e-30, q75 - q25, 1.0)
            t.X = robust_scale(t.X, c.clamp, center=q50, scale=scale)
        words = t.info.pop("word_events")
        t.subject = np.full(len(t), int(sub))
        # one stimulus per audio segment: '<sound>@<onset within the sound>'
        t.info["segment_sound"] = words["sound"].astype(str).to_numpy()
        t.info["segment_onset"] = words["sound_onset"].to_numpy(dtype=float)
        t.info["segment_word"] = words["word"].astype(str).to_numpy()
        t.info["files"] = {"recording": f"sub-{sub}_ses-{ses}_task-{task}"}
        return t

    def run(self, ctx):
        c = self.config
        root = _data_root(self, ctx, self.root_means)
        sounds = Path(c.sounds_dir).expanduser() if c.sounds_dir else root
        parts = []
        for sub, ses, task in self._recordings(root):
            t = self._segment_trials(root, sub, ses, task)
            keys = [
                f"{s}@{o:.3f}"
                for s, o in zip(t.info["segment_sound"], t.info["segment_onset"], strict=True)
            ]
            names, ids = np.unique(keys, return_inverse=True)
            t.info["stimulus_names"] = names
            first = np.unique(ids, return_index=True)[1]
            for k in ("segment_sound", "segment_onset", "segment_word"):
                t.info["stimulus_" + k[8:]] = np.asarray(t.info.pop(k))[first]
            t.stimulus_ids = ids
            parts.append(t)
        trials = combine_subjects(parts)
        # split by blocks of each sound (neighbouring windows overlap), the same for everyone
        info = trials.info
        onsets = np.asarray(info["stimulus_onset"], dtype=float)
        sounds_of = info["stimulus_sound"]
        blocks = [f"{s}#{int(o // c.block_s)}" for s, o in zip(sounds_of, onsets, strict=True)]
        uniq = np.unique(blocks)
        rng = np.random.default_rng(0)
        n_test = max(1, int(round(c.test_fraction * len(uniq))))
        test_blocks = set(rng.permutation(uniq)[:n_test].tolist())
        stim_test = np.array([b in test_blocks for b in blocks])
        trials.split = np.where(stim_test[trials.stimulus_ids], "test", "train")
        trials.repeat = _repeat_within_subject(trials)
        info["split_rule"] = (
            f"test = {n_test} of {len(uniq)} blocks of {c.block_s:g} s of each sound (seed 0), "
            "the same segments for every subject"
        )
        if c.average_test_repeats:
            trials = combine_subjects(
                _per_subject(
                    [trials.select(trials.subject == s) for s in np.unique(trials.subject)],
                    True,
                    False,
                )
            )
        save_trials(ctx.output("trials", "trials.h5"), trials)
        dur = c.tmax - c.tmin
        segs = []
        for i, name in enumerate(trials.info["stimulus_names"]):
            sound = str(trials.info["stimulus_sound"][i])
            start = max(0.0, float(trials.info["stimulus_onset"][i]) + c.tmin)
            segs.append(
                {"id": i, "name": str(name), "sound": str((sounds / sound).resolve()),
                 "onset": start, "offset": start + dur, "word": str(trials.info["stimulus_word"][i])}
            )  # fmt: skip
        write_json_atomic(
            ctx.output("segments", "segments.json"),
            {"sounds_dir": str(sounds.resolve()), "duration": dur, "segments": segs},
        )
        _counts(ctx, trials)
        ctx.extra["n_segments"] = len(segs)


def _repeat_within_subject(trials: Trials) -> np.ndarray:
    rep = np.zeros(len(trials), dtype=np.int64)
    seen: dict = {}
    for i, key in enumerate(
        zip(trials.subject.tolist(), trials.stimulus_ids.tolist(), strict=True)
    ):
        rep[i] = seen.get(key, 0)
        seen[key] = rep[i] + 1
    return rep


@register_stage
class SpeechFeatures(Stage):
    """wav2vec 2.0 latents of every audio segment (:func:`~..features.speech.segment_targets`)."""

    kind = "speech_features"
    reads = ("segments",)
    writes = ("features",)

    class Config(StageConfig):
        name: str = Field("wav2vec2", pattern=r"^[A-Za-z0-9_-]+$")
        model: str = "facebook/wav2vec2-base"
        layer: int = -1
        batch_size: int = Field(16, ge=1)

    def run(self, ctx):
        import soundfile

        from ..features import segment_targets

        c = self.config
        rec = json.loads(ctx.input("segments").read_text())
        segs = rec["segments"]
        by_sound: dict[str, list[int]] = {}
        for k, s in enumerate(segs):
            by_sound.setdefault(s["sound"], []).append(k)
        latents = None
        for sound, rows in by_sound.items():
            if not Path(sound).is_file():
                raise BadInputError(
                    f"stages.{self.name}: the sound file {sound!r} of {len(rows)} segment(s) is "
                    "missing; MEG-MASC's audio is in stimuli/audio/ of the BIDS root (set the "
                    "data stage's sounds_dir to the folder the events' sound paths start from)."
                )
            wav, sr = soundfile.read(sound, dtype="float32", always_2d=True)
            z = segment_targets(
                wav.mean(axis=1),
                float(sr),
                [segs[k]["onset"] for k in rows],
                duration=float(rec["duration"]),
                model=c.model,
                layer=c.layer,
                batch_size=c.batch_size,
                device=ctx.device,
            )
            if latents is None:
                latents = np.zeros((len(segs), z.shape[1]), dtype=np.float32)
            latents[rows] = z
        ids = np.asarray([s["id"] for s in segs])
        path = ctx.output("store", "speech_latents.h5")
        with FeatureStore.open_writer(
            path, ids, {"latents": ((latents.shape[1],), "float32")},
            attrs={"kind": "speech_latents", "model": c.model, "layer": c.layer},
        ) as w:  # fmt: skip
            w.append(ids, {"latents": latents})
        out = {
            c.name: {
                # where the store lies once the stage folder is renamed into place
                "path": str((ctx.run_dir / self.name / path.name).resolve()),
                "kind": "wav2vec2",
                "spec": {"model": c.model, "layer": c.layer},
                "fields": {"latents": [int(latents.shape[1])]},
                "fingerprint": fingerprint_file(path),
            }
        }
        write_json_atomic(ctx.output("features", "features.json"), out)


# ----------------------------------------------------------------------------- training
@register_stage
class TrainContrastive(Stage):
    """Contrastive M/EEG decoders (CLIP loss), within-subject or leave-one-subject-out."""

    kind = "train_contrastive"
    reads = ("trials", "features")
    writes = ("predictions", "metrics", "models")
    publish = ("metrics",)

    class Config(StageConfig):
        target: str = Field(description="feature field to decode, e.g. clip_image.embeds")
        mode: Literal["within", "loso", "pooled"] = "within"
        backbone: str = "simple_conv"
        backbone_kwargs: dict = Field(default_factory=dict)
        feature_dim: int = Field(128, ge=1)
        dropout: float = Field(0.1, ge=0, lt=1)
        subject_layers: bool = True
        epochs: int = Field(100, ge=1)
        batch_size: int = Field(64, ge=2)
        lr: float = Field(1e-3, gt=0)
        weight_decay: float = Field(1e-2, ge=0)
        mse_weight: float = Field(0.0, ge=0)
        val_fraction: float = Field(0.1, ge=0, lt=1)
        patience: int = Field(10, ge=1)
        seed: int | None = None
        evaluation: Literal["zero_shot", "segment"] = "zero_shot"
        k: list[int] | None = None
        published: str | None = None
        n_boot: int = Field(1000, ge=10)
        predictions_subject: int | None = None

        @field_validator("backbone")
        @classmethod
        def _known(cls, v):
            from ..models.meeg_backbones import BACKBONES

            if v not in BACKBONES:
                raise ValueError(f"unknown backbone; expected one of {list(BACKBONES)}")
            return v

        @field_validator("published")
        @classmethod
        def _published(cls, v):
            if v is not None and v not in PUBLISHED_MEEG:
                raise ValueError(f"unknown published key; expected one of {list(PUBLISHED_MEEG)}")
            return v

    def _targets(self, ctx, trials: Trials) -> tuple[np.ndarray, str]:
        features = json.loads(ctx.input("features").read_text())
        ((name, field),) = _parse_target(self.config.target, features)[:1]
        if "." not in self.config.target and len(features[name]["fields"]) > 1:
            raise BadInputError(
                f"stages.{self.name}.target: {name!r} has fields {list(features[name]['fields'])}"
                f"; name one, e.g. '{name}.{field}'."
            )
        store = FeatureStore(features[name]["path"])
        ids = np.unique(trials.stimulus_ids)
        Y = np.zeros((int(ids.max()) + 1, *store.field_info(field)["shape"][1:]), np.float32)
        Y[ids] = store.read(field, ids)
        return Y.reshape(len(Y), -1), f"{name}.{field}"

    def _splits(self, trials: Trials):
        from ..evaluation import cross_subject_splits, within_subject_splits

        c = self.config
        if c.mode == "within":
            return within_subject_splits(trials.subject, trials.split, trials.stimulus_ids)
        if c.mode == "pooled":  # one model over every subject's training trials
            train = np.flatnonzero(trials.split == "train")
            train = train[
                ~np.isin(trials.stimulus_ids[train], trials.stimulus_ids[trials.split == "test"])
            ]
            return [
                (s, train, test)
                for s, _, test in within_subject_splits(trials.subject, trials.split)
            ]
        out = []
        for s, train, test in cross_subject_splits(trials.subject):
            train = train[trials.split[train] == "train"]
            test = test[trials.split[test] == "test"]
            # zero-shot across subjects: the held-out subject's test stimuli are never trained on
            train = train[~np.isin(trials.stimulus_ids[train], trials.stimulus_ids[test])]
            if len(test) == 0:
                raise BadInputError(f"stages.{self.name}: subject {s} has no 'test' trial.")
            out.append((s, train, test))
        return out

    def run(self, ctx):
        c = self.config
        trials = load_trials(ctx.input("trials"))
        if trials.X.ndim != 3:
            raise BadInputError(
                f"stages.{self.name}: trials.X must be epochs (n, n_channels, n_times), got "
                f"shape {trials.X.shape}; take the trials of an EEG/MEG data stage."
            )
        Y, key = self._targets(ctx, trials)
        seed = ctx.seed if c.seed is None else c.seed
        models_dir = ctx.output("models", "models")
        models_dir.mkdir(exist_ok=True)
        ks = c.k or ([1, 5] if c.evaluation == "zero_shot" else [1, 10])
        results, preds = {}, {}
        enc = None
        for s, train, test in self._splits(trials):
            subj_ids, subj_index = np.unique(trials.subject[train], return_inverse=True)
            if enc is None or c.mode != "pooled":  # pooled: one model, evaluated per subject
                enc = self._fit(ctx, trials, Y, train, subj_ids, subj_index, seed)
                name = "pooled" if c.mode == "pooled" else f"{c.mode}_subject-{s}"
                enc.save_pretrained(models_dir / name)
            # within: the one subject layer; loso: -1 = mean subject layer (unseen subject)
            who = {"within": 0, "loso": -1}.get(c.mode)
            if who is None:
                who = int(np.searchsorted(subj_ids, s))
            pred = enc.predict(trials.X[test], who, device=ctx.device)
            test_ids, inv = np.unique(trials.stimulus_ids[test], return_inverse=True)
            mean_pred = np.zeros((len(test_ids), pred.shape[1]))
            np.add.at(mean_pred, inv, pred)
            mean_pred /= np.bincount(inv)[:, None]  # averaged over test repetitions
            kw = dict(n_boot=c.n_boot, random_state=seed, published=c.published)
            if c.evaluation == "zero_shot":
                res = zero_shot_identification(
                    mean_pred, Y[test_ids], np.arange(len(test_ids)), ks, **kw
                )
            else:
                res = segment_identification(mean_pred, Y[test_ids], ks, **kw)
            res["history"] = enc.history_
            results[s] = res
            preds[s] = (test_ids, mean_pred.astype(np.float32))
        self._write(ctx, results, preds, ks, key)

    def _fit(self, ctx, trials, Y, train, subj_ids, subj_index, seed):
        from ..models.meeg import BrainEncoder
        from ..models.meeg_training import fit_contrastive

        c = self.config
        enc = BrainEncoder(
            trials.X.shape[1], trials.X.shape[2], Y.shape[1],
            n_subjects=len(subj_ids), backbone=c.backbone, subject_layers=c.subject_layers,
            feature_dim=c.feature_dim, dropout=c.dropout,
            backbone_kwargs=c.backbone_kwargs or None, seed=seed,
        )  # fmt: skip
        sid = trials.stimulus_ids[train]
        fit_contrastive(
            enc, trials.X[train], Y[sid], subj_index, groups=sid,
            epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay,
            mse_weight=c.mse_weight, seed=seed, device=ctx.device,
            val_fraction=c.val_fraction, patience=c.patience,
        )  # fmt: skip
        return enc

    def _write(self, ctx, results: dict, preds: dict, ks: list[int], key: str) -> None:
        c = self.config
        subject = c.predictions_subject if c.predictions_subject is not None else next(iter(preds))
        if subject not in preds:
            raise BadInputError(
                f"stages.{self.name}.predictions_subject: {subject} is not among the evaluated "
                f"subjects {list(preds)}."
            )
        ids, pred = preds[subject]
        with FeatureStore.open_writer(
            ctx.output("predictions", "predictions.h5"), ids, {key: ((pred.shape[1],), "float32")},
            attrs={"kind": "predictions", "method": f"train_contrastive:{c.mode}",
                   "subject": int(subject)},
        ) as w:  # fmt: skip
            w.append(ids, {key: pred})
        np.savez(
            ctx.output("all_predictions", "predictions_per_subject.npz"),
            **{f"subject_{s}_ids": i for s, (i, _) in preds.items()},
            **{f"subject_{s}_pred": p for s, (_, p) in preds.items()},
        )
        metrics: dict = {}
        for k in ks:
            accs = [r[f"top{k}"] for r in results.values()]
            r0 = next(iter(results.values()))
            metrics[f"top{k}"] = {
                "mean": float(np.mean(accs)),
                "chance": float(np.mean([r[f"chance_top{k}"] for r in results.values()])),
                "n_subjects": len(accs),
                "n_way": int(r0["n_candidates"]),
                "note": "mean over subjects of the per-subject accuracy",
            }
        for s, r in results.items():
            metrics[f"subject_{s}"] = {
                f"top{k}": {
                    "mean": r[f"top{k}"], "ci": list(r[f"top{k}_ci"]),
                    "chance": r[f"chance_top{k}"], "n": r["n_queries"],
                }
                for k in ks
            }  # fmt: skip
        ref = PUBLISHED_MEEG.get(c.published) if c.published else None
        if ref:
            metrics["published"] = {
                f"{ref['method']} top{k}": {"value": ref["values"][f"top{k}"] / 100}
                for k in ks
                if f"top{k}" in ref["values"]
            }
        tables = {str(s): format_identification(r) for s, r in results.items()}
        metrics["_meta"] = {
            "evaluation": c.evaluation,
            "mode": c.mode,
            "target": key,
            "split": "within: each subject's own train/test trials; loso: trained on the other "
            "subjects' training trials, tested on the held-out subject's test trials (-1 = mean "
            "subject layer)",
            "test_repetitions": "predictions averaged over each test stimulus's repetitions",
            "validation": f"val_fraction={c.val_fraction} of the training stimuli (early stopping)",
            "published": ref,
            "tables": tables,
            "history": {str(s): r["history"] for s, r in results.items()},
        }
        write_json_atomic(ctx.output("metrics", "metrics.json"), metrics)
        ctx.extra.update({f"top{k}": metrics[f"top{k}"]["mean"] for k in ks})
        for s, t in tables.items():
            logger.info("%s: subject %s (%s)\n%s", self.name, s, c.mode, t)


@register_stage
class IdentificationReport(Stage):
    """report.html of an identification run: metrics beside the published numbers."""

    kind = "identification_report"
    reads = ("metrics",)
    writes = ("report_html",)
    publish = ("report_html",)

    class Config(StageConfig):
        title: str = "braindecode_suite identification run"

    def run(self, ctx):
        metrics = json.loads(ctx.input("metrics").read_text())
        meta = metrics.get("_meta", {})
        if "tables" not in meta:
            raise BadInputError(
                f"stages.{self.name}: the metrics are not identification metrics; take them "
                "from a train_contrastive stage (inputs: {metrics: <that stage>})."
            )
        manifests = ctx.stage_manifests()
        tables = "".join(
            f"<h3>Subject {html.escape(s)}</h3><pre>{html.escape(t)}</pre>"
            for s, t in meta["tables"].items()
        )
        rows = {k: v for k, v in metrics.items() if not k.startswith("_")}
        write_report_html(
            ctx.output("report_html", "report.html"),
            title=self.config.title,
            metrics=rows,
            images={},
            provenance=provenance_statements(manifests, ctx.provenance),
            stages=[
                {
                    "name": m["stage"],
                    "status": m["status"],
                    "wall_time_s": m["wall_time_s"],
                    "peak_memory_mb": m["peak_memory_mb"],
                    "fingerprint": m["fingerprint"][:12],
                }
                for m in manifests
            ],
            extra_html=f"<h2>Identification ({html.escape(meta.get('mode', ''))})</h2>{tables}"
            f"<p>{html.escape(str(meta.get('split', '')))}</p>",
        )
