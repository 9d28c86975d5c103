"""Stage adapters: one small class per step, each calling the library below.

The library knows nothing of stages; these classes only translate a validated
config and the run context into library calls and artifact files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..datasets import (
    BRAIN_CORRELATION_ROIS,
    NSD_ROIS,
    NSDLayout,
    load_nsd,
    make_demo_nsd,
    read_stimulus_images,
    stimulus_format,
)
from ..evaluation import (
    evaluate_images,
    evaluate_protocol,
    format_paper_table,
    paper_table,
    retrieval_top1,
)
from ..features import FeatureStore, extract_features, make_extractor
from ..features.extractors import EXTRACTORS
from ..models import DEFAULT_ALPHAS, RidgeCV
from ..preprocessing import average_repeats, zscore_per_session
from ..reconstruction.image import METHODS, get_method
from ..utils.io import atomic_path, fingerprint_file, hash_json, write_json_atomic
from ..utils.logging import logger
from ..utils.validation import BadInputError
from ._artifacts import load_trials, save_trials
from .base import Stage, StageConfig, register_stage
from .recon_stages import write_reconstructions
from .report import build_report

__all__ = ["ExtractorSpec"]


class ExtractorSpec(StageConfig):
    """One feature extractor: registry ``kind`` plus its own ``params``."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    input: Literal["images", "captions"] = Field(
        "images", description="what the extractor reads: the stimulus images or their captions"
    )
    batch_size: int = Field(32, ge=1)
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"

    @field_validator("kind")
    @classmethod
    def _known(cls, v):
        if v not in EXTRACTORS:
            raise ValueError(f"unknown extractor; expected one of {sorted(EXTRACTORS)}")
        return v

    @model_validator(mode="after")
    def _buildable(self):
        try:
            make_extractor(self.kind, **self.params)
        except (BadInputError, TypeError, ValueError) as err:
            raise ValueError(f"params: {err}") from None
        return self

    def build(self, device: str):
        return make_extractor(
            self.kind, batch_size=self.batch_size, dtype=self.dtype, device=device, **self.params
        )


# ----------------------------------------------------------------------------- data
@register_stage
class SimulateNSD(Stage):
    """Build the embedded demo dataset in NSD's own layout (simulated responses)."""

    kind = "make_demo_nsd"
    writes = ("nsd_root",)

    class Config(StageConfig):
        n_train: int = Field(300, ge=10)
        n_test: int = Field(30, ge=2)
        n_test_repeats: int = Field(3, ge=1)
        n_sessions: int = Field(4, ge=1)
        image_size: int = Field(256, ge=32)
        n_voxels_prf: int = Field(1200, ge=1)
        n_voxels_category: int = Field(400, ge=0)
        noise_sd: float | None = Field(None, gt=0)
        random_state: int = 0

    def outputs_valid(self, ctx, manifest):
        from ..datasets import demo_is_current

        # a demo built by an older version (e.g. without captions) is rebuilt
        return demo_is_current(ctx.run_dir / self.name / manifest["outputs"]["nsd_root"]["path"])

    def run(self, ctx):
        kw = self.config.model_dump()
        if kw["noise_sd"] is None:
            kw.pop("noise_sd")
        make_demo_nsd(ctx.output("nsd_root", "nsd"), **kw)


