"""Captions from predicted embeddings: retrieval, a CLIP-prefix decoder and GIT.

Three routes turn features predicted from brain activity into captions:

1. :func:`retrieve_captions`: the caption-bank baseline. The predicted CLIP text
   embedding of each test item is compared (cosine similarity) with the
   embeddings of a bank of captions, e.g. all COCO training captions except
   those of the test images, and the nearest caption(s) are returned.
2. :class:`ClipPrefixCaptioner`: ClipCap (Mokady et al. 2021, "ClipCap: CLIP
   Prefix for Image Captioning"), the CLIP-prefix decoder option of MindEye2's
   caption module. An MLP maps a CLIP embedding to ``prefix_length`` token
   embeddings that are put before the caption tokens of a causal language model
   (GPT-2). :meth:`ClipPrefixCaptioner.fit` trains it with teacher forcing;
   :meth:`ClipPrefixCaptioner.generate` decodes captions from predicted
   embeddings.
3. GIT driven by predicted image features (Brain Captioning, Ferrante et al.
   2023): :func:`git_image_features` gives GIT's image-encoder tokens (the
   regression target) and :func:`caption_from_git_features` runs GIT's own
   generation with predicted tokens in place of the image encoder's output.

Every loader accepts the model name ``"tiny"`` / ``"tiny:<seed>"``: a tiny
random-initialised model built in code (see :mod:`braindecode_suite.utils.tiny`)
whose captions are meaningless but which runs the same code path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..features.extractors import check_images
from ..utils.devices import resolve_device, resolve_dtype
from ..utils.hub import explain_missing_weights
from ..utils.io import atomic_dir
from ..utils.logging import logger
from ..utils.tiny import (
    TINY_OPEN_CLIP_CONFIG,
    TINY_VERSION,
    clip_tokenizer,
    is_tiny,
    parse_tiny,
    tiny_cache_dir,
    tiny_clip_image_processor,
)
from ..utils.validation import BadInputError, BadTypeError, check_positive_int, check_type
from ._common import as_tensor

__all__ = [
    "ClipPrefixCaptioner",
    "caption_from_git_features",
    "git_image_features",
    "load_clip_prefix_captioner",
    "load_git_captioner",
    "retrieve_captions",
]

#: ``config.json`` ``model_type`` of a saved :class:`ClipPrefixCaptioner`
CAPTIONER_TYPE = "bds_clip_prefix_captioner"
_MAPPING_FILE = "mapping.safetensors"
_LM_SUBFOLDER = "lm"

# CLIP's pixel normalisation (GIT's image processor uses the same values)
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: widths of the tiny models (``"tiny"`` / ``"tiny:<seed>"``)
_TINY_WIDTH = 32
_TINY_VOCAB = 49408  # the CLIP BPE vocabulary of utils.tiny.clip_tokenizer()
_TINY_BOS, _TINY_EOS = 49406, 49407


# ------------------------------------------------------------------------ helpers
def _as_numpy_2d(name: str, value, shape_doc: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().float().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise BadInputError(f"{name} must hold numbers, got dtype {arr.dtype} instead.")
    if arr.ndim != 2:
        raise BadInputError(f"{name} must have shape {shape_doc}, got {arr.shape} instead.")
    if not np.all(np.isfinite(arr)):
        raise BadInputError(f"{name} contains NaN or inf values.")
    return arr


def _as_tensor(name: str, value, ndim: int, shape_doc: str) -> torch.Tensor:
    t = as_tensor(name, value, ndim, shape_doc)
    if len(t) == 0:
        raise BadInputError(f"{name} must contain at least one row, got 0.")
    return t


def _check_captions(name: str, captions, n: int | None = None) -> list[str]:
    if isinstance(captions, str) or not isinstance(captions, Sequence):
        raise BadTypeError(
            f"{name} must be a sequence of strings, got {type(captions).__name__} instead."
        )
    captions = list(captions)
    bad = [i for i, c in enumerate(captions) if not isinstance(c, str)]
    if bad:
        raise BadTypeError(
            f"{name} must hold strings only; item {bad[0]} is "
            f"{type(captions[bad[0]]).__name__} ({captions[bad[0]]!r})."
        )
    if n is not None and len(captions) != n:
        raise BadInputError(f"{name} must have {n} entries (one per row), got {len(captions)}.")
    return captions


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
        raise BadInputError(f"lr must be a positive number, got {lr!r} instead.")
    return float(lr)


@contextlib.contextmanager
def _quiet_transformers():
    """Hide transformers' loading/saving progress bars (the library never prints)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _looks_like_hub_id(value: str) -> bool:
    """``"name"`` or ``"owner/name"`` (a Hub repository id), not a path."""
    return bool(_HUB_ID.match(value)) and not value.endswith((".", "-"))


def _check_decoding(max_new_tokens, num_beams, batch_size) -> tuple[int, int, int]:
    return (
        check_positive_int("max_new_tokens", max_new_tokens),
        check_positive_int("num_beams", num_beams),
        check_positive_int("batch_size", batch_size),
    )


