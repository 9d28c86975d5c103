"""Data stages for the fMRI datasets beyond NSD, and a decoding (classification) route.

``load_bold5000``, ``load_things_fmri`` and ``load_god`` write ``trials`` and ``stimuli``
exactly as ``load_nsd`` does, except that ``stimuli.json`` lists image files (format
``image_files``, read by :func:`~braindecode_suite.datasets.read_stimulus_images`), so the
feature, ridge, reconstruction, evaluation and report stages run unchanged on them.
``load_haxby`` writes ``trials`` only (8 categories, no images); ``classify`` decodes the
category with leave-one-run-out cross-validation and ``classification_report`` renders it.
"""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from ..datasets import (
    BOLD5000Layout,
    THINGSfMRILayout,
    Trials,
    image_files_fingerprint,
    load_bold5000,
    load_god,
    load_haxby,
    load_haxby_openfmri,
    load_things_fmri,
    locate_stimulus_images,
)
from ..datasets.stimuli import IMAGE_HOW_TO_GET
from ..evaluation import write_report_html
from ..preprocessing import average_repeats, zscore_per_session
from ..utils.io import write_json_atomic
from ..utils.logging import logger
from ..utils.validation import BadInputError
from ._artifacts import load_trials, save_trials
from .base import Stage, StageConfig, register_stage
from .report import provenance_statements

__all__ = ["LoadBOLD5000", "LoadTHINGSfMRI", "LoadGOD", "LoadHaxby", "Classify"]


# ----------------------------------------------------------------------------- common
def _check_dir(stage: Stage, key: str, value: str | None, expected: str) -> list[str]:
    if value is not None and not Path(value).expanduser().is_dir():
        return [
            f"stages.{stage.name}.{key}: {value!r} does not exist or is not a directory "
            f"(expected {expected})"
        ]
    return []


def _data_root(stage: Stage, ctx, expected: str) -> Path:
    """``data_dir`` of the stage, else ``--data-dir`` / the YAML's / ``$BDS_DATA_DIR``."""
    root = stage.config.data_dir or ctx.data_dir
    if root is None:
        raise BadInputError(
            f"stages.{stage.name}: no data directory. Pass --data-dir, set data_dir in the "
            f"pipeline or $BDS_DATA_DIR, pointing at {expected}."
        )
    return Path(root).expanduser()


def _trial_counts(ctx, trials: Trials) -> None:
    ctx.extra.update(
        {
            "n_trials": len(trials),
            "n_voxels": int(trials.X.shape[1]),
            "n_train": int(np.sum(trials.split == "train")),
            "n_test": int(np.sum(trials.split == "test")),
        }
    )


def write_image_stimuli(
    ctx, stage_name, dataset, trials, files, *, image_size, how_to_get, stimuli_dir
) -> dict:
    """Write the ``stimuli`` artifact of an image-file dataset and return its record.

    The record (``format: image_files``) lists one image path per stimulus id (None where
    the image is missing: a warning says how to get the images), the stimulus names, the
    train/test ids and a fingerprint of the files, so a changed image re-runs the stage.
    """
    ids = np.unique(trials.stimulus_ids)
    missing = [int(i) for i in ids if files[i] is None]
    if missing:
        logger.warning(
            "%s: %d of the %d stimulus images used are not in %s (e.g. %s); stages that "
            "read images will fail. %s",
            stage_name,
            len(missing),
            len(ids),
            stimuli_dir,
            trials.info["stimulus_names"][missing[0]],
            how_to_get,
        )
    record = {
        "format": "image_files",
        "dataset": dataset,
        "files": files,
        "names": [str(n) for n in trials.info["stimulus_names"]],
        "stimuli_dir": str(stimuli_dir),
        "image_size": image_size,
        "fingerprint": image_files_fingerprint(files, image_size),
        "how_to_get": how_to_get,
        "ids": ids.tolist(),
        "test_ids": np.unique(trials.stimulus_ids[trials.split == "test"]).tolist(),
        "n_missing": len(missing),
    }
    for key in ("stimulus_source", "concept"):
        if key in trials.info:
            record[key] = [str(v) for v in trials.info[key]]
    write_json_atomic(ctx.output("stimuli", "stimuli.json"), record)
    return record


