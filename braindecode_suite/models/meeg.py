"""Contrastive M/EEG encoders: subject layers + a shared trunk + a projection head.

A :class:`BrainEncoder` maps epochs ``(B, n_channels, n_times)`` of subject ``s`` to
embeddings ``(B, out_dim)`` comparable (by cosine) with image embeddings (CLIP, THINGS-EEG2,
NICE/ATM) or speech latents (wav2vec 2.0, Défossez et al. 2023):

1. per-channel standardisation with statistics learned on the training data (buffers);
2. :class:`SubjectLayers` — one channel-mixing matrix per subject, initialised to the
   identity (Défossez et al.'s "subject layers"); an unseen subject (index -1) gets the
   mean of the learned matrices;
3. a shared trunk from :mod:`.meeg_backbones` (ours or braindecode's);
4. ATM's projection head (linear, residual GELU-linear, LayerNorm) to ``out_dim``.

:func:`clip_loss` is the symmetric InfoNCE with the encoder's learned temperature
(CLIP's ``logit_scale``), with an optional MSE term. Training is
:func:`~braindecode_suite.models.meeg_training.fit_contrastive`. Encoders save as a folder
with ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils.batching import batched_inference
from ..utils.devices import resolve_device
from ..utils.io import atomic_dir
from ..utils.validation import BadInputError, check_array, check_path, check_positive_int
from .meeg_backbones import BACKBONES, make_backbone

__all__ = ["BrainEncoder", "SubjectLayers", "clip_loss"]


class SubjectLayers(nn.Module):
    """One linear channel mixing per subject: ``y[b] = W[s_b]^T x[b]`` (Défossez et al.).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    n_subjects : int
        Number of subjects (indices ``0 ... n_subjects - 1``).
    init : 'identity' | 'random'
        ``'identity'``: every matrix starts as the identity (rectangular: ``torch.eye``);
        ``'random'``: Gaussian with variance ``1 / in_channels``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, n_subjects: int, *, init: str = "identity"
    ):
        super().__init__()
        if init not in ("identity", "random"):
            raise BadInputError(f"init must be 'identity' or 'random', got {init!r}.")
        w = torch.empty(n_subjects, in_channels, out_channels)
        if init == "identity":
            w[:] = torch.eye(in_channels, out_channels)
        else:
            w.normal_(0.0, 1.0 / math.sqrt(in_channels))
        self.weights = nn.Parameter(w)

    @property
    def n_subjects(self) -> int:
        return self.weights.shape[0]

    def forward(self, x: torch.Tensor, subjects: torch.Tensor) -> torch.Tensor:
        """``x`` (B, in, T), ``subjects`` (B,) long in ``[-1, n_subjects)`` → (B, out, T).

        Index -1 (a subject not seen in training) uses the mean matrix over subjects.
        """
        table = torch.cat([self.weights, self.weights.mean(0, keepdim=True)])
        idx = torch.where(subjects < 0, torch.full_like(subjects, self.n_subjects), subjects)
        return torch.einsum("bct,bcd->bdt", x, table[idx])


class _ProjectionHead(nn.Module):
    """ATM/NICE ``Proj_eeg``: Linear → x + Dropout(Linear(GELU(x))) → LayerNorm."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim)
        self.res = nn.Sequential(nn.GELU(), nn.Linear(out_dim, out_dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x):
        x = self.lin(x)
        return self.norm(x + self.res(x))


def clip_loss(
    brain: torch.Tensor,
    target: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    labels: torch.Tensor | None = None,
    mse_weight: float = 0.0,
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) loss between brain and target embeddings, + optional MSE.

    With ``b``, ``t`` L2-normalised and ``L = exp(logit_scale) b tᵀ`` (scale clamped at 100,
    as CLIP does), the loss is ½ [CE(L, P) + CE(Lᵀ, Pᵀ)] where ``P`` is the identity, or,
    when ``labels`` are given, row-normalised "same label" (repeats of one stimulus in a
    batch are all positives rather than false negatives).

    Parameters
    ----------
    brain, target : Tensor of shape (B, D)
        Paired embeddings.
    logit_scale : Tensor or float
        Log of the inverse temperature (CLIP initialises it at ``log(1 / 0.07)``).
    labels : Tensor of shape (B,) or None
        Stimulus of each row.
    mse_weight : float
        Weight of ``mse(brain, target)`` added to the loss (ATM uses a mix).

    Returns
    -------
    Tensor (scalar)
    """
    if brain.ndim != 2 or brain.shape != target.shape:
        raise BadInputError(
            f"brain and target must both be (batch, dim) with one shape, got "
            f"{tuple(brain.shape)} and {tuple(target.shape)}."
        )
    scale = torch.as_tensor(logit_scale, dtype=brain.dtype, device=brain.device).exp()
    logits = scale.clamp(max=100.0) * F.normalize(brain, dim=-1) @ F.normalize(target, dim=-1).T
    if labels is None:
        positives = torch.eye(len(brain), device=brain.device, dtype=brain.dtype)
    else:
        positives = (labels[:, None] == labels[None, :]).to(brain.dtype)
    p_rows = positives / positives.sum(1, keepdim=True)
    p_cols = positives.T / positives.T.sum(1, keepdim=True)
    loss = 0.5 * (
        -(p_rows * logits.log_softmax(-1)).sum(-1).mean()
        - (p_cols * logits.T.log_softmax(-1)).sum(-1).mean()
    )
    if mse_weight:
        loss = loss + mse_weight * F.mse_loss(brain, target)
    return loss


