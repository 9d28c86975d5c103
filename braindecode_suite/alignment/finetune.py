"""One API over the four ways the field brings a new subject into a pretrained decoder.

=================  ====================  ===================================================
method             pretrained model      what happens
=================  ====================  ===================================================
``'adapter'``      MindEye2Decoder       a new linear adapter into the shared latent, then
                                         fine-tuning (MindEye2)
``'reset_tuning'`` MindBridgeDecoder     a new embedder and builder after adaptive pooling,
                                         then tuning (MindBridge)
``'cluster_nn'``   BrainITDecoder        new voxels join the nearest functional cluster,
                                         then fine-tuning (Brain-IT)
``'functional'``   any deep decoder      the new subject's responses to shared stimuli are
                                         aligned into a reference subject's voxels; the
                                         pretrained model decodes them as that subject
=================  ====================  ===================================================

:func:`adapt` is the one call; :func:`finetune_report` scores an adapted model against the
same architecture trained from scratch and the pretrained model with no adaptation;
:func:`finetune_curve` does so over fractions of a simulated new subject's data
(:func:`~braindecode_suite.datasets.make_multisubject`).

Scores are computed here by small local functions (this layer sits below
``evaluation``): mean target correlation (mean over target dimensions of the Pearson
correlation across test items) and two-way identification with the definition of
:func:`braindecode_suite.evaluation.two_way_identification`. The CLI and the pipeline pass
``scorer=`` built on the evaluation layer instead.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..datasets.synthetic import MultiSubject
from ..models.deep import (
    ADAPT_METHODS,
    BrainITConfig,
    BrainITDecoder,
    DeepDecoder,
    MindBridgeConfig,
    MindBridgeDecoder,
    MindEye2Config,
    MindEye2Decoder,
    TrainConfig,
    adapt_new_subject,
    load_decoder,
    train_decoder,
    train_from_scratch,
)
from ..utils.io import write_json_atomic
from ..utils.logging import logger
from ..utils.validation import BadInputError, check_array, check_option, check_positive_int
from .functional import ADAPTER_METHODS, FunctionalAlignmentAdapter

__all__ = [
    "FINETUNE_METHODS",
    "FAMILIES",
    "PUBLISHED_FINETUNE",
    "AdaptedDecoder",
    "FinetuneReport",
    "adapt",
    "finetune_curve",
    "finetune_report",
    "mean_target_correlation",
    "read_training_info",
    "small_decoder",
    "two_way_score",
    "write_training_info",
]

#: the methods of :func:`adapt` ('auto' picks the pretrained family's own)
FINETUNE_METHODS = ("auto", *ADAPT_METHODS, "functional")

#: family name → decoder class (for :func:`small_decoder` and :func:`finetune_curve`)
FAMILIES = {"mindeye2": MindEye2Decoder, "mindbridge": MindBridgeDecoder, "brainit": BrainITDecoder}

#: published new-subject rows (CLIP two-way identification, NSD, %)
PUBLISHED_FINETUNE = [
    {
        "model": "MindEye2",
        "training data": "1 h (1 session) of the new subject",
        "CLIP two-way (%)": 79.2,
        "source": "Scotti et al. 2024, MindEye2 (ICML 2024); value as quoted in issue 8",
    },
    {
        "model": "MindEye2",
        "training data": "40 h (all sessions)",
        "CLIP two-way (%)": 93.0,
        "source": "Scotti et al. 2024, MindEye2 (ICML 2024); value as quoted in issue 8",
    },
    {
        "model": "Brain-IT",
        "training data": "1 h (1 session) of the new subject",
        "CLIP two-way (%)": 93.0,
        "source": "Beliy et al. 2025, Brain-IT (arXiv); value as quoted in issue 8",
    },
]

TRAINING_INFO = "training.json"


# ----------------------------------------------------------------------------- scores
def mean_target_correlation(Y_true, Y_pred) -> float:
    """Mean over target dimensions of the Pearson r across items (constant columns skipped).

    Parameters
    ----------
    Y_true, Y_pred : ndarray of shape (n_items, ...)
        Flattened per item.

    Returns
    -------
    float
    """
    t, p = _pair(Y_true, Y_pred)
    t = t - t.mean(0)
    p = p - p.mean(0)
    den = np.sqrt((t**2).sum(0) * (p**2).sum(0))
    ok = den > 0
    if not ok.any():
        return float("nan")
    return float(np.mean((t * p).sum(0)[ok] / den[ok]))


def two_way_score(Y_true, Y_pred) -> float:
    """Mean two-way identification (chance 0.5), as ``evaluation.two_way_identification``.

    With ``R[i, j]`` the correlation between true item ``i`` and predicted item ``j``,
    prediction ``j`` scores the fraction of ``i != j`` with ``R[i, j] < R[j, j]``.
    """
    t, p = _pair(Y_true, Y_pred)
    if len(t) < 2:
        raise BadInputError(f"two-way identification needs at least 2 items, got {len(t)}.")

    def z(a):
        a = a - a.mean(1, keepdims=True)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    r = z(t) @ z(p).T
    return float(np.mean((r < np.diag(r)[None, :]).sum(0) / (len(t) - 1)))


def _pair(Y_true, Y_pred):
    t = check_array("Y_true", Y_true).astype(np.float64)
    p = check_array("Y_pred", Y_pred).astype(np.float64)
    t, p = t.reshape(len(t), -1), p.reshape(len(p), -1)
    if t.shape != p.shape:
        raise BadInputError(
            f"Y_true and Y_pred must have the same shape, got {t.shape} and {p.shape}."
        )
    return t, p


def _default_scorer(Y_true, Y_pred) -> dict:
    return {
        "two_way": two_way_score(Y_true, Y_pred),
        "mean_corr": mean_target_correlation(Y_true, Y_pred),
    }


# ----------------------------------------------------------------------------- adapt
class _ReferenceDecoder:
    """A pretrained deep decoder seen as a decoder of one (reference) subject's voxels."""

    def __init__(self, model: DeepDecoder, subject, device: str = "cpu"):
        self.model, self.subject, self.device = model, subject, device
        self.n_features_in_ = model.n_voxels[subject]

    def predict(self, X):
        return self.model.predict(X, self.subject, device=self.device)