class _ImageDataStage(Stage):
    """A dataset adapter + preprocessing, writing ``trials`` and an ``image_files`` record."""

    writes = ("trials", "stimuli")
    dataset: ClassVar[str] = ""
    #: what --data-dir must point at (for messages)
    root_means: ClassVar[str] = ""
    #: stimulus folder relative to the data root when ``stimuli_dir`` is null
    default_stimuli: ClassVar[tuple[str, ...]] = ()

    def preflight(self):
        return _check_dir(self, "data_dir", self.config.data_dir, self.root_means) + _check_dir(
            self, "stimuli_dir", self.config.stimuli_dir, "the folder of the stimulus images"
        )

    def _root(self, ctx) -> Path:
        return _data_root(self, ctx, self.root_means)

    def _stimuli_dir(self, root: Path) -> Path:
        if self.config.stimuli_dir is not None:
            return Path(self.config.stimuli_dir).expanduser()
        return root.joinpath(*self.default_stimuli)

    def _load(self, root: Path) -> Trials:  # pragma: no cover - abstract
        raise NotImplementedError

    def _preprocess(self, trials: Trials) -> Trials:
        """Z-scoring not done by the adapter (see subclasses), then test-repeat averaging."""
        if self.config.average_test_repeats and (trials.split == "test").any():
            trials = average_repeats(trials, split="test")
        return trials

    def outputs_valid(self, ctx, manifest):
        # the images are not fingerprinted as external inputs (thousands of files); their
        # (name, size, mtime) list is, here: a changed, added or removed image re-runs the stage
        path = ctx.run_dir / self.name / manifest["outputs"]["stimuli"]["path"]
        try:
            stim = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        files = locate_stimulus_images(self.dataset, stim["stimuli_dir"], _locate_info(stim))
        same = image_files_fingerprint(files, stim["image_size"]) == stim["fingerprint"]
        if not same:
            logger.info("%s: the stimulus images changed; re-running", self.name)
        return same

    def run(self, ctx):
        root = self._root(ctx)
        trials = self._preprocess(self._load(root))
        save_trials(ctx.output("trials", "trials.h5"), trials)
        stimuli_dir = self._stimuli_dir(root).resolve()
        files = locate_stimulus_images(self.dataset, stimuli_dir, trials.info)
        record = write_image_stimuli(
            ctx,
            self.name,
            self.dataset,
            trials,
            files,
            image_size=self.config.image_size,
            how_to_get=IMAGE_HOW_TO_GET[self.dataset],
            stimuli_dir=stimuli_dir,
        )
        _trial_counts(ctx, trials)
        ctx.extra["n_stimulus_images_missing"] = record["n_missing"]


def _locate_info(stim: dict) -> dict:
    info = {"stimulus_names": stim["names"]}
    info.update({k: stim[k] for k in ("stimulus_source", "concept") if k in stim})
    return info


class _ImageDataConfig(StageConfig):
    data_dir: str | None = None
    stimuli_dir: str | None = None
    image_size: int = Field(256, ge=16)
    zscore: bool = True
    average_test_repeats: bool = True


# ----------------------------------------------------------------------------- BOLD5000
@register_stage
class LoadBOLD5000(_ImageDataStage):
    """BOLD5000 Release 2.0 betas (:func:`~braindecode_suite.datasets.load_bold5000`)."""

    kind = "load_bold5000"
    dataset = "bold5000"
    root_means = "the folder holding the Release 2.0 files (CSI{n}_GLMbetas-..., imgnames)"
    default_stimuli = ("Scene_Stimuli", "Presented_Stimuli")

    class Config(_ImageDataConfig):
        subject: int = Field(1, ge=1, le=4)
        sessions: list[int] | None = None
        roi: Literal["brainmask", "EarlyVis", "LOC", "OPA", "PPA", "RSC"] = "brainmask"
        split: Literal["repeated_test"] | None = "repeated_test"

    def external_inputs(self, ctx):
        layout = BOLD5000Layout(self._root(ctx), self.config.subject)
        c = self.config
        files = {"imgnames": layout.imgnames}
        if c.roi == "brainmask":
            files["brainmask"] = layout.brainmask
        else:
            files.update(zip((f"{c.roi}_lh", f"{c.roi}_rh"), layout.roi_files(c.roi), strict=True))
        # every session's header places the trials in imgnames
        for s in layout.available_sessions():
            files[f"betas_session{s:02d}"] = layout.betas(s)
        return {k: v for k, v in files.items() if v is not None}

    def _load(self, root):
        c = self.config
        return load_bold5000(
            root, c.subject, sessions=c.sessions, roi=c.roi, zscore_sessions=c.zscore, split=c.split
        )


