"""Monocular depth maps from a transformers depth-estimation model (DPT / MiDaS).

The "multiple decoded inputs" route of Takagi & Nishimoto (2023) also decodes
a depth map from brain activity and feeds it to a depth ControlNet. The target
of that decoder is the depth map a monocular depth model predicts for the
stimulus; by default ``Intel/dpt-hybrid-midas``, the MiDaS model the Stable
Diffusion depth ControlNet was trained with.

MiDaS-style models predict *relative inverse depth* (disparity): near is large.
With ``normalize=True`` each map is min-max scaled to [0, 1] (near = 1, white),
which is what a depth ControlNet takes as its control image.

Preprocessing reproduces the model's transformers image processor (resize with
its interpolation, ``keep_aspect_ratio`` / ``ensure_multiple_of``, rescale,
mean/std normalisation, optional centre padding) with torch ops on the whole
batch, so it runs on the device.

``model="tiny"`` / ``"tiny:<seed>"`` is a random tiny DPT built in code (offline
demos and tests; see :func:`tiny_depth_folder`).
"""

from __future__ import annotations

import math
import os
from functools import cached_property
from pathlib import Path

from ..utils.io import atomic_dir
from ..utils.logging import logger
from ..utils.tiny import is_tiny, parse_tiny, tiny_cache_dir
from ..utils.validation import BadInputError, BadTypeError, check_positive_int
from .extractors import Extractor, _sha256

__all__ = ["DEFAULT_DEPTH_MODEL", "DepthExtractor", "tiny_depth_folder"]

#: the MiDaS model used to make the control images of ``lllyasviel/sd-controlnet-depth``
DEFAULT_DEPTH_MODEL = "Intel/dpt-hybrid-midas"

#: bump when the tiny depth config changes, so stale cached folders are not reused
TINY_DEPTH_VERSION = 1

#: input size of the tiny DPT (patch 16: its prediction has the input's size, as DPT's)
TINY_DEPTH_SIZE = 64

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
_CONFIG_FILES = ("config.json", "preprocessor_config.json")
# PIL resampling codes (and torchvision InterpolationMode values) -> F.interpolate modes
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_RESAMPLE_NAMES = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}


def _import_transformers():
    try:
        import transformers
    except ImportError:
        raise BadInputError(
            "The depth extractor needs transformers: `pip install transformers`."
        ) from None
    return transformers