class BrainEncoder(nn.Module):
    """Subject layers + shared trunk + projection head, for contrastive M/EEG decoding.

    Parameters
    ----------
    n_channels, n_times : int
        Shape of one epoch.
    out_dim : int
        Embedding size (that of the image/speech targets).
    n_subjects : int
        Subjects with their own subject layer (indices ``0 ... n_subjects - 1``).
    backbone : str
        One of :data:`~braindecode_suite.models.meeg_backbones.BACKBONES`:
        ``'simple_conv'``, ``'atm'`` (torch only) or ``'eegnet'``, ``'shallow_fbcsp'``,
        ``'eeg_conformer'``, ``'brain_module'`` (braindecode).
    subject_layers : bool
        Use per-subject channel mixing (else all subjects share the trunk input directly).
    feature_dim : int
        Width of the trunk's output (input of the projection head).
    dropout : float
        Dropout of the projection head.
    init_temperature : float
        Initial softmax temperature of :func:`clip_loss` (learned afterwards).
    backbone_kwargs : dict or None
        Extra keyword arguments of the trunk (JSON-serialisable).
    seed : int
        Seed of the weight initialisation (the global torch RNG is left untouched).
    """

    def __init__(
        self,
        n_channels: int,
        n_times: int,
        out_dim: int,
        *,
        n_subjects: int = 1,
        backbone: str = "simple_conv",
        subject_layers: bool = True,
        feature_dim: int = 128,
        dropout: float = 0.1,
        init_temperature: float = 0.07,
        backbone_kwargs: dict | None = None,
        seed: int = 0,
    ):
        super().__init__()
        for name, v in (
            ("n_channels", n_channels),
            ("n_times", n_times),
            ("out_dim", out_dim),
            ("n_subjects", n_subjects),
            ("feature_dim", feature_dim),
        ):
            check_positive_int(name, v)
        if backbone not in BACKBONES:
            raise BadInputError(
                f"Invalid value for the 'backbone' parameter. Allowed values are "
                f"{list(BACKBONES)}, but got {backbone!r} instead."
            )
        if not (isinstance(init_temperature, int | float) and init_temperature > 0):
            raise BadInputError(f"init_temperature must be > 0, got {init_temperature!r}.")
        if not (isinstance(dropout, int | float) and 0 <= dropout < 1):
            raise BadInputError(f"dropout must lie in [0, 1), got {dropout!r}.")
        if backbone_kwargs is not None and not isinstance(backbone_kwargs, dict):
            raise BadInputError(
                f"backbone_kwargs must be a dict or None, got {type(backbone_kwargs).__name__}."
            )
        self.config: dict[str, Any] = {
            "n_channels": int(n_channels),
            "n_times": int(n_times),
            "out_dim": int(out_dim),
            "n_subjects": int(n_subjects),
            "backbone": backbone,
            "subject_layers": bool(subject_layers),
            "feature_dim": int(feature_dim),
            "dropout": float(dropout),
            "init_temperature": float(init_temperature),
            "backbone_kwargs": dict(backbone_kwargs or {}),
            "seed": int(seed),
        }
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.subject_layers = (
                SubjectLayers(n_channels, n_channels, n_subjects) if subject_layers else None
            )
            self.trunk = make_backbone(
                backbone, n_channels, n_times, feature_dim, **self.config["backbone_kwargs"]
            )
            self.head = _ProjectionHead(feature_dim, out_dim, dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.register_buffer("input_mean", torch.zeros(n_channels))
        self.register_buffer("input_scale", torch.ones(n_channels))
        self.history_: dict | None = None

    @property
    def n_subjects(self) -> int:
        return self.config["n_subjects"]

    def set_input_scaling(self, X: np.ndarray) -> None:
        """Per-channel mean and standard deviation of ``X`` (n, C, T) become the scaling."""
        X = np.asarray(X, dtype=np.float64)
        mean = X.mean(axis=(0, 2))
        std = X.std(axis=(0, 2))
        std[std == 0] = 1.0
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_scale.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor, subjects: torch.Tensor | None = None) -> torch.Tensor:
        """Embed epochs ``x`` (B, C, T) of subjects ``subjects`` (B,) → (B, out_dim).

        ``subjects`` holds indices in ``[0, n_subjects)``, or -1 for an unseen subject;
        None means subject 0 (a one-subject encoder) or -1 (several).
        """
        if x.ndim != 3 or x.shape[1:] != (self.config["n_channels"], self.config["n_times"]):
            raise BadInputError(
                f"x must be of shape (batch, {self.config['n_channels']}, "
                f"{self.config['n_times']}), got {tuple(x.shape)}."
            )
        x = (x - self.input_mean[:, None]) / self.input_scale[:, None]
        if self.subject_layers is not None:
            if subjects is None:
                subjects = torch.full((len(x),), 0 if self.n_subjects == 1 else -1)
            x = self.subject_layers(x, subjects.to(x.device).long())
        return self.head(self.trunk(x))

    def check_subjects(self, subjects, n: int, name: str = "subjects") -> np.ndarray:
        """Validate subject indices for ``n`` epochs; None → all 0 (one subject) or -1."""
        if subjects is None:
            return np.full(n, 0 if self.n_subjects == 1 else -1, dtype=np.int64)
        arr = np.asarray(subjects)
        if arr.ndim == 0:
            arr = np.full(n, arr)
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            raise BadInputError(
                f"{name} must be integer subject indices of shape ({n},), got "
                f"{arr.dtype} of shape {arr.shape}."
            )
        bad = (arr < -1) | (arr >= self.n_subjects)
        if bad.any():
            raise BadInputError(
                f"{name} must lie in [0, {self.n_subjects}) (this encoder's subject layers) or "
                f"be -1 for an unseen subject; got {np.unique(arr[bad]).tolist()}. Map subject "
                "ids to indices with np.unique(ids, return_inverse=True)."
            )
        return arr.astype(np.int64)

    def check_X(self, X, name: str = "X") -> np.ndarray:
        X = check_array(name, X, ndim=3)
        shape = (self.config["n_channels"], self.config["n_times"])
        if X.shape[1:] != shape:
            raise BadInputError(
                f"{name} must be of shape (n_epochs, {shape[0]}, {shape[1]}) for this encoder, "
                f"got {X.shape}."
            )
        return X.astype(np.float32, copy=False)

    @torch.no_grad()
    def predict(
        self, X, subjects=None, *, batch_size: int = 256, device: str = "auto"
    ) -> np.ndarray:
        """Embeddings of epochs ``X`` (n, C, T) → ndarray (n, out_dim), float32.

        ``subjects``: indices as in :meth:`forward` (an int applies to every epoch).
        """
        X = self.check_X(X)
        subjects = self.check_subjects(subjects, len(X))
        dev = resolve_device(device)
        was_training = self.training
        self.eval().to(dev)
        out = np.empty((len(X), self.config["out_dim"]), dtype=np.float32)
        for s in np.unique(subjects):
            rows = np.flatnonzero(subjects == s)
            sub = torch.full((1,), int(s), device=dev)
            for sl, res in batched_inference(
                lambda xb, sub=sub: self(xb, sub.expand(len(xb))),
                X[rows],
                batch_size=batch_size,
                device=device,
                transform=torch.as_tensor,
                progress=False,
            ):
                out[rows[sl]] = res["output"]
        self.train(was_training)
        return out

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, folder) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``folder`` (atomically)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_dir(folder) as tmp:
            blob = {"class": type(self).__name__, "config": self.config, "history": self.history_}
            (tmp / "config.json").write_text(json.dumps(blob, indent=2))
            save_file(state, str(tmp / "model.safetensors"))
        return folder

    @classmethod
    def from_pretrained(cls, folder, *, device: str = "cpu") -> BrainEncoder:
        """Rebuild an encoder saved with :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        folder = check_path("folder", folder, kind="dir")
        cfg_path = folder / "config.json"
        if not cfg_path.is_file() or not (folder / "model.safetensors").is_file():
            raise BadInputError(
                f"{str(folder)!r} lacks config.json or model.safetensors: not a saved "
                f"{cls.__name__} (save one with save_pretrained)."
            )
        blob = json.loads(cfg_path.read_text())
        if blob.get("class") != cls.__name__:
            raise BadInputError(
                f"{str(cfg_path)!r} describes a {blob.get('class')!r}, not a {cls.__name__}."
            )
        model = cls(**blob["config"])
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        model.history_ = blob.get("history")
        return model.to(resolve_device(device))