# -------------------------------------------------------------------------- THINGS-fMRI
@register_stage
class LoadTHINGSfMRI(_ImageDataStage):
    """THINGS-fMRI single-trial betas (:func:`~braindecode_suite.datasets.load_things_fmri`)."""

    kind = "load_things_fmri"
    dataset = "things_fmri"
    root_means = "the folder holding betas_csv/ (or betas_vol/ and brainmasks/)"
    default_stimuli = ("images",)

    class Config(_ImageDataConfig):
        subject: int = Field(1, ge=1, le=3)
        form: Literal["table", "volume"] = "table"
        roi: str | list[str] | None = None
        sessions: list[int] | None = None

    def external_inputs(self, ctx):
        layout = THINGSfMRILayout(self._root(ctx), self.config.subject)
        files = {"voxel_metadata": layout.voxel_metadata}
        if self.config.form == "table":
            files.update(responses=layout.responses, stimulus_metadata=layout.stimulus_metadata)
        else:
            files["brainmask"] = layout.brainmask
            for s, r in layout.available_runs():
                files[f"betas_ses{s:02d}_run{r:02d}"] = layout.run_betas(s, r)
                files[f"conditions_ses{s:02d}_run{r:02d}"] = layout.run_conditions(s, r)
        return {k: v for k, v in files.items() if v.is_file()}

    def _load(self, root):
        c = self.config
        return load_things_fmri(
            root, c.subject, form=c.form, roi=c.roi, sessions=c.sessions, zscore_sessions=c.zscore
        )


# ----------------------------------------------------------------------------- GOD
@register_stage
class LoadGOD(_ImageDataStage):
    """Generic Object Decoding BData samples (:func:`~braindecode_suite.datasets.load_god`)."""

    kind = "load_god"
    dataset = "god"
    root_means = "the folder holding Subject{N}.h5"
    default_stimuli = ("images",)

    class Config(_ImageDataConfig):
        subject: int = Field(1, ge=1)
        roi: str = "ROI_VC"
        split: list[Literal["training", "test_perception", "test_imagery"]] = Field(
            default_factory=lambda: ["training", "test_perception"], min_length=1
        )
        stimulus_tables: list[str] | None = None
        zscore: bool = False

    def _tables(self, root: Path) -> list[Path] | None:
        if self.config.stimulus_tables is None:
            return None
        return [p if (p := Path(t).expanduser()).is_absolute() else root / p
                for t in self.config.stimulus_tables]  # fmt: skip

    def external_inputs(self, ctx):
        root = self._root(ctx)
        files = {"bdata": root / f"Subject{self.config.subject}.h5"}
        for k, p in enumerate(self._tables(root) or []):
            files[f"stimulus_table_{k}"] = p
        return files

    def _load(self, root):
        c = self.config
        trials = load_god(
            root, c.subject, roi=c.roi, split=c.split, stimulus_tables=self._tables(root)
        )
        # GOD samples are preprocessed already; optional z-scoring per session, before
        # the test repeats are averaged (so the averages are of z-scored samples)
        return zscore_per_session(trials) if c.zscore else trials