@register_stage
class LoadNSD(Stage):
    """Read NSD betas, mask, z-score per session, average test repeats."""

    kind = "load_nsd"
    optional_reads = ("nsd_root",)
    writes = ("trials", "stimuli")

    class Config(StageConfig):
        data_dir: str | None = None
        subject: int = Field(1, ge=1, le=8)
        sessions: list[int] | None = None
        roi: str = "nsdgeneral"
        space: Literal["func1pt8mm", "func1mm"] = "func1pt8mm"
        beta_version: Literal["betas_fithrf_GLMdenoise_RR", "betas_fithrf", "betas_assumehrf"] = (
            "betas_fithrf_GLMdenoise_RR"
        )
        test_set: Literal["shared1000", "shared982"] = "shared1000"
        zscore: bool = True
        average_test_repeats: bool = True

    def preflight(self):
        d = self.config.data_dir
        if d is not None and not Path(d).expanduser().is_dir():
            return [
                f"stages.{self.name}.data_dir: {d!r} does not exist or is not a directory "
                "(expected the NSD root, the folder that holds nsddata/)"
            ]
        return []

    def _root(self, ctx) -> Path:
        if ctx.has_input("nsd_root"):
            return ctx.input("nsd_root")
        root = self.config.data_dir or ctx.data_dir
        if root is None:
            raise BadInputError(
                f"stages.{self.name}: no NSD data directory. Pass --data-dir, set data_dir in "
                "the pipeline or $BDS_DATA_DIR, pointing at the folder that holds nsddata/."
            )
        return Path(root)

    def external_inputs(self, ctx):
        if ctx.has_input("nsd_root"):
            return {}
        root = self._root(ctx)
        layout = NSDLayout(
            root,
            self.config.subject,
            space=self.config.space,
            beta_version=self.config.beta_version,
        )
        files = {
            "expdesign": layout.expdesign,
            "stimuli": layout.stimuli,
            "roi": layout.roi(self.config.roi),
        }
        sessions = self.config.sessions or layout.available_sessions()
        for s in sessions:
            files[f"betas_session{s:02d}"] = layout.betas(s)
        return files

    def run(self, ctx):
        root = self._root(ctx)
        c = self.config
        trials = load_nsd(
            root,
            c.subject,
            sessions=c.sessions,
            roi=c.roi,
            space=c.space,
            beta_version=c.beta_version,
            test_set=c.test_set,
        )
        if c.zscore:
            trials = zscore_per_session(trials)
        if c.average_test_repeats:
            trials = average_repeats(trials, split="test")
        save_trials(ctx.output("trials", "trials.h5"), trials)
        layout = NSDLayout(root, c.subject, space=c.space, beta_version=c.beta_version)
        ids = np.unique(trials.stimulus_ids)
        write_json_atomic(
            ctx.output("stimuli", "stimuli.json"),
            {
                "format": "nsd_imgBrick",
                "path": str(Path(layout.stimuli).resolve()),
                "fingerprint": fingerprint_file(layout.stimuli),
                "ids": ids.tolist(),
                "test_ids": np.unique(trials.stimulus_ids[trials.split == "test"]).tolist(),
                "nsd_root": str(Path(root).resolve()),
            },
        )
        ctx.extra.update(
            {
                "n_trials": len(trials),
                "n_voxels": int(trials.X.shape[1]),
                "n_train": int(np.sum(trials.split == "train")),
                "n_test": int(np.sum(trials.split == "test")),
            }
        )


def _read_stimuli(stimuli_json: Path) -> dict:
    info = json.loads(Path(stimuli_json).read_text())
    if stimulus_format(info) == "nsd_hdf5" and not Path(info["path"]).is_file():
        raise BadInputError(
            f"The stimulus file {info['path']!r} recorded by an earlier stage is gone; "
            "re-run with --force on the data stage."
        )
    return info