def _decode(tokenizer, ids: torch.Tensor, stop_ids: set[int]) -> list[str]:
    """Cut each row at its first stop token, then decode without special tokens."""
    rows = []
    for row in ids.tolist():
        cut = next((j for j, t in enumerate(row) if t in stop_ids), len(row))
        rows.append(row[:cut])
    return [text.strip() for text in tokenizer.batch_decode(rows, skip_special_tokens=True)]


# ---------------------------------------------------------------- 1. retrieval
def retrieve_captions(
    pred_embeds,
    bank_embeds,
    bank_captions,
    *,
    k: int = 1,
    exclude=None,
    chunk_size: int = 4096,
    return_indices: bool = False,
):
    """Caption-bank retrieval: the bank captions nearest to each predicted embedding.

    Similarity is cosine similarity (rows are L2-normalised, then dot products).
    The similarity matrix is computed in blocks of at most 1024 queries ×
    ``chunk_size`` bank rows, keeping a running top-``k``, so a bank of
    hundreds of thousands of captions needs little memory.

    Parameters
    ----------
    pred_embeds : array or tensor of shape (n_queries, dim)
        Predicted CLIP text embeddings (e.g. decoded from fMRI).
    bank_embeds : array or tensor of shape (n_bank, dim)
        Embeddings of the bank captions, by the same CLIP text model.
    bank_captions : sequence of str, length n_bank
        The captions of the bank, row for row.
    k : int
        Number of captions per query, ``1 <= k <= n_bank``.
    exclude : sequence of length n_queries of (iterables of int or None), optional
        Per query, bank indices that may not be returned (e.g. the test image's
        own captions, when the bank holds them).
    chunk_size : int
        Bank rows per similarity block.
    return_indices : bool
        Also return the bank indices, shape (n_queries, k), best first.

    Returns
    -------
    captions : list of str, or list of list of str
        One caption per query for ``k == 1``; a list of ``k`` captions (best
        first) per query for ``k > 1``.
    indices : ndarray of int64, shape (n_queries, k)
        Only when ``return_indices`` is True.

    Raises
    ------
    BadInputError
        On mismatched shapes or lengths, zero-norm rows, exclusion indices out
        of range, or when exclusions leave fewer than ``k`` candidates.
    """
    q = _as_numpy_2d("pred_embeds", pred_embeds, "(n_queries, dim)")
    b = _as_numpy_2d("bank_embeds", bank_embeds, "(n_bank, dim)")
    n, m = len(q), len(b)
    if n == 0:
        raise BadInputError("pred_embeds must contain at least one row, got 0.")
    if m == 0:
        raise BadInputError("bank_embeds must contain at least one row, got 0.")
    if q.shape[1] != b.shape[1]:
        raise BadInputError(
            f"pred_embeds and bank_embeds must have the same dimension: pred_embeds has "
            f"{q.shape[1]}, bank_embeds has {b.shape[1]}."
        )
    captions = _check_captions("bank_captions", bank_captions)
    if len(captions) != m:
        raise BadInputError(
            f"bank_captions must have one caption per bank_embeds row: got {len(captions)} "
            f"captions, expected {m}."
        )
    k = check_positive_int("k", k)
    if k > m:
        raise BadInputError(f"k must be <= the bank size {m}, got {k} instead.")
    chunk_size = check_positive_int("chunk_size", chunk_size)
    excluded = _check_exclude(exclude, n, m)

    def normalise(name, x):
        x = x.astype(np.float32, copy=False)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        zero = np.flatnonzero(norms[:, 0] == 0)
        if zero.size:
            raise BadInputError(
                f"{name} row {int(zero[0])} has zero norm; cosine similarity is undefined."
            )
        return x / norms

    q = normalise("pred_embeds", q)
    b = normalise("bank_embeds", b)

    best_idx = np.empty((n, k), dtype=np.int64)
    q_block = 1024
    for q0 in range(0, n, q_block):
        q1 = min(q0 + q_block, n)
        vals = np.full((q1 - q0, k), -np.inf, dtype=np.float32)
        idx = np.full((q1 - q0, k), -1, dtype=np.int64)
        for b0 in range(0, m, chunk_size):
            b1 = min(b0 + chunk_size, m)
            sims = q[q0:q1] @ b[b0:b1].T
            for row in range(q0, q1):
                ex = excluded[row]
                if ex is not None:
                    ex = ex[(ex >= b0) & (ex < b1)]
                    sims[row - q0, ex - b0] = -np.inf
            kk = min(k, b1 - b0)
            if kk < b1 - b0:
                part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            else:
                part = np.broadcast_to(np.arange(b1 - b0), sims.shape)
            cand_vals = np.concatenate([vals, np.take_along_axis(sims, part, 1)], axis=1)
            cand_idx = np.concatenate([idx, part + b0], axis=1)
            # best first; among equal similarities the lower bank index first
            order = np.lexsort((cand_idx, -cand_vals), axis=1)[:, :k]
            vals = np.take_along_axis(cand_vals, order, 1)
            idx = np.take_along_axis(cand_idx, order, 1)
        short = np.flatnonzero(~np.isfinite(vals[:, -1]))
        if short.size:
            row = q0 + int(short[0])
            n_left = int(np.isfinite(vals[short[0]]).sum())
            raise BadInputError(
                f"exclude leaves only {n_left} bank entries for query {row}, fewer than k={k}."
            )
        best_idx[q0:q1] = idx

    out = [[captions[j] for j in row] for row in best_idx]
    if k == 1:
        out = [row[0] for row in out]
    return (out, best_idx) if return_indices else out