# ----------------------------------------------------------------------------- Haxby
@register_stage
class LoadHaxby(Stage):
    """Haxby 2001 volumes or blocks (:func:`~braindecode_suite.datasets.load_haxby`)."""

    kind = "load_haxby"
    writes = ("trials",)
    root_means = (
        "nilearn's data folder (haxby2001/subjN/), a subject folder holding the BOLD file "
        "(e.g. PyMVPA's slice/), or the OpenfMRI root (sub00N/, models/)"
    )

    class Config(StageConfig):
        data_dir: str | None = None
        subject: int = Field(1, ge=1)
        layout: Literal["nilearn", "openfmri"] = "nilearn"
        mask: str | None = "auto"
        labels: str | None = None
        bold: str | None = None
        task: int = Field(1, ge=1)
        model: int = Field(1, ge=1)
        unit: Literal["volume", "block"] = "volume"
        include_rest: bool = False
        detrend: bool = False
        standardize: bool = False
        t_r: float = Field(2.5, gt=0)

    def preflight(self):
        return _check_dir(self, "data_dir", self.config.data_dir, self.root_means)

    def _subject_dir(self, root: Path) -> Path:
        c = self.config
        if c.layout == "openfmri":
            return root / f"sub{c.subject:03d}"
        for folder in (root / "haxby2001" / f"subj{c.subject}", root / f"subj{c.subject}"):
            if folder.is_dir():
                return folder
        return root

    def _auto_mask(self, root: Path) -> str:
        """nilearn layout: ``mask4_vt``; a PyMVPA folder without it (e.g. ``slice/``): ``mask``."""
        folder = self._subject_dir(root)
        if not (folder / "mask4_vt.nii.gz").is_file() and (folder / "mask.nii.gz").is_file():
            return "mask"
        return "mask4_vt"

    def external_inputs(self, ctx):
        # the subject's folder: BOLD, labels or onsets, masks (large files are hashed from
        # their size and ends, see fingerprint_file)
        folder = self._subject_dir(_data_root(self, ctx, self.root_means))
        return {"subject_dir": folder} if folder.is_dir() else {}

    def run(self, ctx):
        c = self.config
        root = _data_root(self, ctx, self.root_means)
        common = dict(
            unit=c.unit, include_rest=c.include_rest, detrend=c.detrend, standardize=c.standardize
        )
        if c.layout == "nilearn":
            if c.task != 1 or c.model != 1:
                raise BadInputError(
                    f"stages.{self.name}: task and model are OpenfMRI settings; use "
                    "layout: openfmri or leave them at 1."
                )
            trials = load_haxby(
                root,
                c.subject,
                mask=self._auto_mask(root) if c.mask == "auto" else c.mask,
                labels=c.labels,
                bold=c.bold or "bold.nii.gz",
                t_r=c.t_r,
                **common,
            )
        else:
            if c.labels is not None:
                raise BadInputError(
                    f"stages.{self.name}.labels: the OpenfMRI layout takes its labels from the "
                    "onset files; labels is for layout: nilearn."
                )
            trials = load_haxby_openfmri(
                root,
                c.subject,
                bold=c.bold or "bold_25mm",
                mask="vt" if c.mask == "auto" else c.mask,
                task=c.task,
                model=c.model,
                **common,
            )
        save_trials(ctx.output("trials", "trials.h5"), trials)
        _trial_counts(ctx, trials)
        ctx.extra["n_runs"] = int(len(np.unique(trials.run)))