# ------------------------------------------------------------------------- features
@register_stage
class ExtractFeatures(Stage):
    """Compute stimulus features into the HDF5 feature cache (resumable)."""

    kind = "extract_features"
    reads = ("stimuli",)
    writes = ("features",)

    class Config(StageConfig):
        extractors: dict[str, ExtractorSpec]
        cache_dir: str | None = None

    def outputs_valid(self, ctx, manifest):
        feats = json.loads(
            (ctx.run_dir / self.name / manifest["outputs"]["features"]["path"]).read_text()
        )
        ok = all(FeatureStore.exists(v["path"]) for v in feats.values())
        if not ok:
            logger.info(
                "%s: a cached feature file is missing or unreadable; re-extracting", self.name
            )
        return ok

    def run(self, ctx):
        stim = _read_stimuli(ctx.input("stimuli"))
        ids = np.asarray(stim["ids"])
        out = {}
        for name, spec in self.config.extractors.items():
            extractor = spec.build(ctx.device)
            stimulus_set = {
                "file_fingerprint": stim["fingerprint"],
                "ids_hash": hash_json(ids.tolist()),
            }
            if spec.input == "captions":
                load, stimulus_set["captions"] = _caption_loader(stim, self.name)
            else:
                load = lambda b, s=stim: read_stimulus_images(s, b)  # noqa: E731
            path = extract_features(
                extractor,
                ids,
                load,
                stimulus_set=stimulus_set,
                cache_dir=self.config.cache_dir,
            )
            out[name] = {
                "path": str(path),
                "kind": spec.kind,
                "spec": spec.model_dump(),
                "fields": {k: list(v[0]) for k, v in extractor.fields().items()},
                "fingerprint": fingerprint_file(path),
            }
        write_json_atomic(ctx.output("features", "features.json"), out)


def _caption_loader(stim: dict, stage_name: str):
    """``load(ids) -> caption sets`` from the NSD stimulus info + COCO captions, and its key."""
    from ..datasets import NSDLayout, read_nsd_captions

    root = stim.get("nsd_root")
    if root is None:
        raise BadInputError(
            f"stages.{stage_name}: an extractor with input 'captions' needs the NSD root "
            "recorded by the data stage; re-run the data stage (--force fmri)."
        )
    layout = NSDLayout(root, 1)
    files = sorted(Path(layout.annotations_dir).glob("captions_*.json"))
    key = {
        "stim_info": fingerprint_file(layout.stim_info) if layout.stim_info.is_file() else None,
        "annotations": {f.name: fingerprint_file(f) for f in files},
    }
    return (lambda ids: read_nsd_captions(root, ids)), key


def _parse_target(target: str, features: dict) -> list[tuple[str, str]]:
    """'name' -> all fields of that extractor; 'name.field' -> that field."""
    name, _, field = target.partition(".")
    if name not in features:
        raise BadInputError(
            f"target {target!r}: no extractor named {name!r} in the features stage "
            f"(it has {sorted(features)})."
        )
    fields = list(features[name]["fields"])
    if field and field not in fields:
        raise BadInputError(f"target {target!r}: extractor {name!r} has fields {fields}.")
    return [(name, f) for f in ([field] if field else fields)]


