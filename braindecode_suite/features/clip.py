"""OpenCLIP image and text feature extractors.

``open_clip_image`` gives the image embedding (``model.encode_image``, **not**
L2-normalised: divide by the norm yourself for cosine retrieval) and optionally
the vision transformer's tokens in one of two conventions:

- ``tokens="hidden"``: the patch tokens after ``ln_post``, without the CLS token,
  shape (n_patches, width): MindEye2's ViT-bigG-14 256×1664 targets
  (open_clip ``visual.output_tokens = True``).
- ``tokens="projected"``: all tokens including CLS after ``ln_post`` and the
  visual projection ``proj``, shape (1 + n_patches, embed_dim): Brain-Diffuser's
  ViT-L/14 257×768 targets. Row 0 equals ``embeds`` for a standard ViT.

``open_clip_text`` gives the caption embedding (``model.encode_text``, not
normalised) and, with ``tokens=True``, the final hidden states after
``ln_final`` (context_length, width).

Weights come from an open_clip pretrained tag (downloaded once into the Hugging
Face cache), a local checkpoint file, or ``pretrained=None`` for a random
initialisation (tests only; seeded with 0 so it is reproducible, and the cache
key then says ``random-init``).
"""

from __future__ import annotations

import itertools
import os
from functools import cached_property
from pathlib import Path

import numpy as np

from ..utils.tiny import register_tiny_open_clip
from ..utils.validation import BadInputError, BadTypeError, check_option
from .extractors import Extractor, _sha256

__all__ = ["OpenCLIPImageExtractor", "OpenCLIPTextExtractor"]

_TORCH_INTERPOLATION = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}


def _import_open_clip():
    try:
        import open_clip
    except ImportError:
        raise BadInputError(
            "The CLIP extractors need open_clip: `pip install open_clip_torch`."
        ) from None
    return open_clip


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or value.startswith((".", "~"))
        or value.endswith((".pt", ".pth", ".bin", ".safetensors"))
    )


class _OpenCLIPBase(Extractor):
    """Shared model loading, validation and weights id of the two OpenCLIP extractors."""

    def __init__(self, model_name: str = "ViT-L-14", pretrained: str | None = "openai", **kw):
        super().__init__(**kw)
        if model_name == "tiny":
            # a tiny random ViT for offline demos and tests (utils/tiny.py)
            model_name, pretrained = register_tiny_open_clip(), None
        self.model_name = model_name
        self.pretrained = pretrained

    # -- configuration, known without loading the model ------------------------------------
    @cached_property
    def _config(self) -> dict:
        open_clip = _import_open_clip()
        cfg = open_clip.get_model_config(self.model_name)
        if cfg is None:
            check_option("model_name", self.model_name, open_clip.list_models())
        return cfg

    @cached_property
    def _checkpoint(self) -> Path | None:
        """The local checkpoint file, or None for a tag or random init."""
        if self.pretrained is None:
            return None
        if not isinstance(self.pretrained, (str, os.PathLike)):
            raise BadTypeError(
                f"pretrained must be an open_clip tag, a checkpoint path or None, "
                f"got {type(self.pretrained).__name__} instead."
            )
        value = str(self.pretrained)
        path = Path(value).expanduser()
        if path.is_file():
            return path
        open_clip = _import_open_clip()
        tags = open_clip.list_pretrained_tags_by_model(self.model_name)
        if value in tags:
            return None
        if _looks_like_path(value):
            raise BadInputError(f"pretrained: checkpoint file {value!r} does not exist.")
        check_option(f"pretrained (tags for {self.model_name})", value, tags)
        return None  # pragma: no cover - check_option raised

    def weights_id(self) -> dict:
        open_clip = _import_open_clip()
        if self.pretrained is None:
            out = {"weights": f"{self.model_name}/random-init", "init_seed": 0}
        elif self._checkpoint is not None:
            out = {
                "weights": f"{self.model_name}/{self._checkpoint.name}",
                "weights_sha256": _sha256(self._checkpoint),
            }
        else:
            out = {"weights": f"{self.model_name}/{self.pretrained}"}
        return {**out, "open_clip": open_clip.__version__}

    # -- the model --------------------------------------------------------------------------
    @cached_property
    def model(self):
        import torch

        from ..utils.devices import resolve_device

        open_clip = _import_open_clip()
        self._config  # noqa: B018 - validates model_name first
        checkpoint = self._checkpoint
        pretrained = None if self.pretrained is None else str(checkpoint or self.pretrained)
        device = resolve_device(self.device)
        try:
            with torch.random.fork_rng():  # random init (pretrained=None) is reproducible
                torch.manual_seed(0)
                model, _, _ = open_clip.create_model_and_transforms(
                    self.model_name, pretrained=pretrained, device=device
                )
        except (RuntimeError, OSError) as err:
            if checkpoint is not None:
                raise BadInputError(
                    f"Could not load the open_clip checkpoint {str(checkpoint)!r} into "
                    f"{self.model_name}: {err}"
                ) from err
            if pretrained is None:
                raise
            raise BadInputError(
                f"open_clip weights for {self.model_name} / {self.pretrained!r} are not "
                "available offline (not in the Hugging Face cache and no network). Download "
                "them once with network (they go to the Hugging Face cache, honour HF_HOME), "
                'e.g. `python -c "import open_clip; open_clip.create_model_and_transforms('
                f"'{self.model_name}', pretrained='{self.pretrained}')\"`, or pass a local "
                f"checkpoint path as pretrained=. Original error: {err}"
            ) from err
        return model.eval()