# ----------------------------------------------------------------------------- decoding
@register_stage
class Classify(Stage):
    """Category decoding: scaler + linear classifier, cross-validated over runs."""

    kind = "classify"
    reads = ("trials",)
    writes = ("metrics",)
    publish = ("metrics",)

    class Config(StageConfig):
        classifier: Literal["linear_svc", "logistic_regression"] = "linear_svc"
        C: float = Field(1.0, gt=0)
        standardize: bool = True
        groups: Literal["run", "session"] = "run"
        split: str | None = None
        max_iter: int = Field(10000, ge=1)

        @field_validator("split")
        @classmethod
        def _nonempty(cls, v):
            if v is not None and not v:
                raise ValueError("split must be a split name or null (every trial)")
            return v

    def _estimator(self, seed: int):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        c = self.config
        if c.classifier == "linear_svc":
            clf = LinearSVC(C=c.C, max_iter=c.max_iter, random_state=seed)
        else:
            clf = LogisticRegression(C=c.C, max_iter=c.max_iter)
        return make_pipeline(StandardScaler(), clf) if c.standardize else make_pipeline(clf)

    def run(self, ctx):
        from scipy.stats import binomtest
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score
        from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

        c = self.config
        trials = load_trials(ctx.input("trials"))
        if c.split is not None:
            keep = trials.split == c.split
            if not keep.any():
                raise BadInputError(
                    f"stages.{self.name}.split: no trial has split {c.split!r} (splits present: "
                    f"{sorted(set(trials.split.tolist()))})."
                )
            trials = trials.select(np.flatnonzero(keep))
        X = trials.X.reshape(len(trials), -1)
        y = np.asarray(trials.stimulus_ids)
        groups = np.asarray(trials.run if c.groups == "run" else trials.session)
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise BadInputError(
                f"stages.{self.name}.groups: leave-one-{c.groups}-out needs at least 2 "
                f"{c.groups}s, the trials have {n_groups}."
            )
        labels = np.unique(y)
        if len(labels) < 2:
            raise BadInputError(f"stages.{self.name}: the trials hold one class only.")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            pred = cross_val_predict(
                self._estimator(ctx.seed), X, y, groups=groups, cv=LeaveOneGroupOut()
            )
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            logger.warning(
                "%s: the classifier did not converge in some folds; raise max_iter or lower C.",
                self.name,
            )
        names = list(trials.info.get("stimulus_names", []))
        label_names = [str(names[i]) if 0 <= i < len(names) else str(i) for i in labels]
        n, n_correct = len(y), int(np.sum(pred == y))
        counts = np.array([np.sum(y == lab) for lab in labels])
        # chance of plain accuracy: always answering the most frequent class (1/K if balanced)
        chance = float(counts.max() / n)
        test = binomtest(n_correct, n, chance, alternative="greater")
        ci = binomtest(n_correct, n, chance).proportion_ci(confidence_level=0.95, method="exact")
        recall = recall_score(y, pred, labels=labels, average=None, zero_division=0)
        cm = confusion_matrix(y, pred, labels=labels)
        metrics = {
            "accuracy": {
                "mean": n_correct / n,
                "ci": [float(ci.low), float(ci.high)],
                "chance": chance,
                "p_value": float(test.pvalue),
                "n": n,
                "n_correct": n_correct,
            },
            "balanced_accuracy": {
                "mean": float(balanced_accuracy_score(y, pred)),
                "chance": 1.0 / len(labels),
                "n": n,
            },
            "recall": {name: float(r) for name, r in zip(label_names, recall, strict=True)},
            "confusion_matrix": {"labels": label_names, "counts": cm.tolist()},
            "_meta": {
                "classifier": f"{c.classifier} (C={c.C:g})"
                + (" after StandardScaler" if c.standardize else ""),
                "cv": f"leave-one-{c.groups}-out ({n_groups} folds), sklearn cross_val_predict",
                "n_trials": n,
                "n_features": int(X.shape[1]),
                "n_classes": len(labels),
                "p_value": "one-sided binomial test of n_correct against the chance rate; it "
                "treats trials as independent, which neighbouring volumes of a block are not",
                "ci": "Clopper-Pearson 95 % interval of the accuracy",
                "confusion_matrix": "rows: true class, columns: predicted class",
            },
        }
        write_json_atomic(ctx.output("metrics", "metrics.json"), metrics)
        ctx.extra.update(
            accuracy=metrics["accuracy"]["mean"],
            balanced_accuracy=metrics["balanced_accuracy"]["mean"],
        )
        logger.info(
            "%s: %d-way accuracy %.3f (chance %.3f, p = %.2g), %s",
            self.name,
            len(labels),
            n_correct / n,
            chance,
            test.pvalue,
            metrics["_meta"]["cv"],
        )


def _confusion_html(cm: dict) -> str:
    """The confusion matrix as an HTML table, cells shaded by the row fraction."""
    labels, counts = cm["labels"], np.asarray(cm["counts"], dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    head = "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
    body = []
    for lab, row, fr in zip(labels, counts, frac, strict=True):
        cells = "".join(
            f'<td style="background: rgba(31, 119, 180, {f:.2f})">{int(v)}</td>'
            for v, f in zip(row, fr, strict=True)
        )
        body.append(f"<tr><th>{html.escape(lab)}</th>{cells}</tr>")
    return (
        "<h2>Confusion matrix</h2>\n<p>Rows: true category; columns: predicted; shade: "
        "fraction of the row.</p>\n<table><tr><th>true \\ predicted</th>"
        f"{head}</tr>\n" + "\n".join(body) + "\n</table>"
    )


@register_stage
class ClassificationReport(Stage):
    """report.html of a decoding run: metrics table, confusion matrix, provenance."""

    kind = "classification_report"
    reads = ("metrics",)
    writes = ("report_html",)
    publish = ("report_html",)

    class Config(StageConfig):
        title: str = "braindecode_suite decoding run"

    def run(self, ctx):
        metrics = json.loads(ctx.input("metrics").read_text())
        if "confusion_matrix" not in metrics:
            raise BadInputError(
                f"stages.{self.name}: the metrics have no confusion matrix; take them from a "
                "classify stage (inputs: {metrics: <classify stage>})."
            )
        manifests = ctx.stage_manifests()
        rows = {
            k: v for k, v in metrics.items() if not k.startswith("_") and k != "confusion_matrix"
        }
        meta = metrics.get("_meta", {})
        method = "".join(
            f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in meta.items()
        )
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
            extra_html=_confusion_html(metrics["confusion_matrix"])
            + f"\n<h2>Method</h2>\n<ul>{method}</ul>",
        )