# --------------------------------------------------------------------------- models
@register_stage
class RidgeStage(Stage):
    """Ridge decoders (brain -> features) or encoders (features -> brain); test predictions.

    Decoding fits one :class:`~braindecode_suite.models.RidgeCV` per target feature field
    and writes the predicted features of the test stimuli. Encoding fits one model from the
    concatenated feature fields to every voxel and writes the predicted test responses with
    voxelwise Pearson r and R² against the measured (repeat-averaged) test responses.
    """

    kind = "ridge"
    reads = ("trials", "features")
    writes = ("predictions", "models")

    class Config(StageConfig):
        direction: Literal["decode", "encode"] = "decode"
        targets: list[str] = Field(min_length=1)
        alphas: list[float] = Field(default_factory=lambda: list(DEFAULT_ALPHAS))
        cv: Literal["loo", "gcv"] | int = "loo"
        cv_groups: Literal["session"] | None = None
        standardize_X: bool = True
        standardize_Y: bool = False
        rescale_predictions: bool = False
        backend: Literal["numpy", "torch"] = "numpy"
        dtype: Literal["float32", "float64"] = "float32"
        n_targets_batch: int | None = Field(None, ge=1)
        memory_limit: float = Field(2.0, gt=0)

        @field_validator("alphas")
        @classmethod
        def _positive(cls, v):
            if not v or any(a <= 0 for a in v):
                raise ValueError("alphas must be a non-empty list of values > 0")
            return v

        @model_validator(mode="after")
        def _cv_groups_need_kfold(self):
            if self.cv_groups is not None and not isinstance(self.cv, int):
                raise ValueError("cv_groups needs an integer cv (the number of group folds)")
            if isinstance(self.cv, int) and self.cv < 2:
                raise ValueError("an integer cv must be >= 2 folds")
            return self

    def _estimator(self, device):
        from sklearn.model_selection import GroupKFold

        c = self.config
        cv = GroupKFold(c.cv) if c.cv_groups else c.cv
        backend_device = device if c.backend == "torch" else "cpu"
        return RidgeCV(
            alphas=c.alphas,
            cv=cv,
            standardize_X=c.standardize_X,
            standardize_Y=c.standardize_Y,
            rescale_predictions=c.rescale_predictions,
            backend=c.backend,
            device=backend_device,
            dtype=c.dtype,
            n_targets_batch=c.n_targets_batch,
            memory_limit=c.memory_limit,
        )

    def run(self, ctx):
        trials = load_trials(ctx.input("trials"))
        features = json.loads(ctx.input("features").read_text())
        train, test = trials.split == "train", trials.split == "test"
        if not train.any() or not test.any():
            raise BadInputError(
                f"stages.{self.name}: the trials need both a train and a test split."
            )
        test_ids = trials.stimulus_ids[test]
        if len(np.unique(test_ids)) != len(test_ids):
            raise BadInputError(
                f"stages.{self.name}: test stimuli repeat; average the test repeats first "
                "(average_test_repeats: true in the data stage)."
            )
        targets = [t for target in self.config.targets for t in _parse_target(target, features)]
        groups = trials.session[train] if self.config.cv_groups == "session" else None
        models_dir = ctx.output("models", "models")
        models_dir.mkdir(exist_ok=True)
        out_path = ctx.output("predictions", "predictions.h5")
        if self.config.direction == "decode":
            self._decode(
                ctx, trials, features, targets, train, test_ids, groups, models_dir, out_path
            )
        else:
            self._encode(ctx, trials, features, targets, train, test, groups, models_dir, out_path)

    def _decode(
        self, ctx, trials, features, targets, train, test_ids, groups, models_dir, out_path
    ):
        fields = {f"{n}.{f}": (tuple(features[n]["fields"][f]), "float32") for n, f in targets}
        scores = {}
        with FeatureStore.open_writer(
            out_path, test_ids, fields, attrs={"kind": "predictions", "direction": "decode"}
        ) as w:
            arrays = {}
            for name, field in targets:
                store = FeatureStore(features[name]["path"])
                y_train = store.read(field, trials.stimulus_ids[train]).reshape(train.sum(), -1)
                y_test = store.read(field, test_ids).reshape(len(test_ids), -1)
                model = self._estimator(ctx.device).fit(trials.X[train], y_train, groups=groups)
                pred = model.predict(trials.X[trials.split == "test"]).astype(np.float32)
                key = f"{name}.{field}"
                model.save_pretrained(models_dir / key)
                arrays[key] = pred.reshape((len(pred), *fields[key][0]))
                r = [np.corrcoef(a, b)[0, 1] for a, b in zip(pred, y_test, strict=True)]
                scores[key] = {
                    "mean_test_r_per_stimulus": float(np.nanmean(r)),
                    "median_alpha": float(np.median(model.best_alphas_)),
                    "form": model.form_,
                }
                logger.info(
                    "%s: %s decoded (%s form), mean r(pred, true) per test stimulus = %.3f",
                    self.name,
                    key,
                    model.form_,
                    scores[key]["mean_test_r_per_stimulus"],
                )
            w.append(test_ids, arrays)
        ctx.extra["decoding"] = scores

    def _encode(self, ctx, trials, features, targets, train, test, groups, models_dir, out_path):
        from ..models.encoding import compute_pearson_r, compute_r2

        def design(ids):
            blocks = [
                FeatureStore(features[n]["path"]).read(f, ids).reshape(len(ids), -1)
                for n, f in targets
            ]
            return np.concatenate(blocks, axis=1)

        test_ids = trials.stimulus_ids[test]
        model = self._estimator(ctx.device).fit(
            design(trials.stimulus_ids[train]), trials.X[train], groups=groups
        )
        pred = model.predict(design(test_ids)).astype(np.float32)
        model.save_pretrained(models_dir / "encoder")
        r = compute_pearson_r(trials.X[test], pred)
        r2 = compute_r2(trials.X[test], pred)
        np.savez(ctx.output("encoding_scores", "encoding_scores.npz"), pearson_r=r, r2=r2)
        with FeatureStore.open_writer(
            out_path,
            test_ids,
            {"voxels": ((pred.shape[1],), "float32")},
            attrs={
                "kind": "predictions",
                "direction": "encode",
                "features": [f"{n}.{f}" for n, f in targets],
            },
        ) as w:
            w.append(test_ids, {"voxels": pred})
        ctx.extra["encoding"] = {
            "median_r": float(np.nanmedian(r)),
            "mean_r": float(np.nanmean(r)),
            "median_r2": float(np.nanmedian(r2)),
            "median_alpha": float(np.median(model.best_alphas_)),
        }
        logger.info(
            "%s: encoding model, median voxel r = %.3f",
            self.name,
            ctx.extra["encoding"]["median_r"],
        )