def _check_exclude(exclude, n: int, m: int) -> list:
    if exclude is None:
        return [None] * n
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Sequence):
        raise BadTypeError(
            "exclude must be a sequence with one set of bank indices per query, got "
            f"{type(exclude).__name__} instead."
        )
    if len(exclude) != n:
        raise BadInputError(
            f"exclude must have one entry per pred_embeds row: got {len(exclude)}, expected {n}."
        )
    out = []
    for i, item in enumerate(exclude):
        if item is None:
            out.append(None)
            continue
        arr = np.asarray(sorted(item) if isinstance(item, (set, frozenset)) else list(item))
        if arr.size == 0:
            out.append(None)
            continue
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise BadInputError(
                f"exclude[{i}] must be an iterable of integer bank indices, got {item!r}."
            )
        if arr.min() < 0 or arr.max() >= m:
            raise BadInputError(
                f"exclude[{i}] holds bank index {int(arr.min() if arr.min() < 0 else arr.max())},"
                f" outside [0, {m - 1}] (the bank has {m} rows)."
            )
        out.append(arr.astype(np.int64))
    return out


# ------------------------------------------------------- 2. CLIP-prefix decoder
class ClipPrefixCaptioner(nn.Module):
    """ClipCap: an MLP maps a CLIP embedding to a prefix for a causal language model.

    The mapping network is ClipCap's MLP variant,
    ``Linear(clip_dim, hidden) -> Tanh -> Linear(hidden, prefix_length * d_model)``
    with ``hidden = prefix_length * d_model // 2`` by default. Its output,
    reshaped to ``(prefix_length, d_model)``, is fed as ``inputs_embeds`` before
    the caption's token embeddings; the LM predicts the caption, which ends with
    the tokenizer's end-of-sequence token.

    Parameters
    ----------
    lm : transformers causal LM
        E.g. :class:`transformers.GPT2LMHeadModel` (``from_pretrained("gpt2")``).
    clip_dim : int
        Dimension of the CLIP embeddings it is driven by.
    prefix_length : int
        Number of prefix token embeddings.
    hidden_dim : int, optional
        Width of the MLP's hidden layer.

    Notes
    -----
    Save with :meth:`save_pretrained` (the LM via its own ``save_pretrained`` in
    ``lm/``, the mapping network as ``mapping.safetensors`` and a
    ``config.json``) and load with :meth:`from_pretrained` or
    :func:`load_clip_prefix_captioner`. The tokenizer is not part of the model:
    pass the LM's (GPT-2's for real use; :func:`~braindecode_suite.utils.tiny.clip_tokenizer`
    for the tiny model) to :meth:`fit` and :meth:`generate`.
    """

    def __init__(self, lm, clip_dim: int, prefix_length: int = 10, hidden_dim: int | None = None):
        super().__init__()
        if not isinstance(lm, nn.Module) or not hasattr(lm, "get_input_embeddings"):
            raise BadTypeError(
                f"lm must be a transformers causal language model (e.g. GPT2LMHeadModel), "
                f"got {type(lm).__name__} instead."
            )
        self.clip_dim = check_positive_int("clip_dim", clip_dim)
        self.prefix_length = check_positive_int("prefix_length", prefix_length)
        d_model = lm.get_input_embeddings().embedding_dim
        if hidden_dim is None:
            hidden_dim = max(1, d_model * self.prefix_length // 2)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.lm = lm
        self.mapping = nn.Sequential(
            nn.Linear(self.clip_dim, self.hidden_dim),
            nn.Tanh(),
            nn.Linear(self.hidden_dim, self.prefix_length * d_model),
        )
        param = next(lm.parameters())
        self.mapping.to(device=param.device, dtype=param.dtype)

    # ---------------------------------------------------------------- properties
    @property
    def d_model(self) -> int:
        """Width of the LM's token embeddings."""
        return self.lm.get_input_embeddings().embedding_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def max_positions(self) -> int | None:
        """The LM's context length (prefix + caption), when its config gives one."""
        cfg = self.lm.config
        for key in ("n_positions", "max_position_embeddings"):
            value = getattr(cfg, key, None)
            if value:
                return int(value)
        return None

    # ------------------------------------------------------------------- forward
    def prefix(self, embeds: torch.Tensor) -> torch.Tensor:
        """Map embeddings (n, clip_dim) to prefix token embeddings (n, prefix_length, d_model)."""
        out = self.mapping(embeds.to(self.device, self.dtype))
        return out.view(len(embeds), self.prefix_length, self.d_model)

    def forward(self, embeds, input_ids, attention_mask=None, labels=None):
        """Run the LM on ``[prefix(embeds), embed(input_ids)]``.

        ``attention_mask`` (n, seq_len) and ``labels`` (n, prefix_length + seq_len)
        are passed on to the LM as they are; the prefix positions are always
        attended.
        """
        prefix = self.prefix(embeds)
        tokens = self.lm.get_input_embeddings()(input_ids.to(self.device))
        inputs_embeds = torch.cat([prefix, tokens], dim=1)
        if attention_mask is not None:
            ones = torch.ones(len(prefix), self.prefix_length, dtype=attention_mask.dtype)
            attention_mask = torch.cat([ones, attention_mask.cpu()], dim=1).to(self.device)
        if labels is not None:
            labels = labels.to(self.device)
        return self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels)

    def _check_embeds(self, name: str, embeds) -> torch.Tensor:
        x = _as_tensor(name, embeds, 2, "(n, clip_dim)")
        if x.shape[1] != self.clip_dim:
            raise BadInputError(
                f"{name} last dimension must be {self.clip_dim} (the captioner's clip_dim), "
                f"got {x.shape[1]} (shape {tuple(x.shape)}) instead."
            )
        return x

    @staticmethod
    def _eos(tokenizer) -> int:
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise BadInputError(
                f"tokenizer must have an eos_token_id (it ends every caption), "
                f"got {type(tokenizer).__name__} with eos_token_id=None."
            )
        return int(eos)

    # ----------------------------------------------------------------------- fit
    def fit(
        self,
        embeds,
        captions,
        tokenizer,
        *,
        epochs: int = 10,
        lr: float = 2e-5,
        batch_size: int = 32,
        seed: int = 0,
        freeze_lm: bool = False,
    ) -> list[float]:
        """Train with teacher forcing on (embedding, caption) pairs.

        Each caption is tokenized without special tokens and ends with
        ``tokenizer.eos_token_id``; captions longer than the LM's context
        (minus the prefix) are truncated. The loss is the LM's cross-entropy on
        the caption tokens only: prefix and padding positions have label -100.
        The optimiser is AdamW; each epoch visits the pairs in a random order
        drawn from ``torch.Generator().manual_seed(seed)``, and dropout runs
        under ``torch.manual_seed(seed)`` (the global RNG state is restored
        afterwards), so training is deterministic for a given seed.

        Parameters
        ----------
        embeds : array or tensor of shape (n, clip_dim)
            CLIP embeddings of the training items (e.g. image or caption embeddings).
        captions : sequence of str, length n
            One caption per embedding.
        tokenizer : transformers tokenizer
            The LM's tokenizer; must have an ``eos_token_id``.
        epochs, batch_size : int
            Passes over the data; pairs per optimiser step.
        lr : float
            AdamW learning rate (ClipCap used 2e-5 with GPT-2).
        seed : int
            Seed of the shuffling and dropout.
        freeze_lm : bool
            Train only the mapping network, with the LM in eval mode (ClipCap's
            "prefix only" variant).

        Returns
        -------
        losses : list of float
            Mean loss per caption token of each epoch.
        """
        x = self._check_embeds("embeds", embeds)
        n = len(x)
        captions = _check_captions("captions", captions, n)
        epochs = check_positive_int("epochs", epochs)
        batch_size = check_positive_int("batch_size", batch_size)
        seed = check_positive_int("seed", seed, minimum=0)
        lr = _check_lr(lr)
        eos = self._eos(tokenizer)
        max_len = None
        if self.max_positions is not None:
            max_len = self.max_positions - self.prefix_length
            if max_len < 1:
                raise BadInputError(
                    f"prefix_length {self.prefix_length} leaves no room for caption tokens in "
                    f"the LM's context of {self.max_positions} positions."
                )
        ids = tokenizer(captions, add_special_tokens=False)["input_ids"]
        seqs = []
        for tokens in ids:
            tokens = list(tokens) + [eos]
            if max_len is not None and len(tokens) > max_len:
                tokens = tokens[: max_len - 1] + [eos]
            seqs.append(tokens)
        vocab = self.lm.get_input_embeddings().num_embeddings
        top = max(max(s) for s in seqs)
        if top >= vocab:
            raise BadInputError(
                f"tokenizer gives token id {top} but the LM's vocabulary has {vocab} entries; "
                "pass the LM's own tokenizer."
            )

        lm_flags = [p.requires_grad for p in self.lm.parameters()]
        if freeze_lm:
            self.lm.requires_grad_(False)
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr)
        order_rng = torch.Generator().manual_seed(seed)
        devices = [self.device] if self.device.type == "cuda" else []
        losses = []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                self.train()
                if freeze_lm:
                    self.lm.eval()
                for _ in range(epochs):
                    total, count = 0.0, 0
                    for batch in torch.randperm(n, generator=order_rng).split(batch_size):
                        rows = [seqs[i] for i in batch.tolist()]
                        input_ids, attention, labels = self._batch(rows, eos)
                        out = self(x[batch], input_ids, attention, labels)
                        optimizer.zero_grad(set_to_none=True)
                        out.loss.backward()
                        optimizer.step()
                        n_tokens = int(attention.sum())
                        total += float(out.loss.detach()) * n_tokens
                        count += n_tokens
                    losses.append(total / count)
                    logger.debug("ClipPrefixCaptioner epoch %d: loss %.4f", len(losses), losses[-1])
        finally:
            for p, flag in zip(self.lm.parameters(), lm_flags, strict=True):
                p.requires_grad_(flag)
            self.eval()
        return losses

    def _batch(self, rows: list[list[int]], pad_id: int):
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        labels = torch.full((len(rows), self.prefix_length + length), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            attention[i, : len(r)] = 1
            labels[i, self.prefix_length : self.prefix_length + len(r)] = torch.tensor(r)
        return input_ids, attention, labels

    # ------------------------------------------------------------------ generate
    @torch.no_grad()
    def generate(
        self,
        pred_embeds,
        tokenizer,
        *,
        max_new_tokens: int = 20,
        num_beams: int = 1,
        batch_size: int = 32,
    ) -> list[str]:
        """Caption predicted CLIP embeddings.

        Greedy decoding (``num_beams=1``) or beam search, by the LM's
        ``generate(inputs_embeds=prefix, ...)``, until the tokenizer's
        end-of-sequence token or ``max_new_tokens``. Every prefix has the same
        length, so no padding is involved and the captions do not depend on
        ``batch_size``.

        Parameters
        ----------
        pred_embeds : array or tensor of shape (n, clip_dim)
            Predicted embeddings.
        tokenizer : transformers tokenizer
            The LM's tokenizer (the one used in :meth:`fit`).
        max_new_tokens, num_beams, batch_size : int
            Decoding length, beam width and embeddings per ``generate`` call.

        Returns
        -------
        captions : list of str
        """
        x = self._check_embeds("pred_embeds", pred_embeds)
        max_new_tokens, num_beams, batch_size = _check_decoding(
            max_new_tokens, num_beams, batch_size
        )
        if self.max_positions is not None and self.prefix_length + max_new_tokens > (
            self.max_positions
        ):
            raise BadInputError(
                f"max_new_tokens must be <= {self.max_positions - self.prefix_length} (the LM's "
                f"{self.max_positions} positions minus the prefix of {self.prefix_length}), "
                f"got {max_new_tokens} instead."
            )
        eos = self._eos(tokenizer)
        pad = getattr(tokenizer, "pad_token_id", None)
        pad = eos if pad is None else int(pad)
        self.eval()
        out = []
        for start in range(0, len(x), batch_size):
            prefix = self.prefix(x[start : start + batch_size])
            mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=self.device)
            ids = self.lm.generate(
                inputs_embeds=prefix,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=pad,
            )
            out.extend(_decode(tokenizer, ids.cpu(), {eos}))
        return out

    # ---------------------------------------------------------------- save/load
    def save_pretrained(self, folder) -> Path:
        """Write ``config.json``, ``mapping.safetensors`` and the LM in ``lm/``."""
        from safetensors.torch import save_file

        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        with _quiet_transformers():
            self.lm.save_pretrained(folder / _LM_SUBFOLDER)
        state = {k: v.detach().cpu().contiguous() for k, v in self.mapping.state_dict().items()}
        save_file(state, str(folder / _MAPPING_FILE))
        config = {
            "model_type": CAPTIONER_TYPE,
            "clip_dim": self.clip_dim,
            "prefix_length": self.prefix_length,
            "hidden_dim": self.hidden_dim,
            "lm_subfolder": _LM_SUBFOLDER,
            "mapping": "mlp-tanh",
            "version": 1,
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(
        cls, folder_or_id, device: str = "auto", dtype: str = "float32"
    ) -> ClipPrefixCaptioner:
        """Load a captioner saved by :meth:`save_pretrained` (local folder or Hub id).

        Raises
        ------
        BadInputError
            If the folder is missing or not a saved captioner, or the Hub
            repository is not in the local cache while offline.
        """
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        check_type("folder_or_id", folder_or_id, (str, os.PathLike))
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype)
        folder = _resolve_folder("CLIP-prefix captioner", folder_or_id)
        config_file = folder / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        if config.get("model_type") != CAPTIONER_TYPE:
            raise BadInputError(
                f"{str(folder_or_id)!r} is not a saved ClipPrefixCaptioner (its config.json "
                f"must have model_type {CAPTIONER_TYPE!r}). To start from a plain language "
                "model such as 'gpt2', use load_clip_prefix_captioner(name, clip_dim=...)."
            )
        with _quiet_transformers():
            lm = AutoModelForCausalLM.from_pretrained(
                str(folder / config.get("lm_subfolder", _LM_SUBFOLDER)), dtype=torch_dtype
            )
        model = cls(
            lm,
            clip_dim=config["clip_dim"],
            prefix_length=config["prefix_length"],
            hidden_dim=config["hidden_dim"],
        )
        state = load_file(str(folder / _MAPPING_FILE))
        model.mapping.load_state_dict(state)
        return model.to(device=torch_device, dtype=torch_dtype).eval()


