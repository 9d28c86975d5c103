"""What every deep decoder shares: per-subject inputs, batch checks, save/load, predict.

A deep decoder is an ``nn.Module`` built from a config dataclass. It maps a batch
``{"subject": s, "voxels": (B, n_voxels_s)}`` to a dict of named outputs (e.g. ``"clip"``
of shape (B, n_tokens, clip_dim)). Training (:func:`~.training.train_decoder`) only needs
three methods, which each family implements:

- ``training_batch(batch, targets, *, progress, generator)`` → ``(batch, ctx)``: what the
  model does to a batch before its forward pass during training (e.g. MixCo mixup);
- ``forward(batch)`` → dict of outputs;
- ``compute_loss(outputs, targets, ctx, *, progress)`` → ``(loss, logs)``.

Models save as a folder with ``config.json`` and ``model.safetensors`` (written atomically),
in the manner of diffusers' ``ModelMixin``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ...utils.devices import resolve_device
from ...utils.io import atomic_dir
from ...utils.validation import BadInputError, check_array, check_path, check_positive_int

__all__ = ["DeepDecoder", "DeepDecoderConfig", "subject_key", "load_decoder"]

_REGISTRY: dict[str, type[DeepDecoder]] = {}


def subject_key(subject: int | str) -> str:
    """The key of a subject in ``nn.ModuleDict`` / ``ParameterDict`` (``'s1'`` for 1)."""
    return f"s{subject}"


@dataclasses.dataclass
class DeepDecoderConfig:
    """Fields every deep decoder config has.

    Parameters
    ----------
    n_voxels : dict
        Subject id (int or str) → number of voxels of that subject.
    """

    n_voxels: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["n_voxels"] = [[s, int(v)] for s, v in self.n_voxels.items()]  # keep int subject ids
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DeepDecoderConfig:
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise BadInputError(
                f"Unknown field(s) {unknown} for {cls.__name__}; known fields are {sorted(names)}."
            )
        nv = d.get("n_voxels", {})
        d["n_voxels"] = {s: int(v) for s, v in nv} if isinstance(nv, list) else dict(nv)
        for k, v in list(d.items()):
            if isinstance(v, list) and k != "n_voxels":
                d[k] = tuple(v)
        return cls(**d)

    def validate(self) -> None:
        if not isinstance(self.n_voxels, dict) or not self.n_voxels:
            raise BadInputError(
                "n_voxels must be a non-empty dict {subject: number of voxels}, got "
                f"{self.n_voxels!r}."
            )
        for s, v in self.n_voxels.items():
            if not isinstance(s, int | str) or isinstance(s, bool):
                raise BadInputError(f"subject ids must be int or str, got {s!r} in n_voxels.")
            check_positive_int(f"n_voxels[{s!r}]", v)


class DeepDecoder(nn.Module):
    """Base class: per-subject voxel counts, input checks, ``predict``, save and load."""

    config_class: ClassVar[type[DeepDecoderConfig]] = DeepDecoderConfig
    #: name of the output used by :meth:`predict` by default and by the generic metrics
    primary_output: ClassVar[str] = "clip"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, config: DeepDecoderConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise BadInputError(
                f"config must be a {self.config_class.__name__}, got {type(config).__name__}."
            )
        config.validate()
        self.config = config
        self.n_voxels = dict(config.n_voxels)

    # ------------------------------------------------------------------ subjects
    @property
    def subjects(self) -> list:
        """Subject ids the model has inputs for."""
        return list(self.n_voxels)

    def check_subject(self, subject) -> None:
        if subject not in self.n_voxels:
            raise BadInputError(
                f"Unknown subject {subject!r}: this {type(self).__name__} has inputs for "
                f"subjects {self.subjects}. Add one with adapt_new_subject()."
            )

    def check_batch(self, batch: dict) -> tuple[Any, torch.Tensor]:
        """Validate a batch dict; return ``(subject, voxels)``."""
        if not isinstance(batch, dict) or "subject" not in batch or "voxels" not in batch:
            raise BadInputError(
                "batch must be a dict with keys 'subject' and 'voxels', got "
                f"{type(batch).__name__}{' with keys ' + str(list(batch)) if isinstance(batch, dict) else ''}."
            )
        subject, x = batch["subject"], batch["voxels"]
        self.check_subject(subject)
        n = self.n_voxels[subject]
        if not torch.is_tensor(x) or x.ndim != 2 or x.shape[1] != n:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise BadInputError(
                f"voxels of subject {subject!r} must be a tensor of shape (batch, {n}), got "
                f"{shape}."
            )
        return subject, x

    def add_subject(self, subject, n_voxels: int) -> None:
        """Register a new subject's input modules (implemented by each family)."""
        raise NotImplementedError

    def subject_parameters(self, subject) -> list[nn.Parameter]:
        """Parameters specific to one subject (adapted when ``freeze_backbone``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training hooks
    def training_batch(self, batch, targets, *, progress: float, generator):
        """Transform a training batch before the forward pass; default: unchanged."""
        return batch, {}

    def compute_loss(self, outputs, targets, ctx, *, progress: float):
        raise NotImplementedError

    def decode(self, batch: dict) -> dict[str, torch.Tensor]:
        """The family's forward pass: batch → dict of outputs."""
        raise NotImplementedError

    def forward(
        self,
        batch: dict,
        targets: dict | None = None,
        ctx: dict | None = None,
        progress: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Outputs for a batch; with ``targets``, also ``"loss"`` and ``"logs"``.

        The loss is computed inside ``forward`` so that a DistributedDataParallel wrapper
        sees every parameter that takes part in it.
        """
        out = self.decode(batch)
        if targets is not None:
            loss, logs = self.compute_loss(out, targets, ctx or {}, progress=progress)
            out = {**out, "loss": loss, "logs": logs}
        return out

    def setup_training(self, datasets: dict, *, seed: int = 0) -> None:
        """Called once before a fresh (not resumed) training run; default: nothing."""

    def on_step_end(self, step: int) -> None:
        """Called after each optimiser step; default: nothing."""

    def target_shapes(self) -> dict[str, tuple[int, ...]]:
        """Output name → per-sample shape of the targets it is trained on."""
        raise NotImplementedError

    def prepare_targets(self, Y, name: str = "Y") -> dict[str, np.ndarray]:
        """Turn a target array (the primary output) or a dict of arrays into
        ``{output name: ndarray of shape (n_samples, *shape)}``."""
        shapes = self.target_shapes()
        if not isinstance(Y, dict):
            Y = {self.primary_output: Y}
        unknown = sorted(set(Y) - set(shapes))
        if unknown:
            raise BadInputError(
                f"{name} has target(s) {unknown} this {type(self).__name__} has no head for; "
                f"known targets are {sorted(shapes)}."
            )
        if self.primary_output not in Y:
            raise BadInputError(
                f"{name} must include the {self.primary_output!r} target, got {sorted(Y)}."
            )
        out = {k: flat_targets(v, f"{name}[{k!r}]", shapes[k]) for k, v in Y.items()}
        lengths = {k: len(v) for k, v in out.items()}
        if len(set(lengths.values())) > 1:
            raise BadInputError(f"{name}: targets have different numbers of rows {lengths}.")
        return out

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(
        self,
        X,
        subject,
        *,
        batch_size: int = 256,
        device: str = "auto",
        outputs: str | tuple[str, ...] | None = None,
    ):
        """Predict from voxels.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_voxels_subject)
            Responses of ``subject``.
        subject : int or str
            A subject the model knows.
        batch_size : int
            Samples per forward pass.
        device : 'auto' | 'cpu' | 'cuda' | 'cuda:N'
            Where to run; the model is moved there.
        outputs : str, tuple of str or None
            One output name (returns an array), several (returns a dict), or None for
            :attr:`primary_output`.

        Returns
        -------
        ndarray of shape (n_samples, *output_shape) or dict of them
        """
        self.check_subject(subject)
        X = check_array("X", X, ndim=2)
        if X.shape[1] != self.n_voxels[subject]:
            raise BadInputError(
                f"X has {X.shape[1]} voxels but subject {subject!r} has "
                f"{self.n_voxels[subject]}: X must be of shape (n_samples, "
                f"{self.n_voxels[subject]})."
            )
        check_positive_int("batch_size", batch_size)
        names = (self.primary_output,) if outputs is None else outputs
        names = (names,) if isinstance(names, str) else tuple(names)
        dev = resolve_device(device)
        was_training = self.training
        self.eval().to(dev)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
        for start in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[start : start + batch_size], dtype=torch.float32, device=dev)
            out = self({"subject": subject, "voxels": xb})
            for k in names:
                if k not in out:
                    raise BadInputError(f"Unknown output {k!r}; this model gives {sorted(out)}.")
                parts[k].append(out[k].float().cpu().numpy())
        self.train(was_training)
        res = {k: np.concatenate(v) if v else np.empty((0,)) for k, v in parts.items()}
        return res[names[0]] if isinstance(outputs, str) or outputs is None else res

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, folder) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``folder`` (atomically)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_dir(folder) as tmp:
            (tmp / "config.json").write_text(
                json.dumps(
                    {"class": type(self).__name__, "config": self.config.to_dict()}, indent=2
                )
            )
            save_file(state, str(tmp / "model.safetensors"))
        return folder

    @classmethod
    def from_pretrained(cls, folder, *, device: str = "cpu") -> DeepDecoder:
        """Rebuild a decoder saved with :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        folder = check_path("folder", folder, kind="dir")
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise BadInputError(f"{str(folder)!r} holds no config.json: not a saved decoder.")
        blob = json.loads(cfg_path.read_text())
        klass = _REGISTRY.get(blob.get("class"))
        if klass is None or not issubclass(klass, cls):
            raise BadInputError(
                f"{str(cfg_path)!r} describes a {blob.get('class')!r}, not a {cls.__name__}."
            )
        model = klass(klass.config_class.from_dict(blob["config"]))
        state = load_file(str(folder / "model.safetensors"))
        model.load_pretrained_state(state)
        return model.to(resolve_device(device))

    def load_pretrained_state(self, state: dict) -> None:
        """Load a state dict (buffers whose shape depends on data are resized first)."""
        self.load_state_dict(state)


def load_decoder(folder, *, device: str = "cpu") -> DeepDecoder:
    """Load any deep decoder saved with ``save_pretrained`` (the class is read from disk)."""
    return DeepDecoder.from_pretrained(folder, device=device)


def flat_targets(Y, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Check one target array: (n, *shape) or (n, prod(shape)); return (n, *shape) float32."""
    arr = check_array(name, Y)
    size = int(np.prod(shape))
    if arr.ndim >= 2 and arr.shape[1:] == tuple(shape):
        return arr.astype(np.float32, copy=False)
    if arr.ndim == 2 and arr.shape[1] == size:
        return arr.reshape(len(arr), *shape).astype(np.float32, copy=False)
    raise BadInputError(
        f"targets {name!r} must be of shape (n_samples, {', '.join(map(str, shape))}) or "
        f"(n_samples, {size}), got {arr.shape}."
    )