# ------------------------------------------------------------------- reconstruction
@register_stage
class Reconstruct(Stage):
    """Images from predicted features (method registry; diffusion methods plug in here)."""

    kind = "reconstruct"
    reads = ("predictions",)
    writes = ("reconstructions",)

    class Config(StageConfig):
        method: str = "lowlevel"
        source: str = "pixels.pixels"
        output_size: int = Field(256, ge=16)
        blur: float = Field(0.0, ge=0)

        @field_validator("method")
        @classmethod
        def _known(cls, v):
            if v not in METHODS:
                raise ValueError(f"unknown method; expected one of {sorted(METHODS)}")
            return v

    def run(self, ctx):
        preds = FeatureStore(ctx.input("predictions"))
        if self.config.source not in preds.fields:
            raise BadInputError(
                f"stages.{self.name}.source: {self.config.source!r} is not among the "
                f"predictions {preds.fields}; decode it in the ridge stage's targets."
            )
        ids = preds.stimulus_ids
        images = get_method(self.config.method)(
            preds.read(self.config.source),
            output_size=self.config.output_size,
            blur=self.config.blur,
        )
        write_reconstructions(ctx, ids, images, {"method": self.config.method})


# ------------------------------------------------------------------------ evaluation
class BrainCorrelationSpec(StageConfig):
    """Brain correlation inside the evaluation stage (docs/evaluation.md)."""

    features: list[str] = Field(
        min_length=1,
        description="extractors of the features stage whose fields (concatenated) are the "
        "encoder's input; the same extractors are run on the reconstructions",
    )
    rois: list[str] = Field(default_factory=lambda: list(BRAIN_CORRELATION_ROIS))
    alphas: list[float] = Field(default_factory=lambda: list(DEFAULT_ALPHAS))

    @field_validator("rois")
    @classmethod
    def _known_rois(cls, v):
        known = {*NSD_ROIS, "higher_vis", "all"}
        bad = [r for r in v if r not in known]
        if bad:
            raise ValueError(f"unknown region(s) {bad}; expected names from {sorted(known)}")
        return v