def _resolve_folder(what: str, folder_or_id) -> Path:
    """A local folder, or the Hub snapshot of a repository id (cached or downloaded)."""
    path = Path(folder_or_id).expanduser()
    if path.is_dir():
        return path
    name = str(folder_or_id)
    if path.exists() or not _looks_like_hub_id(name):
        raise BadInputError(f"{what} folder {name!r} does not exist or is not a directory.")
    from huggingface_hub import snapshot_download

    # offline cache miss (OSError), HTTP or repository errors
    with explain_missing_weights(what, name, errors=(Exception,)):
        return Path(snapshot_download(name))


def _tiny_gpt2(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=_TINY_WIDTH,
        n_positions=64,
        vocab_size=_TINY_VOCAB,
        bos_token_id=_TINY_EOS,
        eos_token_id=_TINY_EOS,
        pad_token_id=_TINY_EOS,
        # no dropout: the tiny model exists to run fast, e.g. memorise a few captions
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


def load_clip_prefix_captioner(
    model_id_or_path="tiny",
    device: str = "auto",
    dtype: str = "float32",
    *,
    clip_dim: int | None = None,
    prefix_length: int = 10,
    seed: int = 0,
) -> ClipPrefixCaptioner:
    """Load a :class:`ClipPrefixCaptioner`, or start a new one on a pretrained LM.

    Parameters
    ----------
    model_id_or_path : str or path
        - ``"tiny"`` / ``"tiny:<seed>"``: a tiny random GPT-2 (2 layers, width 32,
          the 49,408-token CLIP vocabulary, 64 positions; use
          :func:`~braindecode_suite.utils.tiny.clip_tokenizer` as its tokenizer)
          with a random mapping network, saved once under the tiny cache and loaded
          from there. ``clip_dim`` defaults to the tiny OpenCLIP width (16).
        - with ``clip_dim=None``: a folder (or Hub id) written by
          :meth:`ClipPrefixCaptioner.save_pretrained`.
        - with ``clip_dim`` given: a causal LM to start from (e.g. ``"gpt2"``, loaded
          by ``AutoModelForCausalLM.from_pretrained``) and a new mapping network
          initialised with ``torch.manual_seed(seed)``, to be trained with
          :meth:`ClipPrefixCaptioner.fit`.
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    dtype : str
        ``'float32'``, ``'float16'``, ``'bfloat16'`` or ``'float64'``.
    clip_dim : int, optional
        Embedding dimension of a new mapping network (see above).
    prefix_length : int
        Prefix length of a new mapping network (ignored when loading a saved one).
    seed : int
        Seed of a new mapping network (the tiny model's seed is in its name).

    Raises
    ------
    BadInputError
        If the weights are neither on disk nor downloadable (e.g. offline).
    """
    prefix_length = check_positive_int("prefix_length", prefix_length)
    seed = check_positive_int("seed", seed, minimum=0)
    if clip_dim is not None:
        clip_dim = check_positive_int("clip_dim", clip_dim)
    if is_tiny(model_id_or_path):
        tiny_seed = parse_tiny(model_id_or_path)
        dim = clip_dim or int(TINY_OPEN_CLIP_CONFIG["embed_dim"])
        folder = (
            tiny_cache_dir()
            / f"clip-prefix-captioner-d{dim}-p{prefix_length}-s{tiny_seed}-v{TINY_VERSION}"
        )
        if not (folder / "config.json").is_file():
            lm = _tiny_gpt2(tiny_seed)
            with torch.random.fork_rng():
                torch.manual_seed(tiny_seed + 1)
                model = ClipPrefixCaptioner(lm, dim, prefix_length)
            with atomic_dir(folder) as tmp:
                model.save_pretrained(tmp)
        logger.info("ClipPrefixCaptioner %r: tiny random weights.", model_id_or_path)
        return ClipPrefixCaptioner.from_pretrained(folder, device=device, dtype=dtype)
    check_type("model_id_or_path", model_id_or_path, (str, os.PathLike))
    if clip_dim is None:
        return ClipPrefixCaptioner.from_pretrained(model_id_or_path, device=device, dtype=dtype)

    from transformers import AutoModelForCausalLM

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    with explain_missing_weights("language model", model_id_or_path), _quiet_transformers():
        lm = AutoModelForCausalLM.from_pretrained(str(model_id_or_path), dtype=torch_dtype)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ClipPrefixCaptioner(lm, clip_dim, prefix_length)
    return model.to(device=torch_device, dtype=torch_dtype).eval()


# ------------------------------------------------------------------------ 3. GIT
def _tiny_git_folder(seed: int) -> Path:
    """A saved tiny random ``GitForCausalLM`` + ``GitProcessor`` (32-px images)."""
    folder = tiny_cache_dir() / f"git-captioner-s{seed}-v{TINY_VERSION}"
    if (folder / "config.json").is_file() and (folder / "processor_config.json").is_file():
        return folder
    from transformers import GitConfig, GitForCausalLM, GitProcessor

    # larger-than-default init so that different images give different random captions
    init = 0.2
    config = GitConfig(
        vision_config={
            "hidden_size": _TINY_WIDTH,
            "intermediate_size": 2 * _TINY_WIDTH,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
            "initializer_range": init,
        },
        hidden_size=_TINY_WIDTH,
        intermediate_size=2 * _TINY_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        vocab_size=_TINY_VOCAB,
        max_position_embeddings=64,
        initializer_range=init,
        # the CLIP tokenizer's <|startoftext|> starts a caption (GIT's [CLS]) and its
        # <|endoftext|> ends it and pads (GIT's [SEP] and [PAD])
        bos_token_id=_TINY_BOS,
        eos_token_id=_TINY_EOS,
        pad_token_id=_TINY_EOS,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GitForCausalLM(config)
    image_processor = tiny_clip_image_processor(
        image_mean=list(_CLIP_MEAN), image_std=list(_CLIP_STD)
    )
    processor = GitProcessor(image_processor=image_processor, tokenizer=clip_tokenizer())
    with atomic_dir(folder) as tmp, _quiet_transformers():
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return folder


def load_git_captioner(
    model_id_or_path="microsoft/git-large-coco", device: str = "auto", dtype: str = "float32"
):
    """Load a GIT captioner (:class:`transformers.GitForCausalLM`) and its processor.

    Parameters
    ----------
    model_id_or_path : str or path
        Hub id (Brain Captioning used ``"microsoft/git-large-coco"``), a local
        folder, or ``"tiny"`` / ``"tiny:<seed>"`` for a tiny random GIT (32-px
        images, 8-px patches: 17 image tokens of width 32) whose tokenizer is the
        CLIP BPE tokenizer (``<|startoftext|>`` starts and ``<|endoftext|>`` ends
        a caption).
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    dtype : str
        ``'float32'``, ``'float16'``, ``'bfloat16'`` or ``'float64'``.

    Returns
    -------
    model : transformers.GitForCausalLM
        In eval mode, on ``device``.
    processor : transformers.GitProcessor
        Its image processor prepares pixels; its tokenizer decodes captions.

    Raises
    ------
    BadInputError
        If the weights are neither on disk nor downloadable (e.g. offline).
    """
    from transformers import AutoProcessor, GitForCausalLM

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if is_tiny(model_id_or_path):
        source = _tiny_git_folder(parse_tiny(model_id_or_path))
        logger.info("GIT captioner %r: tiny random weights.", model_id_or_path)
    else:
        check_type("model_id_or_path", model_id_or_path, (str, os.PathLike))
        source = model_id_or_path
    with explain_missing_weights("GIT captioner", model_id_or_path), _quiet_transformers():
        model = GitForCausalLM.from_pretrained(str(source), dtype=torch_dtype)
        processor = AutoProcessor.from_pretrained(str(source))
    return model.to(torch_device).eval(), processor


def _check_git(model):
    git = getattr(model, "git", None)
    if git is None or not hasattr(git, "image_encoder") or not hasattr(model, "generate"):
        raise BadTypeError(
            "model must be a transformers GitForCausalLM (see load_git_captioner), "
            f"got {type(model).__name__} instead."
        )
    return git


def _git_token_shape(model) -> tuple[int, int]:
    """(n_tokens, width) of GIT's image-encoder output for one image."""
    vc = model.config.vision_config
    if getattr(model.config, "num_image_with_embedding", None) is not None:
        raise BadInputError(
            "video GIT models (config.num_image_with_embedding set) are not supported; "
            "use an image captioner such as 'microsoft/git-large-coco'."
        )
    return int((vc.image_size // vc.patch_size) ** 2 + 1), int(vc.hidden_size)


def _model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def git_image_features(images, model, processor_or_size, *, batch_size: int = 8) -> np.ndarray:
    """GIT's image-encoder tokens: the regression target of Brain Captioning.

    These are the outputs of GIT's CLIP vision transformer
    (``model.git.image_encoder(pixel_values).last_hidden_state``: CLS plus patch
    tokens after the final layer norm), *before* GIT's ``visual_projection``
    into the text decoder. Predict them from brain activity and pass the
    prediction to :func:`caption_from_git_features`. For
    ``microsoft/git-large-coco`` they have shape (257, 1024) per image.

    Parameters
    ----------
    images : array of shape (n, H, W, 3)
        uint8 0-255 or float in [0, 1].
    model : transformers.GitForCausalLM
        E.g. from :func:`load_git_captioner`.
    processor_or_size : GitProcessor, image processor, or int
        A processor (or its ``image_processor``) prepares the pixels exactly as
        GIT was trained. An int must equal the encoder's image size; images are
        then squashed to that size (bicubic, antialiased) and normalised with
        CLIP's mean and std, without the processor's resize-and-crop.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    features : ndarray of float32, shape (n, n_tokens, width)
    """
    git = _check_git(model)
    n_tokens, width = _git_token_shape(model)
    arr = check_images("images", images)
    if len(arr) == 0:
        raise BadInputError("images must contain at least one image, got 0.")
    batch_size = check_positive_int("batch_size", batch_size)
    pixel_values = _git_pixels(arr, model, processor_or_size)
    device, dtype = _model_device_dtype(model)
    out = []
    with torch.no_grad():
        for start in range(0, len(pixel_values), batch_size):
            pv = pixel_values[start : start + batch_size].to(device, dtype)
            feats = git.image_encoder(pixel_values=pv).last_hidden_state
            out.append(feats.float().cpu().numpy())
    features = np.concatenate(out)
    assert features.shape[1:] == (n_tokens, width), features.shape
    return features


def _git_pixels(arr: np.ndarray, model, processor_or_size) -> torch.Tensor:
    import torch.nn.functional as F

    size = int(model.config.vision_config.image_size)
    if isinstance(processor_or_size, (int, np.integer)) and not isinstance(processor_or_size, bool):
        if int(processor_or_size) != size:
            raise BadInputError(
                f"processor_or_size must be the GIT image encoder's image size {size}, "
                f"got {int(processor_or_size)} instead."
            )
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
        x = x.float() / 255.0 if arr.dtype == np.uint8 else x.float()
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp(0, 1)
        mean = torch.tensor(_CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_CLIP_STD).view(1, 3, 1, 1)
        return (x - mean) / std
    image_processor = getattr(processor_or_size, "image_processor", processor_or_size)
    if not callable(image_processor):
        raise BadTypeError(
            "processor_or_size must be a GIT processor, an image processor or an int image "
            f"size, got {type(processor_or_size).__name__} instead."
        )
    kwargs = {} if arr.dtype == np.uint8 else {"do_rescale": False}
    pixel_values = image_processor(list(arr), return_tensors="pt", **kwargs)["pixel_values"]
    if tuple(pixel_values.shape[-2:]) != (size, size):
        raise BadInputError(
            f"processor_or_size gives {tuple(pixel_values.shape[-2:])} pixel images but the "
            f"GIT image encoder expects {size}×{size}; pass the model's own processor."
        )
    return pixel_values


class _PredictedImageTokens(nn.Module):
    """Stands in for GIT's image encoder: returns the tokens carried in ``pixel_values``.

    :func:`caption_from_git_features` passes the predicted tokens (n, n_tokens,
    width) as ``pixel_values`` of shape (n, 1, n_tokens, width), so GIT's own
    ``generate`` handles them (batching, beam expansion, dropping them after
    the first step) exactly as it handles real pixels.
    """

    def forward(self, pixel_values, interpolate_pos_encoding=False, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        return BaseModelOutput(last_hidden_state=pixel_values[:, 0])


@contextlib.contextmanager
def _predicted_image_encoder(model):
    """Swap ``model.git.image_encoder`` for :class:`_PredictedImageTokens`; restore after."""
    git = model.git
    original = git.image_encoder
    git.image_encoder = _PredictedImageTokens()
    try:
        yield
    finally:
        git.image_encoder = original


def _git_generate_ids(
    pred_features, model, *, max_new_tokens=20, num_beams=1, batch_size=8
) -> list[torch.Tensor]:
    """Generated token ids per batch (without the start token) from predicted tokens."""
    _check_git(model)
    n_tokens, width = _git_token_shape(model)
    feats = _as_tensor("pred_features", pred_features, 3, "(n, n_tokens, width)")
    if feats.shape[1:] != (n_tokens, width):
        raise BadInputError(
            f"pred_features must have shape (n, {n_tokens}, {width}) (GIT's image-encoder "
            f"tokens: n_tokens, width), got {tuple(feats.shape)} instead."
        )
    max_new_tokens, num_beams, batch_size = _check_decoding(max_new_tokens, num_beams, batch_size)
    bos = model.generation_config.bos_token_id
    if bos is None:
        bos = model.config.bos_token_id
    device, dtype = _model_device_dtype(model)
    out = []
    with torch.no_grad(), _predicted_image_encoder(model):
        for start in range(0, len(feats), batch_size):
            f = feats[start : start + batch_size].to(device, dtype)
            input_ids = torch.full((len(f), 1), int(bos), dtype=torch.long, device=device)
            ids = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                pixel_values=f[:, None],
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                do_sample=False,
            )
            out.append(ids[:, 1:].cpu())
    return out


def caption_from_git_features(
    pred_features,
    model,
    tokenizer,
    *,
    max_new_tokens: int = 20,
    num_beams: int = 1,
    batch_size: int = 8,
) -> list[str]:
    """Caption predicted GIT image-encoder tokens with GIT's text decoder.

    During generation, ``model.git.image_encoder`` is replaced by a module that
    returns the predicted tokens (restored afterwards, also on error; do not
    share ``model`` across threads meanwhile). Everything after the image
    encoder is GIT's own code: ``visual_projection``, the decoder and
    ``model.generate`` (greedy for ``num_beams=1``, else beam search), starting
    from the model's ``bos_token_id`` and stopping at its ``eos_token_id``. For
    the tokens of real images (:func:`git_image_features`) the captions equal
    ``model.generate(pixel_values=...)``'s.

    Parameters
    ----------
    pred_features : array or tensor of shape (n, n_tokens, width)
        Predicted image-encoder tokens (see :func:`git_image_features`).
    model : transformers.GitForCausalLM
        E.g. from :func:`load_git_captioner`.
    tokenizer : GitProcessor or tokenizer
        Decodes the generated ids (anything with ``batch_decode``).
    max_new_tokens, num_beams, batch_size : int
        Decoding length, beam width and items per ``generate`` call.

    Returns
    -------
    captions : list of str
    """
    if not hasattr(tokenizer, "batch_decode"):
        raise BadTypeError(
            "tokenizer must be the GIT processor or its tokenizer (with batch_decode), "
            f"got {type(tokenizer).__name__} instead."
        )
    batches = _git_generate_ids(
        pred_features,
        model,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        batch_size=batch_size,
    )
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.eos_token_id
    stop = set(eos) if isinstance(eos, (list, tuple)) else {eos}
    stop.discard(None)
    captions = []
    for ids in batches:
        captions.extend(_decode(tokenizer, ids, stop))
    return captions
