"""Training of :class:`~braindecode_suite.models.meeg.BrainEncoder` with the CLIP loss.

:func:`fit_contrastive` trains on (epochs, target embeddings) pairs with AdamW, holds out a
validation part *of the training data* (never the test set), stops early on the validation
loss and restores the best weights. With ``groups`` (the stimulus of each epoch) the
validation part holds out whole stimuli, so it measures what zero-shot testing measures,
and repeats of one stimulus in a batch count as positives in the loss.

Training goes through Hugging Face ``accelerate`` (model, optimiser, backward), so the same
function runs on a CPU, one GPU, or several under ``accelerate launch`` (each process then
takes its share of every batch). For a given seed and device the result is reproducible:
the initialisation, the validation split, the batch order and dropout are all seeded, and
the global RNGs are left as they were.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from tqdm.auto import tqdm

from ..utils.devices import resolve_device
from ..utils.logging import logger, progress_disabled, verbose_level
from ..utils.validation import BadInputError, check_array, check_positive_int
from .meeg import BrainEncoder, clip_loss

__all__ = ["fit_contrastive", "validation_split"]


def validation_split(
    n: int, val_fraction: float, *, groups=None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` of a random split of ``n`` items (whole groups when given).

    Parameters
    ----------
    n : int
        Number of items.
    val_fraction : float
        Share of items (or of groups) held out, in [0, 1). 0 gives an empty validation set.
    groups : array-like of shape (n,) or None
        Items of one group land on the same side.
    seed : int
        Seed of ``numpy.random.default_rng``.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise BadInputError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}.")
    if not 0 <= val_fraction < 1:
        raise BadInputError(f"val_fraction must lie in [0, 1), got {val_fraction}.")
    rng = np.random.default_rng(seed)
    keys = np.arange(n) if groups is None else np.asarray(groups)
    uniq = np.unique(keys)
    n_val = int(round(val_fraction * len(uniq)))
    if val_fraction > 0 and (n_val < 2 or len(uniq) - n_val < 2):
        what = "items" if groups is None else "groups"
        raise BadInputError(
            f"val_fraction={val_fraction} of {len(uniq)} {what} leaves {n_val} for validation "
            f"and {len(uniq) - n_val} for training; both need at least 2. Give more data, "
            "change val_fraction, or pass val_fraction=0 to train without early stopping."
        )
    val_keys = rng.permutation(uniq)[:n_val]
    is_val = np.isin(keys, val_keys)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def fit_contrastive(
    encoder: BrainEncoder,
    X,
    Y,
    subjects=None,
    *,
    groups=None,
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    mse_weight: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    val_fraction: float = 0.1,
    patience: int = 10,
    verbose=None,
) -> BrainEncoder:
    """Train ``encoder`` so that its embedding of ``X[i]`` identifies ``Y[i]`` (CLIP loss).

    Parameters
    ----------
    encoder : BrainEncoder
        The model (trained in place and returned).
    X : ndarray of shape (n_epochs, n_channels, n_times)
        Training epochs only: the test set must never reach this function.
    Y : ndarray of shape (n_epochs, out_dim)
        Target embedding of each epoch (e.g. CLIP image embedding of its stimulus).
    subjects : array-like of int, shape (n_epochs,), or None
        Subject index of each epoch in ``[0, encoder.n_subjects)``; None: all 0.
    groups : array-like of shape (n_epochs,) or None
        Stimulus of each epoch: the validation split holds out whole stimuli and repeats of
        a stimulus in a batch are positives of each other.
    epochs : int
        Maximum passes over the training part.
    batch_size : int
        Epochs per optimisation step (the InfoNCE negatives are the rest of the batch).
    lr, weight_decay : float
        AdamW settings.
    mse_weight : float
        Weight of the MSE term of :func:`~braindecode_suite.models.meeg.clip_loss`.
    seed : int
        Seed of the validation split, batch order and dropout.
    device : 'auto' | 'cpu' | 'cuda' | 'cuda:N'
        Where to train.
    val_fraction : float
        Share of the training stimuli (or epochs) held out for early stopping; 0 trains
        for ``epochs`` without it.
    patience : int
        Epochs without a lower validation loss before stopping.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    encoder : BrainEncoder
        With the weights of the best validation epoch, the input scaling learned on the
        training part, and ``history_`` (losses per epoch, best epoch, split sizes).
    """
    from accelerate import Accelerator

    if not isinstance(encoder, BrainEncoder):
        raise BadInputError(f"encoder must be a BrainEncoder, got {type(encoder).__name__}.")
    X = encoder.check_X(X)
    Y = check_array("Y", Y, ndim=2).astype(np.float32, copy=False)
    if len(Y) != len(X) or Y.shape[1] != encoder.config["out_dim"]:
        raise BadInputError(
            f"Y must be of shape ({len(X)}, {encoder.config['out_dim']}) (one target of the "
            f"encoder's out_dim per epoch of X), got {Y.shape}."
        )
    subjects = encoder.check_subjects(subjects, len(X))
    if (subjects < 0).any():
        raise BadInputError("subjects used for training must be >= 0 (-1 is for unseen ones).")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (len(X),):
            raise BadInputError(
                f"groups must have one entry per epoch, shape ({len(X)},), got {groups.shape}."
            )
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size, minimum=2)
    patience = check_positive_int("patience", patience)
    for name, v in (("lr", lr), ("weight_decay", weight_decay), ("mse_weight", mse_weight)):
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or not np.isfinite(v):
            raise BadInputError(f"{name} must be a finite number >= 0, got {v!r}.")
    if lr == 0:
        raise BadInputError("lr must be > 0, got 0.")
    tr, va = validation_split(len(X), val_fraction, groups=groups, seed=seed)
    if len(tr) < 2:
        raise BadInputError(f"fit_contrastive needs at least 2 training epochs, got {len(tr)}.")

    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    accelerator = Accelerator(cpu=dev.type == "cpu")
    rank, world = accelerator.process_index, accelerator.num_processes
    label_ids = np.unique(groups, return_inverse=True)[1] if groups is not None else None
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            encoder.set_input_scaling(X[tr])
            encoder.to(accelerator.device)
            opt = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=weight_decay)
            model, opt = accelerator.prepare(encoder, opt)

            def tensors(idx):
                out = [torch.as_tensor(X[idx]), torch.as_tensor(Y[idx])]
                out.append(torch.as_tensor(subjects[idx]))
                out.append(None if label_ids is None else torch.as_tensor(label_ids[idx]))
                return [t if t is None else t.to(accelerator.device) for t in out]

            history = {"train_loss": [], "val_loss": [], "best_epoch": None}
            best_loss, best_state, bad_epochs = np.inf, None, 0
            n_tr = len(tr)
            drop_last = n_tr > batch_size and n_tr % batch_size == 1  # BatchNorm needs 2
            bar = tqdm(range(epochs), desc="fit_contrastive", disable=progress_disabled())
            for epoch in bar:
                model.train()
                order = tr[torch.randperm(n_tr, generator=gen).numpy()]
                losses = []
                for start in range(0, n_tr, batch_size):
                    idx = order[start : start + batch_size]
                    if drop_last and len(idx) < 2:
                        continue
                    xb, yb, sb, lb = tensors(idx[rank::world] if world > 1 else idx)
                    loss = clip_loss(
                        model(xb, sb), yb, encoder.logit_scale, labels=lb, mse_weight=mse_weight
                    )
                    opt.zero_grad()
                    accelerator.backward(loss)
                    opt.step()
                    losses.append(float(loss.detach()))
                history["train_loss"].append(float(np.mean(losses)))
                if len(va):
                    model.eval()
                    with torch.no_grad():
                        xb, yb, sb, lb = tensors(va)
                        vloss = float(
                            clip_loss(encoder(xb, sb), yb, encoder.logit_scale, labels=lb)
                        )
                    history["val_loss"].append(vloss)
                    if vloss < best_loss - 1e-6:
                        best_loss, bad_epochs = vloss, 0
                        history["best_epoch"] = epoch
                        best_state = copy.deepcopy(
                            {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
                        )
                    else:
                        bad_epochs += 1
                    bar.set_postfix(train=history["train_loss"][-1], val=vloss)
                    if bad_epochs >= patience:
                        logger.info(
                            "fit_contrastive: early stop at epoch %d (best %d, val loss %.4f).",
                            epoch,
                            history["best_epoch"],
                            best_loss,
                        )
                        break
            bar.close()
        if best_state is not None:
            encoder.load_state_dict(best_state)
        else:
            history["best_epoch"] = len(history["train_loss"]) - 1
        history.update(
            n_train=int(len(tr)),
            n_val=int(len(va)),
            epochs_run=len(history["train_loss"]),
            seed=int(seed),
        )
        encoder.history_ = history
        encoder.eval()
        return encoder
    finally:
        logger.setLevel(old_level)