@register_stage
class EvaluateImages(Stage):
    """A paper's protocol (PixCorr ... SwAV), brain correlation, identification, decoded features."""

    kind = "evaluate_images"
    reads = ("reconstructions", "stimuli")
    optional_reads = ("predictions", "features", "trials")
    writes = ("metrics",)
    publish = ("metrics",)

    class Config(StageConfig):
        protocol: Literal["mindeye2", "mindeye", "brain-diffuser", "takagi"] | None = None
        weights: dict[str, str] = Field(
            default_factory=dict,
            description="protocol network -> local weights file (default: the caches)",
        )
        size: int = Field(425, ge=16)
        networks: dict[str, ExtractorSpec] = Field(default_factory=dict)
        decoded_features: bool = True
        retrieval: bool = True
        brain_correlation: BrainCorrelationSpec | None = None
        n_boot: int = Field(1000, ge=10)

    def run(self, ctx):
        recon_store = FeatureStore(ctx.input("reconstructions"))
        ids = recon_store.stimulus_ids
        stim = _read_stimuli(ctx.input("stimuli"))
        gt = read_stimulus_images(stim, ids)
        recon = recon_store.read("image")
        c = self.config
        networks = {n: s.build(ctx.device) for n, s in c.networks.items()}
        decoded = None
        if c.decoded_features and ctx.has_input("predictions") and ctx.has_input("features"):
            features = json.loads(ctx.input("features").read_text())
            preds = FeatureStore(ctx.input("predictions"))
            decoded = {}
            for key in preds.fields:
                name, _, field = key.partition(".")
                true = FeatureStore(features[name]["path"]).read(field, ids)
                decoded[key] = (true, preds.read(key, ids))
        metrics = {}
        table = None
        if c.protocol is not None:
            metrics = evaluate_protocol(
                recon,
                gt,
                protocol=c.protocol,
                device=ctx.device,
                n_boot=c.n_boot,
                random_state=ctx.seed,
                weights=c.weights or None,
            )
            table = format_paper_table(paper_table(metrics, label=f"{self.name} (this run)"))
        metrics.update(
            evaluate_images(
                recon,
                gt,
                size=c.size,
                networks=networks,
                decoded_features=decoded,
                n_boot=c.n_boot,
                random_state=ctx.seed,
                low_level=c.protocol is None,
            )
        )
        if c.retrieval and decoded:
            for key, (true, pred) in decoded.items():
                res = retrieval_top1(pred, true, random_state=ctx.seed)
                for direction in ("brain_to_image", "image_to_brain"):
                    metrics[f"retrieval_{direction}/{key}"] = {
                        "mean": res[direction]["mean"],
                        "ci": res[direction]["ci"],
                        "chance": res["chance"],
                        "n": len(ids),
                        "direction": "higher",
                        "note": res["note"],
                    }
        if c.brain_correlation is not None:
            metrics.update(self._brain_correlation(ctx, ids, recon, gt, networks))
        meta = metrics.pop("_meta", {})
        metrics["_meta"] = {
            **meta,
            "n_test_images": len(ids),
            "size": c.size,
            "protocol": (
                f"{c.protocol} (docs/evaluation.md)"
                if c.protocol
                else "PixCorr/SSIM as Brain-Diffuser and MindEye (both images resized to size "
                "px); two-way identification as MindEye (chance 0.5)"
            ),
        }
        out = ctx.output("metrics", "metrics.json")
        if table is not None:
            metrics["_meta"]["paper_table"] = table
            with atomic_path(out.parent / "table.md") as tmp:
                tmp.write_text(table + "\n")
        write_json_atomic(out, metrics)

    def _brain_correlation(self, ctx, ids, recon, gt, networks: dict) -> dict:
        """Fit a ridge encoder (features -> voxels) on the training trials, then score."""
        from ..datasets import nsd_roi_masks
        from ..evaluation import evaluate_brain_correlation

        spec = self.config.brain_correlation
        where = f"stages.{self.name}.brain_correlation"
        if not (ctx.has_input("trials") and ctx.has_input("features")):
            raise BadInputError(
                f"{where} needs the trials and features of earlier stages (a data stage and an "
                "extract_features stage)."
            )
        trials = load_trials(ctx.input("trials"))
        features = json.loads(ctx.input("features").read_text())
        for name in spec.features:
            if name not in features:
                raise BadInputError(
                    f"{where}.features: {name!r} is not an extractor of the features stage "
                    f"(it has {sorted(features)})."
                )
            if "spec" not in features[name]:
                raise BadInputError(
                    f"{where}.features: the features stage ran before extractor specs were "
                    "recorded; re-run it (--force with the features stage's name)."
                )
        test = trials.split == "test"
        if len(np.unique(trials.stimulus_ids[test])) != int(test.sum()):
            trials = average_repeats(trials, split="test")
            test = trials.split == "test"
        rows = {int(k): i for i, k in enumerate(trials.stimulus_ids)}
        missing_ids = [int(k) for k in ids if int(k) not in rows or not test[rows[int(k)]]]
        if missing_ids:
            raise BadInputError(
                f"{where}: reconstructed stimuli {missing_ids[:5]} have no test trials."
            )
        measured = trials.X[[rows[int(k)] for k in ids]].reshape(len(ids), -1)
        train = trials.split == "train"
        fields = [(n, f) for n in spec.features for f in features[n]["fields"]]

        def design_from_store(stim_ids):
            return np.concatenate(
                [
                    FeatureStore(features[n]["path"]).read(f, stim_ids).reshape(len(stim_ids), -1)
                    for n, f in fields
                ],
                axis=1,
            )

        extractors = {}
        for n in spec.features:
            wanted = ExtractorSpec(**features[n]["spec"])
            # an identification network of this stage with the same spec: loaded once
            same = self.config.networks.get(n) == wanted
            extractors[n] = networks[n] if same else wanted.build(ctx.device)

        def design_from_images(images):
            out = {n: e.transform(images) for n, e in extractors.items()}
            return np.concatenate([out[n][f].reshape(len(images), -1) for n, f in fields], axis=1)

        encoder = RidgeCV(alphas=spec.alphas).fit(
            design_from_store(trials.stimulus_ids[train]), trials.X[train].reshape(train.sum(), -1)
        )
        rois, missing = None, {}
        named = [r for r in spec.rois if r != "all"]
        info = trials.info
        if named and "voxel_ijk" in info and info.get("data_dir"):
            rois, missing = nsd_roi_masks(
                info["data_dir"],
                int(trials.subject[0]),
                np.asarray(info["voxel_ijk"]),
                rois=named,
                space=info.get("space", "func1pt8mm"),
            )
        elif named:
            missing = dict.fromkeys(named, "the trials carry no NSD voxel coordinates")
        if "all" in spec.rois or not rois:
            rois = {"all": np.ones(measured.shape[1], dtype=bool), **(rois or {})}
        results = evaluate_brain_correlation(
            recon,
            measured,
            encoder=encoder,
            features=design_from_images,
            rois=rois,
            gt=gt,
            n_boot=self.config.n_boot,
            random_state=ctx.seed,
        )
        for name, reason in missing.items():
            results[f"BrainCorr/{name}"] = {"missing": reason}
        for entry in results.values():
            if "mean" in entry:
                entry["encoder"] = (
                    f"ridge from {'+'.join(spec.features)} features (median alpha "
                    f"{float(np.median(encoder.best_alphas_)):.3g}), fitted on "
                    f"{int(train.sum())} training trials"
                )
        return results


@register_stage
class Report(Stage):
    """The reconstruction grid PNG and a self-contained report.html."""

    kind = "report"
    reads = ("metrics", "reconstructions", "stimuli")
    gathers = ("reconstructions", "metrics", "captions", "meshes", "finetune_curve")
    writes = ("grid", "report_html", "summary")
    publish = ("grid", "report_html", "summary")

    class Config(StageConfig):
        title: str = "braindecode_suite run"
        n_grid: int = Field(16, ge=1)

    def run(self, ctx):
        import shutil

        stim = _read_stimuli(ctx.input("stimuli"))
        # the main route's metrics, published as <run>/metrics.json
        shutil.copyfile(ctx.input("metrics"), ctx.output("summary", "metrics.json"))
        build_report(
            metrics_path=ctx.input("metrics"),
            reconstructions_path=ctx.input("reconstructions"),
            stimuli_path=stim.get("path"),
            manifests=ctx.stage_manifests(),
            provenance=ctx.provenance,
            title=self.config.title,
            n_grid=self.config.n_grid,
            grid_path=ctx.output("grid", "reconstructions.png"),
            html_path=ctx.output("report_html", "report.html"),
            run_dir=ctx.run_dir,
            stimuli=stim,
        )
