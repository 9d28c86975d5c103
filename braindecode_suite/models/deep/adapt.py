"""One API over the ways the field adapts a pretrained multi-subject decoder to a new subject.

=================  ====================  ===================================================
method             model                 what happens
=================  ====================  ===================================================
``'adapter'``      MindEye2Decoder       a new linear adapter (n_voxels → shared latent),
                                         then fine-tuning (MindEye2)
``'reset_tuning'`` MindBridgeDecoder     new (re-initialised) embedder and builder after
                                         adaptive pooling, shared translator kept, then
                                         tuning (MindBridge)
``'cluster_nn'``   BrainITDecoder        the new voxels' encoding embeddings join the
                                         nearest existing functional cluster, then
                                         fine-tuning (Brain-IT)
=================  ====================  ===================================================

Functional alignment (hyperalignment / shared response models), the fourth way, lives in
:mod:`braindecode_suite.alignment`.
"""

from __future__ import annotations

import copy

from ...utils.validation import BadInputError, check_array, check_option
from ._base import DeepDecoder
from .brainit import BrainITDecoder
from .mindbridge import MindBridgeDecoder
from .mindeye2 import MindEye2Decoder
from .training import TrainConfig, TrainResult, train_decoder

__all__ = ["adapt_new_subject", "train_from_scratch", "ADAPT_METHODS"]

#: method → the decoder class it applies to
ADAPT_METHODS = {
    "adapter": MindEye2Decoder,
    "reset_tuning": MindBridgeDecoder,
    "cluster_nn": BrainITDecoder,
}


def _new_subject_id(model: DeepDecoder):
    ints = [s for s in model.subjects if isinstance(s, int)]
    return max(ints) + 1 if len(ints) == len(model.subjects) else "new"


def adapt_new_subject(
    model: DeepDecoder,
    X_new,
    Y_new,
    *,
    method: str | None = None,
    subject=None,
    train_config: TrainConfig | None = None,
    freeze_backbone: bool = False,
    inplace: bool = False,
) -> TrainResult:
    """Add a new subject to a pretrained decoder and fine-tune on its data.

    Parameters
    ----------
    model : DeepDecoder
        A pretrained MindEye2-, MindBridge- or Brain-IT-style decoder.
    X_new : ndarray of shape (n_samples, n_voxels_new)
        The new subject's responses (any number of voxels).
    Y_new : ndarray or dict
        Targets of those samples, as for :func:`~.training.train_decoder`.
    method : 'adapter' | 'reset_tuning' | 'cluster_nn' | None
        None picks the method of the model's family (see the module table).
    subject : int or str or None
        Id of the new subject (default: the largest int id + 1, or 'new').
    train_config : TrainConfig
        Fine-tuning settings.
    freeze_backbone : bool
        Train only the new subject's parameters (adapter / embedder+builder / voxel
        embeddings) and keep everything shared fixed.
    inplace : bool
        Modify ``model`` itself instead of a copy.

    Returns
    -------
    TrainResult
        ``.model`` is the adapted decoder; predict with ``subject``.
    """
    if not isinstance(model, DeepDecoder):
        raise BadInputError(f"model must be a DeepDecoder, got {type(model).__name__}.")
    if method is None:
        method = next((m for m, k in ADAPT_METHODS.items() if isinstance(model, k)), None)
        if method is None:
            raise BadInputError(f"No adaptation method known for {type(model).__name__}.")
    check_option("method", method, ADAPT_METHODS)
    if not isinstance(model, ADAPT_METHODS[method]):
        raise BadInputError(
            f"method={method!r} applies to {ADAPT_METHODS[method].__name__}, got a "
            f"{type(model).__name__}; use method=None to pick the model's own."
        )
    X_new = check_array("X_new", X_new, ndim=2)
    subject = _new_subject_id(model) if subject is None else subject
    if subject in model.n_voxels:
        raise BadInputError(f"subject {subject!r} is already known to the model; pick a new id.")
    model = model if inplace else copy.deepcopy(model)
    if method == "cluster_nn":
        model.add_subject(subject, X_new.shape[1], X=X_new, Y=Y_new)
    else:
        model.add_subject(subject, X_new.shape[1])
        if method == "reset_tuning":
            model.reset_subject(subject)
    own = {id(p) for p in model.subject_parameters(subject)}
    saved = {}
    if freeze_backbone:
        for p in model.parameters():
            saved[p] = p.requires_grad
            p.requires_grad_(id(p) in own)
    try:
        result = train_decoder(
            model, {subject: (X_new, Y_new)}, config=train_config or TrainConfig(steps=200)
        )
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)
    return result


def train_from_scratch(
    like: DeepDecoder,
    X,
    Y,
    *,
    subject=0,
    train_config: TrainConfig | None = None,
    seed: int = 0,
) -> TrainResult:
    """Baseline: a fresh decoder of the same family and sizes, trained on one subject only.

    Parameters
    ----------
    like : DeepDecoder
        A decoder whose class and config (except ``n_voxels``) are copied.
    X : ndarray of shape (n_samples, n_voxels)
    Y : ndarray or dict
        Targets.
    subject : int or str
        Id of the subject in the new model.
    train_config : TrainConfig
    seed : int
        Seed of the initial weights.
    """
    import torch

    if not isinstance(like, DeepDecoder):
        raise BadInputError(f"like must be a DeepDecoder, got {type(like).__name__}.")
    X = check_array("X", X, ndim=2)
    cfg = copy.deepcopy(like.config)
    cfg.n_voxels = {subject: int(X.shape[1])}
    torch.manual_seed(seed)
    model = type(like)(cfg)
    return train_decoder(model, {subject: (X, Y)}, config=train_config or TrainConfig(steps=200))
