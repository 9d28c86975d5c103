"""The one batching helper that every model inference goes through.

CPU and GPU take the same code path: a DataLoader over the inputs, pinned memory
when the target is CUDA, ``torch.autocast`` for reduced precision, and
``torch.inference_mode``. Results come back as NumPy arrays, batch by batch, so
callers can stream them into a :class:`~braindecode_suite.features.FeatureStore`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .devices import resolve_device, resolve_dtype
from .logging import progress_disabled
from .validation import check_positive_int

__all__ = ["batched_inference"]


class _IndexedDataset:
    def __init__(self, items: Sequence[Any], transform: Callable | None):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        item = self.items[i]
        return self.transform(item) if self.transform is not None else item


def batched_inference(
    fn: Callable,
    items: Sequence[Any],
    *,
    batch_size: int = 32,
    device: str = "auto",
    dtype: str = "float32",
    transform: Callable | None = None,
    num_workers: int = 0,
    desc: str = "inference",
    progress: bool = True,
) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """Run ``fn`` over ``items`` in batches and yield NumPy outputs.

    Parameters
    ----------
    fn : callable
        Takes a batch tensor on ``device`` and returns a tensor or a dict of
        tensors (e.g. one per layer).
    items : sequence
        Inputs (arrays or images); ``transform`` turns one item into a tensor.
    batch_size : int
        Items per forward pass.
    device : 'auto' | 'cpu' | 'cuda' | 'cuda:N'
        Where ``fn`` runs. The model inside ``fn`` must already be there.
    dtype : 'float32' | 'float16' | 'bfloat16'
        Autocast precision on the device ('float32' disables autocast).
    transform : callable | None
        Per-item preprocessing, run in the DataLoader workers.
    num_workers : int
        DataLoader worker processes.
    desc : str
        Progress bar label.
    progress : bool
        Show a progress bar (also hidden when the package logs above INFO).

    Yields
    ------
    rows : slice
        The rows of ``items`` this batch covers.
    outputs : dict of str to ndarray
        float32 arrays of shape (batch, ...); key ``'output'`` when ``fn``
        returns a single tensor.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    batch_size = check_positive_int("batch_size", batch_size)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    loader = DataLoader(
        _IndexedDataset(items, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
    )
    use_autocast = torch_dtype in (torch.float16, torch.bfloat16)
    start = 0
    with tqdm(
        total=len(items), desc=desc, disable=not progress or progress_disabled(), unit="item"
    ) as bar:
        for batch in loader:
            batch = batch.to(dev, non_blocking=True)
            with (
                torch.inference_mode(),
                torch.autocast(device_type=dev.type, dtype=torch_dtype, enabled=use_autocast),
            ):
                out = fn(batch)
            if not isinstance(out, dict):
                out = {"output": out}
            n = len(batch)
            yield (
                slice(start, start + n),
                {k: v.detach().float().cpu().numpy() for k, v in out.items()},
            )
            start += n
            bar.update(n)