def tiny_depth_folder(seed: int = 0) -> Path:
    """A saved random tiny DPT depth model and its image processor (built once, cached).

    A 4-layer ViT (width 32, 16-px patches) on 64-px inputs with a DPT neck and
    depth head, initialised with ``torch.manual_seed(seed)`` and a wider weight
    init (0.1) than DPT's default, so the random depth maps are not all ~0.
    The image processor resizes (bicubic) to 64×64 and normalises with mean = std
    = 0.5, as ``Intel/dpt-hybrid-midas`` does at 384 px.
    """
    folder = tiny_cache_dir() / f"dpt-depth-s{seed}-v{TINY_DEPTH_VERSION}"
    if all((folder / name).is_file() for name in (*_CONFIG_FILES, "model.safetensors")):
        return folder
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=TINY_DEPTH_SIZE,
        patch_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        use_auxiliary_head=False,
        initializer_range=0.1,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DPTForDepthEstimation(config).eval()
    processor = DPTImageProcessor(
        size={"height": TINY_DEPTH_SIZE, "width": TINY_DEPTH_SIZE},
        resample=3,  # PIL bicubic
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return folder


def _constrain_to_multiple_of(val: float, multiple: int) -> int:
    # transformers.models.dpt.image_processing_dpt.get_resize_output_image_size
    x = round(val / multiple) * multiple
    if x < 0:
        x = math.ceil(val / multiple) * multiple
    return int(x)


def dpt_resize_size(
    height: int, width: int, target: tuple[int, int], keep_aspect_ratio: bool, multiple: int
) -> tuple[int, int]:
    """Output size of the DPT image processor's resize for an input of ``height``×``width``."""
    scale_h, scale_w = target[0] / height, target[1] / width
    if keep_aspect_ratio:  # scale as little as possible
        if abs(1 - scale_w) < abs(1 - scale_h):
            scale_h = scale_w
        else:
            scale_w = scale_h
    return (
        _constrain_to_multiple_of(scale_h * height, multiple),
        _constrain_to_multiple_of(scale_w * width, multiple),
    )


class DepthExtractor(Extractor):
    """Predicted depth maps of a transformers depth-estimation model.

    Parameters
    ----------
    model : str
        A Hugging Face model id (default ``'Intel/dpt-hybrid-midas'``; downloaded once
        into the Hugging Face cache), a local folder written by ``save_pretrained``
        (model and image processor), or ``'tiny'`` / ``'tiny:<seed>'`` for a random
        tiny DPT (offline demos and tests; the depth maps mean nothing).
    size : int
        The predicted depth is resized (bicubic, antialiased) to ``size``×``size``.
    normalize : bool
        Min-max scale each map to [0, 1] (a constant map becomes 0), as a depth
        ControlNet wants; False keeps the model's raw output (MiDaS: relative
        inverse depth, arbitrary scale and shift).
    **kw
        ``batch_size``, ``device``, ``dtype`` of :class:`Extractor`.

    Notes
    -----
    Field ``depth`` has shape (size, size), float32. The model's image processor
    must be DPT-like (``DPTImageProcessor``: DPT, MiDaS, Depth Anything), whose
    resize / rescale / normalise / pad steps are reproduced in torch.
    """

    kind = "depth"

    def __init__(
        self,
        model: str = DEFAULT_DEPTH_MODEL,
        size: int = 64,
        normalize: bool = True,
        **kw,
    ):
        super().__init__(**kw)
        if not isinstance(model, (str, os.PathLike)):
            raise BadTypeError(
                "model must be a Hugging Face model id, a local folder or 'tiny', "
                f"got {type(model).__name__} instead."
            )
        self.model = str(model)
        if is_tiny(self.model):
            parse_tiny(self.model)  # a bad seed fails here, not at first use
        self.size = check_positive_int("size", size, minimum=4)
        self.normalize = bool(normalize)

    # -- where the weights are ------------------------------------------------------------------
    @cached_property
    def _local_dir(self) -> Path | None:
        """The folder the weights load from, or None for a Hub id."""
        if is_tiny(self.model):
            return tiny_depth_folder(parse_tiny(self.model))
        path = Path(self.model).expanduser()
        if path.is_dir():
            return path
        if self.model.startswith(("/", ".", "~")) or self.model.count("/") > 1:
            raise BadInputError(f"model: local depth model folder {self.model!r} does not exist.")
        return None

    def _missing(self, what: str, err: Exception) -> BadInputError:
        if self._local_dir is not None:
            return BadInputError(
                f"Could not load the depth {what} from the local folder "
                f"{str(self._local_dir)!r} (it needs config.json, preprocessor_config.json and "
                f"the weights, as save_pretrained writes them): {err}"
            )
        return BadInputError(
            f"The depth model {self.model!r} is not available offline (not in the Hugging Face "
            f"cache and no network). Download it once with network: "
            f"`huggingface-cli download {self.model}` (it goes to the Hugging Face cache, "
            "honour HF_HOME), or pass a local folder written by save_pretrained as model=. "
            f"Original error: {err}"
        )

    @property
    def _source(self) -> str:
        return str(self._local_dir) if self._local_dir is not None else self.model

    @cached_property
    def image_processor(self):
        """The model's transformers image processor (its settings drive :meth:`preprocess`)."""
        transformers = _import_transformers()
        try:
            return transformers.AutoImageProcessor.from_pretrained(self._source)
        except (OSError, ValueError) as err:
            raise self._missing("image processor", err) from err

    @cached_property
    def depth_model(self):
        """The loaded ``AutoModelForDepthEstimation``, in eval mode, on the device."""
        from ..utils.devices import resolve_device

        transformers = _import_transformers()
        try:
            model = transformers.AutoModelForDepthEstimation.from_pretrained(self._source)
        except (OSError, ValueError) as err:
            raise self._missing("model", err) from err
        if is_tiny(self.model):
            logger.info("depth model %s: random tiny DPT (the depth maps mean nothing)", self.model)
        return model.eval().to(resolve_device(self.device))

    @cached_property
    def preprocess_config(self) -> dict:
        """The image processor's settings, as plain values for :meth:`preprocess`."""
        p = self.image_processor
        name = type(p).__name__
        if not name.startswith("DPTImageProcessor"):
            raise BadInputError(
                f"model {self.model!r}: image processor {name} is not supported; the depth "
                "extractor reproduces DPTImageProcessor (DPT, MiDaS, Depth Anything models)."
            )
        size = p.size
        height = getattr(size, "height", None) or (size.get("height") if size else None)
        width = getattr(size, "width", None) or (size.get("width") if size else None)
        do_resize = bool(getattr(p, "do_resize", True))
        if do_resize and not (height and width):
            raise BadInputError(
                f"model {self.model!r}: image processor size {dict(size or {})} has no "
                "height and width."
            )
        resample = getattr(p, "resample", 3)
        resample = getattr(resample, "value", resample)
        mode = (
            _RESAMPLE_NAMES.get(resample)
            if isinstance(resample, str)
            else _RESAMPLE.get(int(resample) if resample is not None else 3)
        )
        if mode is None:
            raise BadInputError(
                f"model {self.model!r}: image processor resample {resample!r} is not supported "
                "(nearest, bilinear or bicubic)."
            )
        if getattr(p, "do_center_crop", None):
            raise BadInputError(
                f"model {self.model!r}: image processors that centre-crop are not supported."
            )
        do_rescale = bool(getattr(p, "do_rescale", True))
        do_normalize = bool(getattr(p, "do_normalize", True))
        return {
            "do_resize": do_resize,
            "size": (int(height), int(width)) if do_resize else None,
            "mode": mode,
            "keep_aspect_ratio": bool(getattr(p, "keep_aspect_ratio", False)),
            "ensure_multiple_of": int(getattr(p, "ensure_multiple_of", None) or 1),
            # images come in as [0, 1]: the processor's uint8 * rescale_factor
            "scale": 255.0 * float(p.rescale_factor) if do_rescale else 255.0,
            "mean": [float(m) for m in p.image_mean] if do_normalize else None,
            "std": [float(s) for s in p.image_std] if do_normalize else None,
            "pad_to": int(p.size_divisor)
            if getattr(p, "do_pad", False) and getattr(p, "size_divisor", None)
            else None,
        }

    # -- extractor contract -----------------------------------------------------------------
    def params(self):
        return {
            "size": self.size,
            "normalize": self.normalize,
            "resize": "bicubic-antialias",
            "preprocess": "dpt-image-processor-torch",
        }

    def weights_id(self):
        transformers = _import_transformers()
        out = {"weights": self.model}
        folder = self._local_dir
        if folder is not None:
            files = sorted(
                p
                for p in folder.iterdir()
                if p.is_file() and (p.name.endswith(_WEIGHT_SUFFIXES) or p.name in _CONFIG_FILES)
            )
            if not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in files):
                raise BadInputError(f"model: no weight file in {str(folder)!r}.")
            if not is_tiny(self.model):
                out["weights"] = f"local/{folder.name}"
            out["weights_sha256"] = {p.name: _sha256(p) for p in files}
        return {**out, "transformers": transformers.__version__}

    def fields(self):
        return {"depth": ((self.size, self.size), "float32")}

    def prepare(self, images):
        """Images (n, H, W, 3) -> float tensor (n, 3, H, W) in [0, 1]; loads the model first."""
        self.preprocess_config  # noqa: B018 - fail on an unsupported processor before batching
        self.depth_model  # noqa: B018 - load outside inference mode
        return super().prepare(images)

    def preprocess(self, x):
        """The image processor's transform on a float batch (n, 3, H, W) in [0, 1].

        Returns the ``pixel_values`` the model takes (the processor's output up to
        uint8 rounding and resampling details).
        """
        import torch
        import torch.nn.functional as F

        cfg = self.preprocess_config
        if cfg["do_resize"]:
            h, w = x.shape[-2:]
            out_hw = dpt_resize_size(
                h, w, cfg["size"], cfg["keep_aspect_ratio"], cfg["ensure_multiple_of"]
            )
            if tuple(out_hw) != (h, w):
                if cfg["mode"] == "nearest":
                    x = F.interpolate(x, size=out_hw, mode="nearest")
                else:
                    x = F.interpolate(
                        x, size=out_hw, mode=cfg["mode"], align_corners=False, antialias=True
                    )
                x = x.clamp(0, 1)  # the processor resizes uint8 images: no overshoot
        x = x * cfg["scale"]
        if cfg["mean"] is not None:
            mean = torch.tensor(cfg["mean"], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(cfg["std"], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        if cfg["pad_to"]:
            d = cfg["pad_to"]
            ph = math.ceil(x.shape[-2] / d) * d - x.shape[-2]
            pw = math.ceil(x.shape[-1] / d) * d - x.shape[-1]
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return x

    def postprocess(self, predicted_depth):
        """Model output (n, h, w) -> (n, size, size): bicubic antialiased resize, then scaling."""
        import torch
        import torch.nn.functional as F

        d = predicted_depth.float()
        if d.ndim == 4:  # (n, 1, h, w)
            d = d[:, 0]
        d = F.interpolate(
            d[:, None],
            size=(self.size, self.size),
            mode="bicubic",
            align_corners=False,
            antialias=True,
        )[:, 0]
        if self.normalize:
            lo = d.amin(dim=(1, 2), keepdim=True)
            span = d.amax(dim=(1, 2), keepdim=True) - lo
            d = ((d - lo) / span.clamp_min(torch.finfo(d.dtype).tiny)).clamp(0, 1)
        return d

    def _forward(self, x):
        model = self.depth_model
        pixel_values = self.preprocess(x).to(model.dtype)
        return {"depth": self.postprocess(model(pixel_values=pixel_values).predicted_depth)}