@dataclasses.dataclass
class AdaptedDecoder:
    """What :func:`adapt` returns: a decoder of the new subject.

    Attributes
    ----------
    method : str
        The method used ('adapter', 'reset_tuning', 'cluster_nn' or 'functional').
    model : DeepDecoder
        The adapted copy (deep methods) or the unchanged pretrained model ('functional').
    subject : int or str
        For deep methods the new subject's id in ``model``; for 'functional' the reference
        subject whose input the aligned responses are fed to.
    alignment : FunctionalAlignmentAdapter or None
        The fitted alignment ('functional' only).
    history : list of dict
        Fine-tuning losses per step (empty for 'functional').
    """

    method: str
    model: DeepDecoder
    subject: object
    alignment: FunctionalAlignmentAdapter | None = None
    history: list = dataclasses.field(default_factory=list)

    def predict(self, X, *, device: str = "cpu") -> np.ndarray:
        """Decode the new subject's responses ``X`` (n, n_voxels_new)."""
        if self.alignment is not None:
            self.alignment.reference_decoder.device = device
            return self.alignment.predict(check_array("X", X, ndim=2))
        return self.model.predict(X, self.subject, device=device)

    def save_pretrained(self, folder) -> Path:
        """The model (``save_pretrained``) plus ``adaptation.json`` (and the alignment)."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        meta = {"method": self.method, "subject": self.subject}
        if self.alignment is not None:
            self.alignment.alignment_.save(folder / "alignment.safetensors")
            meta["alignment"] = self.alignment.method
        write_json_atomic(folder / "adaptation.json", meta)
        return folder


def _load(model_or_dir) -> DeepDecoder:
    if isinstance(model_or_dir, DeepDecoder):
        return model_or_dir
    if isinstance(model_or_dir, str | Path):
        path = Path(model_or_dir)
        if not path.is_dir():
            raise BadInputError(
                f"model_or_dir: {str(path)!r} is not a folder; expected a pretrained model "
                "folder written by save_pretrained (config.json + model.safetensors)."
            )
        return load_decoder(path)
    raise BadInputError(
        f"model_or_dir must be a DeepDecoder or a model folder, got {type(model_or_dir).__name__}."
    )


def _family_method(model: DeepDecoder) -> str:
    for m, klass in ADAPT_METHODS.items():
        if isinstance(model, klass):
            return m
    raise BadInputError(f"No adaptation method known for {type(model).__name__}.")


def adapt(
    model_or_dir,
    X_new=None,
    Y_new=None,
    *,
    method: str = "auto",
    subject=None,
    train_config: TrainConfig | None = None,
    X_new_shared=None,
    X_ref_shared=None,
    reference_subject=None,
    alignment: str = "srm",
    alignment_params: dict | None = None,
    freeze_backbone: bool = False,
    seed: int = 0,
) -> AdaptedDecoder:
    """Adapt a pretrained multi-subject decoder to a new subject, by any of the four ways.

    Parameters
    ----------
    model_or_dir : DeepDecoder or path
        The pretrained decoder, or its folder (``save_pretrained``).
    X_new : ndarray of shape (n_samples, n_voxels_new) or None
        The new subject's training responses (any voxel count); not used by 'functional'.
    Y_new : ndarray or dict or None
        Their targets (as for ``train_decoder``); not used by 'functional'.
    method : 'auto' | 'adapter' | 'reset_tuning' | 'cluster_nn' | 'functional'
        'auto' picks the pretrained family's own method (see the module table).
    subject : int or str or None
        The new subject's id in the adapted model (deep methods; default: the next id).
    train_config : TrainConfig or None
        Fine-tuning settings (deep methods).
    X_new_shared, X_ref_shared : ndarray or None
        'functional' only: the new and the reference subject's responses to the same shared
        stimuli, rows paired (n_shared, n_voxels_new) and (n_shared, n_voxels_reference).
    reference_subject : int or str or None
        'functional' only: a subject of the pretrained model; None picks the only subject
        whose voxel count equals ``X_ref_shared``'s.
    alignment : 'procrustes' | 'ridge' | 'srm'
        'functional' only: the alignment of :class:`FunctionalAlignmentAdapter`.
    alignment_params : dict or None
        'functional' only: keyword arguments of the alignment class.
    freeze_backbone : bool
        Deep methods: train only the new subject's parameters.
    seed : int
        Seed of the new subject's initial parameters.

    Returns
    -------
    AdaptedDecoder
        ``.predict(X_new_test)`` decodes the new subject.
    """
    import torch

    check_option("method", method, FINETUNE_METHODS)
    model = _load(model_or_dir)
    if method == "functional":
        return _adapt_functional(
            model, X_new_shared, X_ref_shared, reference_subject, alignment, alignment_params
        )
    method = _family_method(model) if method == "auto" else method
    if X_new is None or Y_new is None:
        raise BadInputError(
            f"method={method!r} fine-tunes on the new subject's data: give X_new and Y_new "
            "(got None)."
        )
    torch.manual_seed(seed)
    res = adapt_new_subject(
        model,
        X_new,
        Y_new,
        method=method,
        subject=subject,
        train_config=train_config,
        freeze_backbone=freeze_backbone,
    )
    new = [s for s in res.model.subjects if s not in model.subjects][0]
    return AdaptedDecoder(method=method, model=res.model, subject=new, history=res.history)


def _adapt_functional(model, X_new_shared, X_ref_shared, reference, alignment, params):
    check_option("alignment", alignment, ADAPTER_METHODS)
    if X_new_shared is None or X_ref_shared is None:
        raise BadInputError(
            "method='functional' aligns on shared stimuli: give X_new_shared and X_ref_shared "
            "(the new and the reference subject's responses to the same stimuli), got None."
        )
    X_ref_shared = check_array("X_ref_shared", X_ref_shared, ndim=2)
    X_new_shared = check_array("X_new_shared", X_new_shared, ndim=2)
    if reference is None:
        match = [s for s, n in model.n_voxels.items() if n == X_ref_shared.shape[1]]
        if len(match) != 1:
            raise BadInputError(
                f"reference_subject=None: X_ref_shared has {X_ref_shared.shape[1]} voxels, "
                f"which {'no' if not match else 'more than one'} subject of the model has "
                f"({model.n_voxels}); give reference_subject."
            )
        reference = match[0]
    model.check_subject(reference)
    if X_ref_shared.shape[1] != model.n_voxels[reference]:
        raise BadInputError(
            f"X_ref_shared has {X_ref_shared.shape[1]} voxels but reference subject "
            f"{reference!r} has {model.n_voxels[reference]} in the pretrained model."
        )
    adapter = FunctionalAlignmentAdapter(
        _ReferenceDecoder(model, reference), alignment, params
    ).fit(X_new_shared, X_ref_shared)
    return AdaptedDecoder(method="functional", model=model, subject=reference, alignment=adapter)


# ----------------------------------------------------------------------------- report
@dataclasses.dataclass
class FinetuneReport:
    """What :func:`finetune_report` returns.

    Attributes
    ----------
    scores : dict
        ``{"adapted": {...}, "scratch": {...}, "no_adaptation": {...}}``; each holds the
        scorer's numbers (default ``two_way`` and ``mean_corr``) or ``not_applicable``
        (the reason), plus ``how``.
    adapted : AdaptedDecoder
    scratch : DeepDecoder
    info : dict
        Method, numbers of train and test items, steps.
    """

    scores: dict
    adapted: AdaptedDecoder
    scratch: DeepDecoder
    info: dict

    def to_dict(self) -> dict:
        return {**self.info, **self.scores}


def _mean_subject_modules(model: DeepDecoder, n_voxels: int):
    """A copy of ``model`` with a new subject whose own parameters are the mean of those of
    the existing subjects; None (and the reason) when their shapes differ."""
    if isinstance(model, BrainITDecoder):
        return None, "Brain-IT voxel embeddings belong to single voxels: no mean across subjects"
    new = copy.deepcopy(model)
    sid = "mean_subject"
    new.add_subject(sid, n_voxels)
    olds = [model.subject_parameters(s) for s in model.subjects]
    mine = new.subject_parameters(sid)
    import torch

    for i, p in enumerate(mine):
        shapes = {tuple(o[i].shape) for o in olds}
        if shapes != {tuple(p.shape)}:
            return None, (
                f"the pretrained subjects' input layers have shapes {sorted(shapes)}, the new "
                f"subject's would be {tuple(p.shape)} (voxel counts {model.n_voxels} vs "
                f"{n_voxels}): no mean of existing adapters applies"
            )
        with torch.no_grad():
            p.copy_(torch.stack([o[i].detach() for o in olds]).mean(0))
    return new, sid


def finetune_report(
    model_or_dir,
    X_train,
    Y_train,
    X_test,
    Y_test,
    *,
    method: str = "auto",
    subject=None,
    train_config: TrainConfig | None = None,
    scratch_config: TrainConfig | None = None,
    X_new_shared=None,
    X_ref_shared=None,
    reference_subject=None,
    scorer: Callable | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> FinetuneReport:
    """Adapted vs same architecture from scratch vs the pretrained model with no adaptation.

    Parameters
    ----------
    model_or_dir : DeepDecoder or path
        The pretrained decoder or its folder.
    X_train, Y_train : ndarray
        The new subject's training responses and targets.
    X_test, Y_test : ndarray
        Its test responses and targets (scored).
    method : str
        As in :func:`adapt` (with 'functional', ``X_new_shared``/``X_ref_shared`` needed).
    subject : int or str or None
        New subject id.
    train_config : TrainConfig or None
        Fine-tuning settings; ``scratch_config`` (default: the same) trains the baseline.
    X_new_shared, X_ref_shared, reference_subject
        Shared-stimulus responses for 'functional' and for the no-adaptation baseline when
        no mean of existing adapters applies.
    scorer : callable or None
        ``scorer(Y_true, Y_pred) -> dict`` of numbers; default two-way identification and
        mean target correlation (local functions of this module).
    device : str
        Where predictions run.
    seed : int
        Seed of the new parameters and of the scratch model's initial weights.

    Returns
    -------
    FinetuneReport
    """
    scorer = scorer or _default_scorer
    pretrained = _load(model_or_dir)
    X_train = check_array("X_train", X_train, ndim=2)
    X_test = check_array("X_test", X_test, ndim=2)
    if X_test.shape[1] != X_train.shape[1]:
        raise BadInputError(
            f"X_test has {X_test.shape[1]} voxels but X_train has {X_train.shape[1]}; both "
            "must be the new subject's voxels."
        )
    cfg = train_config or TrainConfig(steps=200)
    adapted = adapt(
        pretrained,
        X_train,
        Y_train,
        method=method,
        subject=subject,
        train_config=cfg,
        X_new_shared=X_new_shared,
        X_ref_shared=X_ref_shared,
        reference_subject=reference_subject,
        seed=seed,
    )
    scores = {
        "adapted": {
            **scorer(Y_test, adapted.predict(X_test, device=device)),
            "how": f"method {adapted.method!r}",
        }
    }
    new_id = adapted.subject if adapted.method != "functional" else "new"
    scratch = train_from_scratch(
        pretrained, X_train, Y_train, subject=new_id, train_config=scratch_config or cfg, seed=seed
    ).model
    scores["scratch"] = {
        **scorer(Y_test, scratch.predict(X_test, new_id, device=device)),
        "how": f"{type(pretrained).__name__} of the same sizes trained on the same trials only",
    }
    scores["no_adaptation"] = _no_adaptation(
        pretrained, X_test, Y_test, X_new_shared, X_ref_shared, reference_subject, scorer, device
    )
    info = {
        "method": adapted.method,
        "model_class": type(pretrained).__name__,
        "pretrained_subjects": [s for s in pretrained.subjects],
        "n_train": int(len(X_train)),
        "n_test": int(len(X_test)),
        "n_voxels": int(X_train.shape[1]),
        "steps": int(cfg.steps),
    }
    return FinetuneReport(scores=scores, adapted=adapted, scratch=scratch, info=info)


def _no_adaptation(pretrained, X_test, Y_test, X_new_sh, X_ref_sh, reference, scorer, device):
    mean_model, sid = _mean_subject_modules(pretrained, X_test.shape[1])
    if mean_model is not None:
        pred = mean_model.predict(X_test, sid, device=device)
        return {**scorer(Y_test, pred), "how": "mean of the pretrained subjects' input layers"}
    why = sid
    if X_new_sh is not None and X_ref_sh is not None:
        fa = _adapt_functional(pretrained, X_new_sh, X_ref_sh, reference, "srm", None)
        return {
            **scorer(Y_test, fa.predict(X_test, device=device)),
            "how": f"functional alignment (srm) into subject {fa.subject!r}, no fine-tuning",
        }
    return {
        "not_applicable": f"{why}; and no shared-stimulus responses were given for a "
        "functional alignment",
        "how": "pretrained model without new parameters",
    }


# ----------------------------------------------------------------------------- curve
def small_decoder(
    family: str, n_voxels: dict, target_dim: int, *, seed: int = 0, **params
) -> DeepDecoder:
    """A small decoder of one family whose primary output has ``target_dim`` values.

    Parameters
    ----------
    family : 'mindeye2' | 'mindbridge' | 'brainit'
    n_voxels : dict
        Subject → voxel count.
    target_dim : int
        Width of the target (one token / patch of this width).
    seed : int
        Seed of the initial weights.
    **params
        Overrides of the family's config fields.
    """
    import torch

    check_option("family", family, FAMILIES)
    target_dim = check_positive_int("target_dim", target_dim)
    torch.manual_seed(seed)
    if family == "mindeye2":
        cfg = dict(
            hidden_dim=64,
            n_blocks=1,
            n_tokens=1,
            clip_dim=target_dim,
            lowlevel_shape=(),
            mse_weight=1.0,
            mixco_fraction=0.2,
            dropout=0.0,
            temperature=0.2,
        )
        cfg.update(params)
        return MindEye2Decoder(MindEye2Config(n_voxels=dict(n_voxels), **cfg))
    if family == "mindbridge":
        cfg = dict(
            pool_size=48,
            hidden_dim=32,
            n_tokens=1,
            clip_dim=target_dim,
            dropout=0.0,
            temperature=0.2,
        )
        cfg.update(params)
        return MindBridgeDecoder(MindBridgeConfig(n_voxels=dict(n_voxels), **cfg))
    cfg = dict(
        emb_dim=6,
        n_clusters=12,
        d_model=16,
        n_heads=2,
        n_layers=1,
        n_query_layers=1,
        n_patches=1,
        feat_dim=target_dim,
        dropout=0.0,
        kmeans_n_init=1,
    )
    cfg.update(params)
    return BrainITDecoder(BrainITConfig(n_voxels=dict(n_voxels), **cfg))


def finetune_curve(
    data: MultiSubject,
    *,
    new_subject: int | None = None,
    fractions: Sequence[float] = (0.05, 0.1, 0.25, 0.5, 1.0),
    family: str = "mindeye2",
    method: str = "auto",
    pretrain_config: TrainConfig | None = None,
    finetune_config: TrainConfig | None = None,
    model_params: dict | None = None,
    scorer: Callable | None = None,
    seed: int = 0,
) -> dict:
    """Adapted vs from scratch over fractions of a new subject's training trials.

    A small decoder of ``family`` is pretrained once on the other subjects' own ('train')
    trials; then for each fraction, the first ``ceil(fraction × n_train)`` trials of a
    seeded permutation of the new subject's training trials are used to adapt it and to
    train the same architecture from scratch (same steps). Both are scored on the new
    subject's shared ('test') stimuli, which no model was trained on.

    Parameters
    ----------
    data : MultiSubject
        From :func:`~braindecode_suite.datasets.make_multisubject`.
    new_subject : int or None
        The held-out subject (default: the last).
    fractions : sequence of float in (0, 1]
        Fractions of the new subject's training trials.
    family : 'mindeye2' | 'mindbridge' | 'brainit'
    method : str
        A deep method of :func:`adapt` ('auto': the family's own).
    pretrain_config, finetune_config : TrainConfig or None
        Defaults: 400 steps (batch 32, lr 3e-3) and 100 steps (batch 16, lr 3e-3).
    model_params : dict or None
        Overrides of :func:`small_decoder`'s config.
    scorer : callable or None
        ``scorer(Y_true, Y_pred) -> dict``; default two-way and mean correlation.
    seed : int
        Seeds the subset order, initial weights and training; the result is a function of
        the arguments.

    Returns
    -------
    dict
        ``{"fractions", "n_train", "adapted": [scores...], "scratch": [scores...],
        "gap": {metric: [adapted − scratch, ...]}, "no_adaptation", "settings"}``.
    """
    if not isinstance(data, MultiSubject):
        raise BadInputError(f"data must be a MultiSubject, got {type(data).__name__}.")
    check_option("family", family, FAMILIES)
    check_option("method", method, [m for m in FINETUNE_METHODS if m != "functional"])
    subjects = data.subjects
    new_subject = subjects[-1] if new_subject is None else new_subject
    check_option("new_subject", new_subject, subjects)
    if len(subjects) < 2:
        raise BadInputError(f"data needs at least 2 subjects, got {len(subjects)}.")
    fractions = [float(f) for f in fractions]
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise BadInputError(f"fractions must be numbers in (0, 1], got {fractions}.")
    scorer = scorer or _default_scorer

    def split(s, which):
        tr = data.trials[s]
        keep = tr.split == which
        return tr.X[keep], data.targets[tr.stimulus_ids[keep]]

    others = [s for s in subjects if s != new_subject]
    pre_data = {s: split(s, "train") for s in others}
    if any(len(x) < 2 for x, _ in pre_data.values()):
        raise BadInputError("every pretraining subject needs >= 2 'train' trials (n_unique >= 2).")
    target_dim = data.targets.shape[1]
    nv = {s: data.trials[s].X.shape[1] for s in others}
    model = small_decoder(family, nv, target_dim, seed=seed, **(model_params or {}))
    pcfg = pretrain_config or TrainConfig(steps=400, batch_size=32, lr=3e-3, warmup_steps=10)
    pcfg = dataclasses.replace(pcfg, seed=seed)
    logger.info("finetune_curve: pretraining %s on subjects %s", family, others)
    model = train_decoder(model, pre_data, config=pcfg).model
    fcfg = finetune_config or TrainConfig(steps=100, batch_size=16, lr=3e-3, warmup_steps=5)
    fcfg = dataclasses.replace(fcfg, seed=seed)

    X_all, Y_all = split(new_subject, "train")
    X_test, Y_test = split(new_subject, "test")
    order = np.random.default_rng(seed).permutation(len(X_all))
    rows_a, rows_s, n_used = [], [], []
    for f in fractions:
        n = max(2, int(np.ceil(f * len(X_all))))
        idx = np.sort(order[:n])
        X, Y = X_all[idx], Y_all[idx]
        ad = adapt(model, X, Y, method=method, subject=new_subject, train_config=fcfg, seed=seed)
        sc = train_from_scratch(
            model, X, Y, subject=new_subject, train_config=fcfg, seed=seed
        ).model
        rows_a.append(scorer(Y_test, ad.predict(X_test)))
        rows_s.append(scorer(Y_test, sc.predict(X_test, new_subject, device="cpu")))
        n_used.append(int(n))
        logger.info(
            "fraction %.3f (%d trials): adapted %s, scratch %s", f, n, rows_a[-1], rows_s[-1]
        )
    mean_model, sid = _mean_subject_modules(model, X_test.shape[1])
    no_adapt = (
        {**scorer(Y_test, mean_model.predict(X_test, sid, device="cpu")), "how": "mean adapters"}
        if mean_model is not None
        else {"not_applicable": sid}
    )
    metrics = list(rows_a[0])
    return {
        "fractions": fractions,
        "n_train": n_used,
        "n_train_total": int(len(X_all)),
        "n_test": int(len(X_test)),
        "adapted": rows_a,
        "scratch": rows_s,
        "gap": {k: [a[k] - s[k] for a, s in zip(rows_a, rows_s, strict=True)] for k in metrics},
        "no_adaptation": no_adapt,
        "settings": {
            "family": family,
            "method": method if method != "auto" else _family_method(model),
            "new_subject": new_subject,
            "pretrain_subjects": others,
            "pretrain_steps": pcfg.steps,
            "finetune_steps": fcfg.steps,
            "seed": seed,
        },
    }


# ----------------------------------------------------------------------------- training.json
def write_training_info(folder, *, target_extractor: dict, **extra) -> Path:
    """Record in a model folder how its targets were made (read by ``bds finetune``).

    Parameters
    ----------
    folder : path
        A model folder (``save_pretrained``).
    target_extractor : dict
        ``{"kind": ..., "params": {...}, "field": ...}``: the feature extractor
        (:func:`~braindecode_suite.features.make_extractor`) and the field the model's
        primary output predicts.
    **extra
        More JSON-able facts (e.g. the subjects and sessions it was trained on).
    """
    if not isinstance(target_extractor, dict) or "kind" not in target_extractor:
        raise BadInputError(
            "target_extractor must be a dict with at least 'kind' (and 'params', 'field'), "
            f"got {target_extractor!r}."
        )
    return write_json_atomic(
        Path(folder) / TRAINING_INFO, {"target_extractor": target_extractor, **extra}
    )


def read_training_info(folder) -> dict | None:
    """``training.json`` of a model folder, or None when it has none."""
    path = Path(folder) / TRAINING_INFO
    return json.loads(path.read_text()) if path.is_file() else None