class OpenCLIPImageExtractor(_OpenCLIPBase):
    """OpenCLIP image embeddings and, optionally, vision-transformer tokens.

    Parameters
    ----------
    model_name : str
        An open_clip model name (``open_clip.list_models()``), e.g. ``'ViT-L-14'``,
        or ``'tiny'``: a tiny random ViT (:mod:`braindecode_suite.utils.tiny`) for
        offline demos and tests (``pretrained`` is then ignored).
    pretrained : str | None
        An open_clip pretrained tag (``'openai'``, ``'laion2b_s39b_b160k'``), a local
        checkpoint file, or None for random weights (explicit only, for tests).
    tokens : 'none' | 'hidden' | 'projected'
        Token field to add (see the module docstring).
    **kw
        ``batch_size``, ``device``, ``dtype`` of :class:`Extractor`.

    Notes
    -----
    Images are preprocessed as open_clip does (resize the shortest side with the
    model's interpolation, centre crop to the model's image size, its mean/std),
    with torch ops on the whole batch instead of PIL per image; antialiased torch
    resizing differs from PIL's by small rounding amounts.
    """

    kind = "open_clip_image"

    def __init__(
        self,
        model_name: str = "ViT-L-14",
        pretrained: str | None = "openai",
        tokens: str = "none",
        **kw,
    ):
        super().__init__(model_name, pretrained, **kw)
        self.tokens = check_option("tokens", tokens, ("none", "hidden", "projected"))

    def params(self):
        return {"model_name": self.model_name, "tokens": self.tokens, "preprocess": "open_clip"}

    @cached_property
    def _vision_cfg(self):
        from open_clip.model import CLIPVisionCfg

        cfg = dict(self._config.get("vision_cfg", {}))
        if self.tokens != "none":
            bad = {
                k: cfg[k]
                for k in ("timm_model_name", "attentional_pool", "final_ln_after_pool")
                if cfg.get(k)
            }
            if cfg.get("pool_type", "tok") != "tok":
                bad["pool_type"] = cfg["pool_type"]
            if bad:
                raise BadInputError(
                    f"tokens={self.tokens!r} needs a plain open_clip ViT with a class token, "
                    f"but {self.model_name} has {bad}; use tokens='none'."
                )
        return CLIPVisionCfg(**cfg)

    def fields(self):
        vc = self._vision_cfg
        embed_dim = int(self._config["embed_dim"])
        size = vc.image_size if isinstance(vc.image_size, (tuple, list)) else (vc.image_size,) * 2
        patch = vc.patch_size if isinstance(vc.patch_size, (tuple, list)) else (vc.patch_size,) * 2
        n_patches = (size[0] // patch[0]) * (size[1] // patch[1])
        out = {"embeds": ((embed_dim,), "float32")}
        if self.tokens == "hidden":
            out["hidden"] = ((n_patches, int(vc.width)), "float32")
        elif self.tokens == "projected":
            out["projected"] = ((1 + n_patches, embed_dim), "float32")
        return out

    def prepare(self, images):
        """Images (n, H, W, 3) -> float tensor (n, 3, H, W) in [0, 1]; loads the model first."""
        self.fields()  # a token mode the model cannot give fails before loading
        self.model  # noqa: B018 - load outside inference mode; fail before batching
        return super().prepare(images)

    def _preprocess(self, x):
        """open_clip's eval transform on a float batch (n, 3, H, W) in [0, 1]."""
        import torch
        import torch.nn.functional as F

        cfg = self.model.visual.preprocess_cfg
        size = cfg["size"]
        th, tw = (size, size) if isinstance(size, int) else tuple(size)
        mode = _TORCH_INTERPOLATION.get(cfg.get("interpolation", "bicubic"), "bicubic")
        resize_mode = cfg.get("resize_mode", "shortest")
        h, w = x.shape[-2:]
        aa = mode != "nearest"

        def resize(t, hw):
            if tuple(hw) == tuple(t.shape[-2:]):
                return t
            kw = {"antialias": aa, "align_corners": False} if aa else {}
            return F.interpolate(t, size=tuple(hw), mode=mode, **kw).clamp(0, 1)

        if resize_mode == "squash":
            x = resize(x, (th, tw))
        elif resize_mode == "longest":
            scale = min(th / h, tw / w)
            x = resize(x, (max(1, round(h * scale)), max(1, round(w * scale))))
            ph, pw = th - x.shape[-2], tw - x.shape[-1]
            fill = cfg.get("fill_color", 0) / 255.0
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=fill)
        else:  # 'shortest', as torchvision Resize(int): the short side becomes the target
            short = min(th, tw) if th != tw else th
            if h <= w:
                x = resize(x, (short, int(short * w / h)))
            else:
                x = resize(x, (int(short * h / w), short))
            top = int(round((x.shape[-2] - th) / 2.0))
            left = int(round((x.shape[-1] - tw) / 2.0))
            x = x[..., top : top + th, left : left + tw]
        mean = torch.tensor(cfg["mean"], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def _forward(self, x):
        fields = self.fields()  # validates the token mode for this model first
        visual = self.model.visual
        x = self._preprocess(x)
        if self.tokens == "none":
            return {"embeds": self.model.encode_image(x)}
        captured = {}
        handle = visual.ln_post.register_forward_hook(
            lambda module, args, output: captured.__setitem__("ln_post", output)
        )
        previous = visual.output_tokens
        visual.output_tokens = True
        try:
            pooled, tokens = visual(x)
        finally:
            visual.output_tokens = previous
            handle.remove()
        out = {"embeds": pooled}
        if self.tokens == "hidden":
            out["hidden"] = tokens
        else:  # every token after ln_post, CLS included, through the visual projection
            out["projected"] = captured["ln_post"] @ visual.proj
        for name, (shape, _) in fields.items():
            if tuple(out[name].shape[1:]) != shape:
                raise RuntimeError(
                    f"{self.model_name}: field {name!r} came out with shape "
                    f"{tuple(out[name].shape[1:])}, expected {shape}"
                )
        return out


class OpenCLIPTextExtractor(_OpenCLIPBase):
    """OpenCLIP caption embeddings (``encode_text``) and optionally final hidden states.

    Parameters
    ----------
    model_name, pretrained : str
        As for :class:`OpenCLIPImageExtractor`.
    tokens : bool
        Add field ``tokens``: the text transformer's hidden states after ``ln_final``,
        shape (context_length, width), padding positions included.
    **kw
        ``batch_size``, ``device``, ``dtype`` of :class:`Extractor`.

    :meth:`transform` takes a list of captions instead of images.
    """

    kind = "open_clip_text"

    def __init__(
        self,
        model_name: str = "ViT-L-14",
        pretrained: str | None = "openai",
        tokens: bool = False,
        **kw,
    ):
        super().__init__(model_name, pretrained, **kw)
        self.tokens = bool(tokens)

    def params(self):
        return {"model_name": self.model_name, "tokens": self.tokens}

    @cached_property
    def _text_cfg(self):
        from open_clip.model import CLIPTextCfg

        return CLIPTextCfg(**self._config.get("text_cfg", {}))

    def fields(self):
        out = {"embeds": ((int(self._config["embed_dim"]),), "float32")}
        if self.tokens:
            tc = self._text_cfg
            out["tokens"] = ((int(tc.context_length), int(tc.width)), "float32")
        return out

    @cached_property
    def tokenizer(self):
        return _import_open_clip().get_tokenizer(self.model_name)

    def prepare(self, texts):
        """Captions (list of str) -> token ids (n, context_length), on CPU."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple, np.ndarray)):
            raise BadTypeError(f"texts must be a list of str, got {type(texts).__name__} instead.")
        texts = list(texts)
        if not texts:
            raise BadInputError("texts must be a non-empty list of captions, got [].")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise BadTypeError(
                f"texts must hold only str; item {bad[0]} is {type(texts[bad[0]]).__name__}."
            )
        self.model  # noqa: B018 - load outside inference mode; fail before batching
        return self.tokenizer(texts)

    def _forward(self, ids):
        model = self.model
        if not self.tokens:
            return {"embeds": model.encode_text(ids)}
        ln_final = model.text.ln_final if hasattr(model, "text") else model.ln_final
        captured = {}
        handle = ln_final.register_forward_hook(
            lambda module, args, output: captured.__setitem__("tokens", output)
        )
        try:
            embeds = model.encode_text(ids)
        finally:
            handle.remove()
        return {"embeds": embeds, "tokens": captured["tokens"]}

    def transform(self, texts, *, progress: bool = False) -> dict[str, np.ndarray]:
        """Features of a list of captions, or of caption sets.

        Parameters
        ----------
        texts : list of str, or list of lists of str
            The captions; longer ones are truncated to the context length. When an
            item is itself a list (e.g. the 5 COCO captions of an NSD image), its
            features are the mean over its captions, as Brain-Diffuser averages the
            CLIP-text features of an image's captions.
        progress : bool
            Show a progress bar over batches.

        Returns
        -------
        features : dict of str to ndarray
            ``embeds`` (n_texts, embed_dim) and, with ``tokens=True``,
            ``tokens`` (n_texts, context_length, width).
        """
        if isinstance(texts, (list, tuple)) and texts and isinstance(texts[0], (list, tuple)):
            sizes = [len(t) for t in texts]
            if min(sizes) == 0:
                raise BadInputError(
                    f"texts: caption set {sizes.index(0)} is empty; every stimulus needs at "
                    "least one caption."
                )
            flat = [c for t in texts for c in t]
            out = super().transform(flat, progress=progress)
            bounds = np.cumsum([0, *sizes])
            return {
                k: np.stack([v[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
                for k, v in out.items()
            }
        return super().transform(texts, progress=progress)  # prepare() tokenises
