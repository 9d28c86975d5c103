"""Training any deep decoder through Hugging Face ``accelerate``.

- mixed precision (``'no'``, ``'fp16'`` on CUDA, ``'bf16'``), gradient accumulation, gradient
  clipping, AdamW with linear warm-up and a cosine or constant schedule;
- multi-GPU when launched with ``accelerate launch`` / ``torchrun`` (each process draws its
  own slice of every step's batch);
- checkpoints every N steps in ``out_dir/checkpoints/step_N`` (``accelerator.save_state``
  into a temporary folder, renamed when complete); ``resume=True`` restarts from the latest
  complete one.

The data order is a pure function of ``(seed, step)``: step ``t`` draws one subject (in
proportion to its number of samples) and ``batch_size × grad_accum × n_processes`` sample
indices from ``numpy.random.default_rng([seed, t])``, and the torch RNG (dropout, MixCo) is
re-seeded from ``(seed, t, micro-batch, process)``. So a run killed and resumed ends with the
same parameters as an uninterrupted one, and ``grad_accum=k`` equals one batch k times larger
for losses that are means over samples.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ...utils.io import TMP_MARKER, write_json_atomic
from ...utils.logging import logger, progress_disabled
from ...utils.validation import (
    BadInputError,
    check_array,
    check_option,
    check_positive_int,
)
from ._base import DeepDecoder

__all__ = ["TrainConfig", "TrainResult", "train_decoder", "latest_checkpoint"]

_STEP_RE = re.compile(r"^step_(\d+)$")


@dataclasses.dataclass
class TrainConfig:
    """Settings of :func:`train_decoder`.

    Parameters
    ----------
    steps : int
        Optimiser steps in total.
    batch_size : int
        Samples per micro-batch and per process.
    lr, weight_decay : float
        AdamW settings.
    mixed_precision : 'no' | 'fp16' | 'bf16'
        'fp16' needs CUDA; 'bf16' runs on recent GPUs and on CPUs.
    grad_accum : int
        Micro-batches per optimiser step.
    checkpoint_every : int
        Save a resumable checkpoint every this many steps (and at the end); 0: never.
    keep_checkpoints : int
        Newest checkpoints kept on disk.
    seed : int
        Seed of the data order, dropout and mixup.
    out_dir : str or None
        Folder for ``checkpoints/`` and the final ``model/``; needed when checkpointing.
    warmup_steps : int
        Linear warm-up of the learning rate.
    schedule : 'cosine' | 'constant'
        Learning-rate schedule after warm-up.
    max_grad_norm : float or None
        Gradient clipping; None for none.
    device : 'auto' | 'cpu'
        'cpu' forces the CPU even when CUDA is present (single process).
    log_every : int
        Log the running loss every this many steps.
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-2
    mixed_precision: str = "no"
    grad_accum: int = 1
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    seed: int = 0
    out_dir: str | None = None
    warmup_steps: int = 0
    schedule: str = "cosine"
    max_grad_norm: float | None = 1.0
    device: str = "auto"
    log_every: int = 50

    def validate(self) -> None:
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("grad_accum", self.grad_accum)
        check_positive_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_positive_int("keep_checkpoints", self.keep_checkpoints)
        check_positive_int("warmup_steps", self.warmup_steps, minimum=0)
        check_positive_int("log_every", self.log_every)
        check_option("mixed_precision", self.mixed_precision, ("no", "fp16", "bf16"))
        check_option("schedule", self.schedule, ("cosine", "constant"))
        check_option("device", self.device, ("auto", "cpu"))
        if not self.lr > 0:
            raise BadInputError(f"lr must be > 0, got {self.lr!r}.")
        if self.checkpoint_every and self.out_dir is None:
            raise BadInputError(
                f"checkpoint_every={self.checkpoint_every} needs out_dir: give a folder for "
                "the checkpoints, or set checkpoint_every=0."
            )


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_decoder` returns.

    Attributes
    ----------
    model : DeepDecoder
        The trained model (unwrapped, on the training device).
    step : int
        Optimiser steps completed (including those before a resume).
    history : list of dict
        Per step run in this call: ``{"step", "loss", ...}`` (the family's loss terms).
    resumed_from : str or None
        Checkpoint the run started from.
    """

    model: DeepDecoder
    step: int
    history: list
    resumed_from: str | None


def latest_checkpoint(out_dir) -> Path | None:
    """The newest complete ``out_dir/checkpoints/step_N`` folder, or None."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_RE.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return max(done)[1] if done else None


def _check_datasets(model: DeepDecoder, datasets) -> dict:
    if not isinstance(datasets, dict) or not datasets:
        raise BadInputError(
            f"datasets must be a non-empty dict {{subject: (X, Y)}}, got {type(datasets).__name__}."
        )
    out = {}
    for s, pair in datasets.items():
        model.check_subject(s)
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise BadInputError(
                f"datasets[{s!r}] must be a pair (X, Y), got {type(pair).__name__}."
            )
        X = check_array(f"datasets[{s!r}] X", pair[0], ndim=2)
        if X.shape[1] != model.n_voxels[s]:
            raise BadInputError(
                f"datasets[{s!r}] X has {X.shape[1]} voxels but the model expects "
                f"{model.n_voxels[s]} for subject {s!r}."
            )
        Y = model.prepare_targets(pair[1], name=f"datasets[{s!r}] Y")
        n_y = len(next(iter(Y.values())))
        if n_y != len(X):
            raise BadInputError(
                f"datasets[{s!r}]: X has {len(X)} rows but Y has {n_y}; they must match."
            )
        if len(X) < 2:
            raise BadInputError(f"datasets[{s!r}] needs at least 2 samples, got {len(X)}.")
        out[s] = (
            torch.as_tensor(X, dtype=torch.float32),
            {k: torch.as_tensor(v) for k, v in Y.items()},
        )
    return out


def _lr_lambda(cfg: TrainConfig):
    def f(step):
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))

    return f


def _seed_of(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _step_plan(data, cfg: TrainConfig, step: int, n_proc: int):
    """Subject and sample indices of one step (a pure function of seed and step)."""
    subjects = list(data)
    sizes = np.array([len(data[s][0]) for s in subjects], dtype=float)
    rng = np.random.default_rng([cfg.seed, step])
    subject = subjects[int(rng.choice(len(subjects), p=sizes / sizes.sum()))]
    n = len(data[subject][0])
    total = cfg.batch_size * cfg.grad_accum * n_proc
    idx = rng.choice(n, size=total, replace=total > n)
    return subject, idx


def _make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState, PartialState

    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cfg.mixed_precision == "fp16" and not cuda:
        raise BadInputError(
            "mixed_precision='fp16' needs a CUDA GPU; none is in use here. Use 'bf16' or 'no'."
        )
    # one process: let each call choose its own precision/device (accelerate keeps them in
    # a process-wide singleton that refuses a second, different setting)
    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    return Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=cfg.device == "cpu",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        project_dir=cfg.out_dir,
    )


def _save_checkpoint(accelerator, cfg: TrainConfig, step: int) -> Path:
    root = Path(cfg.out_dir) / "checkpoints"
    final = root / f"step_{step}"
    tmp = root / f"step_{step}{TMP_MARKER}partial"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(
            tmp / "trainer_state.json", {"step": step, "train_config": dataclasses.asdict(cfg)}
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        old = sorted(
            (int(m.group(1)), p)
            for p in root.iterdir()
            if (m := _STEP_RE.match(p.name)) and (p / "trainer_state.json").is_file()
        )
        for _, p in old[: -cfg.keep_checkpoints]:
            shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def train_decoder(
    model: DeepDecoder,
    datasets: dict,
    *,
    config: TrainConfig | None = None,
    resume: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a deep decoder on several subjects.

    Parameters
    ----------
    model : DeepDecoder
        Any decoder of :mod:`braindecode_suite.models.deep`. Parameters with
        ``requires_grad=False`` stay frozen.
    datasets : dict
        Subject → ``(X, Y)``: X of shape (n_samples_s, n_voxels_s); Y an array for the
        model's primary output or a dict of arrays (e.g. ``{"clip": ..., "lowlevel": ...}``).
    config : TrainConfig
        Training settings (defaults: ``TrainConfig()``).
    resume : bool
        Start from the newest complete checkpoint in ``config.out_dir`` when there is one.
    stop_after : int or None
        Stop (as a killed or time-boxed job would) once this many steps are done in total;
        the schedule is still that of ``config.steps``.

    Returns
    -------
    TrainResult
    """
    if not isinstance(model, DeepDecoder):
        raise BadInputError(f"model must be a DeepDecoder, got {type(model).__name__}.")
    cfg = config if config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise BadInputError(f"config must be a TrainConfig, got {type(cfg).__name__}.")
    cfg.validate()
    if stop_after is not None:
        check_positive_int("stop_after", stop_after)
    data = _check_datasets(model, datasets)

    ckpt = latest_checkpoint(cfg.out_dir) if (resume and cfg.out_dir) else None
    start = 0
    if ckpt is not None:
        saved = json.loads((ckpt / "trainer_state.json").read_text())
        start = int(saved["step"])
        old = saved.get("train_config", {})
        for key in ("seed", "batch_size", "grad_accum"):
            if old.get(key) != getattr(cfg, key):
                logger.warning(
                    "resuming from %s with %s=%r (was %r): the run will not equal an "
                    "uninterrupted one",
                    ckpt,
                    key,
                    getattr(cfg, key),
                    old.get(key),
                )
    else:
        model.setup_training(datasets, seed=cfg.seed)

    accelerator = _make_accelerator(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise BadInputError("model has no trainable parameters (all requires_grad=False).")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    wrapped, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        logger.info("resumed from %s (step %d)", ckpt, start)
    unwrapped = accelerator.unwrap_model(wrapped)
    dev = accelerator.device
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)

    history = []
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc=f"train {type(unwrapped).__name__}",
        unit="step",
        disable=progress_disabled() or not accelerator.is_local_main_process,
    )
    wrapped.train()
    for step in range(start, end):
        subject, idx = _step_plan(data, cfg, step, n_proc)
        X, Y = data[subject]
        progress = step / cfg.steps
        logs_sum: dict[str, float] = {}
        for m in range(cfg.grad_accum):
            lo = (m * n_proc + rank) * cfg.batch_size
            sel = torch.as_tensor(idx[lo : lo + cfg.batch_size])
            seed = _seed_of(cfg.seed, step, m, rank)
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            batch = {"subject": subject, "voxels": X[sel].to(dev)}
            targets = {k: v[sel].to(dev) for k, v in Y.items()}
            with accelerator.accumulate(wrapped):
                batch, ctx = unwrapped.training_batch(
                    batch, targets, progress=progress, generator=gen
                )
                out = wrapped(batch, targets, ctx, progress)
                loss = out["loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            for k, v in {"loss": loss.detach(), **out["logs"]}.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + float(v) / cfg.grad_accum
        unwrapped.on_step_end(step + 1)
        history.append({"step": step + 1, "subject": subject, **logs_sum})
        bar.update(1)
        bar.set_postfix(loss=f"{logs_sum['loss']:.4f}")
        if (step + 1) % cfg.log_every == 0:
            logger.info("step %d/%d loss %.5f", step + 1, cfg.steps, logs_sum["loss"])
        if cfg.checkpoint_every and (
            (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps
        ):
            _save_checkpoint(accelerator, cfg, step + 1)
    bar.close()
    accelerator.wait_for_everyone()
    if cfg.out_dir is not None and end == cfg.steps and accelerator.is_main_process:
        unwrapped.save_pretrained(Path(cfg.out_dir) / "model")
    unwrapped.eval()
    return TrainResult(
        model=unwrapped,
        step=end,
        history=history,
        resumed_from=str(ckpt) if ckpt is not None else None,
    )
