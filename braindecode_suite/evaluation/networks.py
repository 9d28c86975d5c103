"""The reconstruction papers' evaluation networks as batched feature functions.

Each :class:`FeatureNetwork` maps images ``(n, H, W, 3)`` (uint8, or float in [0, 1]) to
features ``(n, d)`` float32, with the preprocessing a protocol prescribes (resize, optional
centre crop, normalisation) done in torch on whole batches, under ``torch.inference_mode``.

Networks (:data:`NETWORKS`) and where their weights come from:

========================  ================================================================
``alexnet``               torchvision ``AlexNet_Weights.IMAGENET1K_V1``
``inception_v3``          torchvision ``Inception_V3_Weights.IMAGENET1K_V1``
                          (``transform_input=True``, as torchvision sets it with weights)
``efficientnet_b1``       torchvision ``EfficientNet_B1_Weights`` ``IMAGENET1K_V2`` (MindEye:
                          ``DEFAULT``) or ``IMAGENET1K_V1`` (brain-diffuser's
                          ``weights=True`` resolves to V1)
``swav_resnet50``         ``torch.hub.load('facebookresearch/swav:main', 'resnet50')``
``clip_vit_l14``          OpenAI CLIP ViT-L/14 through open_clip (``ViT-L-14-quickgelu``,
                          ``'openai'``) and :class:`~braindecode_suite.features.clip.
                          OpenCLIPImageExtractor`; the image embedding (``encode_image``)
========================  ================================================================

Weights are read from local caches only: torchvision and torch-hub checkpoints from
``torch.hub.get_dir()`` (``$TORCH_HOME/hub``), CLIP from the Hugging Face cache. When they are
absent a :class:`MissingWeights` error names the network and the one command that downloads
them; nothing is downloaded and random weights are never substituted. ``weights=None`` builds
an explicitly random network (for tests), and its description says so.

Note on CLIP: open_clip's ``'ViT-L-14'`` config uses GELU, while the OpenAI weights were
trained with QuickGELU (open_clip only warns about the mismatch), so the OpenAI model that the
papers used (``clip.load('ViT-L/14')``) is open_clip's ``'ViT-L-14-quickgelu'``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..features.extractors import IMAGENET_MEAN, IMAGENET_STD
from ..utils.devices import resolve_device
from ..utils.logging import logger
from ..utils.validation import BadInputError, check_option, check_positive_int

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "NETWORKS",
    "FeatureNetwork",
    "MissingWeights",
    "Preprocess",
    "load_network",
    "resize_tensor",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: torchvision builder, weights enum and default weights tag of the torchvision networks.
_TORCHVISION = {
    "alexnet": ("alexnet", "AlexNet_Weights", "IMAGENET1K_V1"),
    "inception_v3": ("inception_v3", "Inception_V3_Weights", "IMAGENET1K_V1"),
    "efficientnet_b1": ("efficientnet_b1", "EfficientNet_B1_Weights", "IMAGENET1K_V2"),
}
_SWAV_REPO = "facebookresearch_swav_main"
_SWAV_CHECKPOINT = "swav_800ep_pretrain.pth.tar"
_CLIP_MODEL = "ViT-L-14-quickgelu"

NETWORKS = ("alexnet", "inception_v3", "efficientnet_b1", "swav_resnet50", "clip_vit_l14")

#: Layers extracted when none are named.
_DEFAULT_LAYERS = {
    "alexnet": ("features.4", "features.11"),
    "inception_v3": ("avgpool",),
    "efficientnet_b1": ("avgpool",),
    "swav_resnet50": ("avgpool",),
    "clip_vit_l14": ("output",),
}


class MissingWeights(BadInputError):
    """A network's pretrained weights are not in the local cache (nothing is downloaded)."""


# ----------------------------------------------------------------------------- preprocessing


def _pil_passes(x, out_hw, interpolation: str):
    """PIL's resize of a uint8 image: horizontal then vertical pass, each rounded to 8 bits."""
    import torch
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    x = torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0
    for size in ((h, out_hw[1]), tuple(out_hw)):
        if tuple(size) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=size, mode=interpolation, align_corners=False, antialias=True)
            x = torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0
    return x


def resize_tensor(
    x,
    size: int,
    *,
    mode: str = "squash",
    interpolation: str = "bilinear",
    antialias: bool = True,
    pil: bool = False,
):
    """Resize a float batch ``(n, 3, H, W)`` as torchvision's transforms or PIL do.

    Parameters
    ----------
    x : torch.Tensor of shape (n, 3, H, W)
        Values in [0, 1].
    size : int
        Target size.
    mode : 'squash' | 'shorter' | 'shorter_crop'
        ``'squash'``: to ``size x size`` (``Resize((size, size))``, PIL ``.resize((s, s))``);
        ``'shorter'``: shorter side to ``size``, aspect kept (``Resize(size)``);
        ``'shorter_crop'``: then a centre crop ``size x size`` (``Resize(size)`` +
        ``CenterCrop(size)``).
    interpolation : 'bilinear' | 'bicubic'
    antialias : bool
        ``torch.nn.functional.interpolate(..., antialias=)`` for tensors. torchvision < 0.17
        (MindEye1/2 pinned 0.15.2 / 0.16.0) resized tensors without antialiasing.
    pil : bool
        Emulate PIL resizing a uint8 image (what ``Image.resize`` and torchvision transforms
        on PIL images do): antialiased, a horizontal then a vertical pass, each rounded to
        8 bits. This matches Pillow to within one grey level on a few pixels in a thousand;
        without the 8-bit intermediate, bicubic overshoot on sharp edges can differ by 20
        levels. ``antialias`` is ignored (PIL always antialiases).

    Returns
    -------
    torch.Tensor
        The input unchanged where the size already matches (as torchvision), except that
        ``pil=True`` rounds it to 8 bits.
    """
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    if mode == "squash":
        out_hw = (size, size)
    else:  # torchvision's _compute_resized_output_size for an int size
        if h <= w:
            out_hw = (size, int(size * w / h))
        else:
            out_hw = (int(size * h / w), size)
    if pil:
        x = _pil_passes(x, out_hw, interpolation)
    elif tuple(out_hw) != (h, w):
        x = F.interpolate(
            x, size=out_hw, mode=interpolation, align_corners=False, antialias=antialias
        )
    if mode == "shorter_crop":
        hh, ww = x.shape[-2:]
        top = int(round((hh - size) / 2.0))
        left = int(round((ww - size) / 2.0))
        x = x[..., top : top + size, left : left + size]
    return x


@dataclass(frozen=True)
class Preprocess:
    """A protocol's input transform for one network.

    Parameters
    ----------
    size : int
        Input size in pixels.
    resize : 'squash' | 'shorter' | 'shorter_crop'
        See :func:`resize_tensor`.
    interpolation : 'bilinear' | 'bicubic'
    antialias : bool
        Antialiased tensor resizing (torchvision >= 0.17) or not (torchvision < 0.17).
    pil : bool
        Resize as PIL does a uint8 image before ``ToTensor`` (see :func:`resize_tensor`).
    mean, std : tuple of 3 floats
        Normalisation (ImageNet, or :data:`CLIP_MEAN` / :data:`CLIP_STD`).
    """

    size: int
    resize: str = "squash"
    interpolation: str = "bilinear"
    antialias: bool = True
    pil: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        check_positive_int("size", self.size)
        check_option("resize", self.resize, ("squash", "shorter", "shorter_crop"))
        check_option("interpolation", self.interpolation, ("bilinear", "bicubic"))

    def __call__(self, x):
        """Float batch ``(n, 3, H, W)`` in [0, 1] -> the normalised network input."""
        import torch

        x = resize_tensor(
            x,
            self.size,
            mode=self.resize,
            interpolation=self.interpolation,
            antialias=self.antialias,
            pil=self.pil,
        )
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def describe(self) -> dict:
        return asdict(self)


def _check_images(images) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise BadInputError(
            f"images must have shape (n_images, height, width, 3), got {arr.shape} instead."
        )
    if arr.shape[0] == 0:
        raise BadInputError("images is empty (0 images).")
    if arr.dtype != np.uint8:
        if arr.dtype.kind != "f":
            raise BadInputError(
                f"images must be uint8 (0..255) or float in [0, 1], got dtype {arr.dtype}."
            )
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if not np.isfinite(arr).all() or lo < 0.0 or hi > 1.0:
            raise BadInputError(
                f"images holds floats outside [0, 1] (min {lo:.4g}, max {hi:.4g}) or non-finite "
                f"values; pass uint8 0..255 or floats scaled to [0, 1]."
            )
    return arr


def _to_tensor(chunk: np.ndarray, device):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(chunk))
    t = t.to(device)
    t = t.float() / 255.0 if chunk.dtype == np.uint8 else t.float()
    return t.permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- the network


class _StopForward(Exception):
    """Raised by the last hook: the layers after it are not needed."""


class FeatureNetwork:
    """A frozen torch network with forward hooks on named layers and its preprocessing.

    Build it with :func:`load_network`. :meth:`extract` returns every hooked layer;
    calling the object returns the features of its single layer.

    Parameters
    ----------
    name : str
        Network name (for messages and records).
    model : torch.nn.Module
    layers : sequence of str
        Module names (``dict(model.named_modules())``) whose outputs are taken, or
        ``'output'`` for the return value of ``forward``.
    preprocess : Preprocess
    weights : str
        Description of the weights (recorded in results).
    forward : callable | None
        What to call on the preprocessed batch (default: ``model``).
    batch_size : int
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'``, ...
    """

    def __init__(
        self,
        name: str,
        model,
        layers: Sequence[str],
        preprocess: Preprocess,
        *,
        weights: str,
        forward=None,
        batch_size: int = 32,
        device: str = "auto",
    ):
        self.name = name
        self.layers = tuple(layers)
        if not self.layers:
            raise BadInputError(f"{name}: layers is empty; name at least one layer.")
        if not isinstance(preprocess, Preprocess):
            raise BadInputError(
                f"preprocess must be a Preprocess, got {type(preprocess).__name__} instead."
            )
        self.preprocess = preprocess
        self.weights = weights
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self._forward = forward if forward is not None else self.model
        modules = dict(self.model.named_modules())
        for layer in self.layers:
            if layer != "output" and layer not in modules:
                close = difflib.get_close_matches(layer, list(modules), n=3)
                hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                raise BadInputError(
                    f"{name} has no layer {layer!r} (a name from model.named_modules(), or "
                    f"'output').{hint}"
                )
        self._hooked = [layer for layer in self.layers if layer != "output"]
        self._modules = {layer: modules[layer] for layer in self._hooked}
        self._captured: dict = {}

    def _hook(self, layer: str):
        def hook(module, args, output):
            self._captured[layer] = output.detach().flatten(1).float().clone()
            if "output" not in self.layers and len(self._captured) == len(self._hooked):
                raise _StopForward

        return hook

    def _run(self, x) -> dict:
        """Hooks live only for this forward pass: the model stays usable on its own."""
        self._captured = {}
        out = None
        handles = [m.register_forward_hook(self._hook(n)) for n, m in self._modules.items()]
        try:
            out = self._forward(self.preprocess(x))
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        feats = dict(self._captured)
        if "output" in self.layers:
            feats["output"] = out.detach().flatten(1).float()
        self._captured = {}
        return feats

    def extract(self, images) -> dict[str, np.ndarray]:
        """Features of every hooked layer.

        Parameters
        ----------
        images : ndarray of shape (n_images, height, width, 3)
            uint8, or float in [0, 1].

        Returns
        -------
        features : dict of str to ndarray of shape (n_images, n_features), float32
        """
        import torch

        arr = _check_images(images)
        parts: dict[str, list] = {layer: [] for layer in self.layers}
        with torch.inference_mode():
            for start in range(0, len(arr), self.batch_size):
                x = _to_tensor(arr[start : start + self.batch_size], self.device)
                for layer, value in self._run(x).items():
                    parts[layer].append(value.cpu().numpy().astype(np.float32, copy=False))
        return {layer: np.concatenate(v) for layer, v in parts.items()}

    def __call__(self, images) -> np.ndarray:
        """Features ``(n_images, n_features)`` of the network's single layer."""
        if len(self.layers) != 1:
            raise BadInputError(
                f"{self.name} extracts {len(self.layers)} layers {self.layers}; call "
                f".extract(images) for all of them or build it with one layer."
            )
        return self.extract(images)[self.layers[0]]

    def info(self) -> dict:
        """What produced the features: network, layers, weights and preprocessing."""
        return {
            "network": self.name,
            "layers": list(self.layers),
            "weights": self.weights,
            "preprocess": self.preprocess.describe(),
        }

    def __repr__(self) -> str:
        return (
            f"FeatureNetwork({self.name!r}, layers={self.layers}, size={self.preprocess.size}, "
            f"weights={self.weights!r})"
        )


# ----------------------------------------------------------------------------- loading


def _hub_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir())


def _download_hint() -> str:
    return (
        f"(they go to {_hub_dir()}; set TORCH_HOME to use another cache, or copy the file "
        "there from a machine that has it)"
    )


def _random_model(build, seed: int):
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def _load_state_dict_file(name: str, path: Path):
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise BadInputError(
            f"{name}: could not read the weights file {str(path)!r}: {err}"
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInputError(
            f"{name}: {str(path)!r} does not hold a state dict (got {type(state).__name__})."
        )
    return state


def _weights_path(name: str, weights) -> Path | None:
    """None for 'default', the file for a path; errors for anything else."""
    if isinstance(weights, str) and weights == "default":
        return None
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BadInputError(
                f"{name}: weights={str(weights)!r} is neither 'default' nor an existing file. "
                "Pass 'default' (the protocol's weights from the local cache), the path of a "
                "state-dict file, or None for a random network (tests only)."
            )
        return path
    raise BadInputError(
        f"{name}: weights must be 'default', a file path or None, got "
        f"{type(weights).__name__} {weights!r} instead."
    )


def _torchvision_model(name: str, weights, weights_tag: str | None, seed: int):
    import torchvision.models as tvm

    builder_name, enum_name, default_tag = _TORCHVISION[name]
    builder = getattr(tvm, builder_name)
    enum = getattr(tvm, enum_name)
    tag = weights_tag or default_tag
    check_option(f"weights_tag ({enum_name})", tag, [w.name for w in enum])
    kw = {}
    if name == "inception_v3":
        # torchvision sets transform_input=True with pretrained weights; the papers' networks
        # (pretrained=True / weights=DEFAULT) therefore had it: keep it for every variant.
        kw = {"transform_input": True, "init_weights": False}
    if weights is None:
        model = _random_model(
            lambda: builder(weights=None, **({**kw, "aux_logits": False} if kw else kw)), seed
        )
        return model, f"random weights (torch seed {seed}), NOT the published network"
    path = _weights_path(name, weights)
    if path is not None:
        if name == "inception_v3":
            kw["aux_logits"] = True
        model = builder(weights=None, **kw)
        try:
            model.load_state_dict(_load_state_dict_file(name, path))
        except RuntimeError as err:
            raise BadInputError(
                f"{name}: {str(path)!r} does not fit torchvision's {builder_name}: {err}"
            ) from err
        return model, f"file {path} ({path.stat().st_size} bytes)"
    member = enum[tag]
    cache = _hub_dir() / "checkpoints" / os.path.basename(member.url)
    if not cache.is_file():
        raise MissingWeights(
            f"{name}: the torchvision weights {enum_name}.{tag} are not in the torch hub cache "
            f"({cache} does not exist) and nothing is downloaded here. Download them once on a "
            f'machine with network: `python -c "import torchvision; torchvision.models.'
            f"{builder_name}(weights='{tag}')\"` {_download_hint()}, or pass the path of a "
            f"state-dict file as weights."
        )
    model = builder(weights=member, **kw)  # reads the cached file; never downloads here
    return model, f"torchvision {enum_name}.{tag} ({cache.name})"


def _swav_model(weights, seed: int):
    import torch

    name = "swav_resnet50"
    if weights is None:
        from torchvision.models import resnet50

        model = _random_model(lambda: resnet50(weights=None), seed)
        return model, f"random weights (torch seed {seed}), NOT the published network"
    path = _weights_path(name, weights)
    if path is not None:
        from torchvision.models import resnet50

        model = resnet50(weights=None)
        state = _load_state_dict_file(name, path)
        # as the SwAV hubconf: strip "module." and load non-strictly (fc is not pretrained)
        state = {k.replace("module.", ""): v for k, v in state.items()}
        missing, _ = model.load_state_dict(state, strict=False)
        if any(not k.startswith("fc.") for k in missing):
            raise BadInputError(
                f"{name}: {str(path)!r} lacks ResNet-50 weights, e.g. {missing[0]!r}; pass "
                f"SwAV's {_SWAV_CHECKPOINT}."
            )
        return model, f"file {path} ({path.stat().st_size} bytes)"
    repo = _hub_dir() / _SWAV_REPO
    checkpoint = _hub_dir() / "checkpoints" / _SWAV_CHECKPOINT
    absent = [str(p) for p in (repo, checkpoint) if not p.exists()]
    if absent:
        raise MissingWeights(
            f"{name}: the SwAV ResNet-50 is not in the torch hub cache ({' and '.join(absent)} "
            f"missing) and nothing is downloaded here. Fetch it once on a machine with network: "
            f"`python -c \"import torch; torch.hub.load('facebookresearch/swav:main', "
            f"'resnet50')\"` {_download_hint()}, or pass the path of {_SWAV_CHECKPOINT} as "
            f"weights."
        )
    # the hub code path of the papers, from the cached repository (never the network)
    model = torch.hub.load(str(repo), "resnet50", source="local", pretrained=True)
    return model, f"torch.hub facebookresearch/swav:main resnet50 ({checkpoint.name})"


def _check_clip_cache(model_name: str) -> None:
    """MissingWeights unless open_clip's 'openai' weights are in the Hugging Face cache.

    open_clip would otherwise try the network (with retries) before failing.
    """
    import open_clip
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name, "openai") or {}
    hub = cfg.get("hf_hub", "")
    if not hub:
        return  # not a Hugging Face hosted tag: leave it to open_clip
    repo_id, filename = os.path.split(hub)
    names = (
        [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    )
    for fname in names:
        if isinstance(try_to_load_from_cache(repo_id, fname), str):
            return
    raise MissingWeights(
        f"clip_vit_l14: the OpenAI CLIP weights ({model_name}, 'openai', Hugging Face repo "
        f"{repo_id}) are not in the Hugging Face cache and nothing is downloaded here. "
        f'Download them once on a machine with network: `python -c "import open_clip; '
        f"open_clip.create_model_and_transforms('{model_name}', pretrained='openai')\"` (they "
        f"go to the Hugging Face cache; HF_HOME moves it), or pass the path of an open_clip "
        f"checkpoint as weights. (open_clip {open_clip.__version__})"
    )


def _clip_model(weights, model_name: str | None, device: str):
    from ..features.clip import OpenCLIPImageExtractor

    name = "clip_vit_l14"
    model_name = model_name or _CLIP_MODEL
    if weights is None:
        pretrained = None
    else:
        path = _weights_path(name, weights)
        pretrained = "openai" if path is None else str(path)
    if pretrained == "openai" and model_name != "tiny":
        _check_clip_cache(model_name)
    extractor = OpenCLIPImageExtractor(model_name, pretrained=pretrained, device=device)
    try:
        model = extractor.model
    except BadInputError as err:
        if pretrained == "openai":
            raise MissingWeights(f"{name}: {err}") from err
        raise
    desc = f"open_clip {extractor.weights_id()['weights']}"
    if extractor.pretrained is None:
        desc += " (random weights, seed 0), NOT the published network"
    return model.visual, desc


def load_network(
    name: str,
    layers: Sequence[str] | str | None = None,
    *,
    preprocess: Preprocess | None = None,
    weights="default",
    weights_tag: str | None = None,
    model_name: str | None = None,
    device: str = "auto",
    batch_size: int = 32,
    seed: int = 0,
) -> FeatureNetwork:
    """Build one evaluation network with hooks on ``layers``.

    Parameters
    ----------
    name : str
        One of :data:`NETWORKS`.
    layers : str | sequence of str | None
        Module names to take (``'features.4'``, ``'avgpool'``, ...) or ``'output'``; default
        AlexNet ``('features.4', 'features.11')``, CLIP ``('output',)`` (the image
        embedding), ``('avgpool',)`` otherwise.
    preprocess : Preprocess | None
        Input transform; default: squash to 224 px (CLIP: the model's input size), bilinear,
        antialiased, ImageNet (CLIP's) normalisation.
    weights : 'default' | path | None
        ``'default'``: the pretrained weights from the local cache (:class:`MissingWeights`
        when absent); a path: a state-dict file (an open_clip checkpoint for CLIP); None: a
        random network, for tests only (recorded as such).
    weights_tag : str | None
        torchvision weights member, e.g. ``'IMAGENET1K_V1'`` for EfficientNet-B1 as
        brain-diffuser (default: ``IMAGENET1K_V1``, EfficientNet-B1 ``IMAGENET1K_V2``).
    model_name : str | None
        CLIP only: the open_clip model (default ``'ViT-L-14-quickgelu'``; ``'tiny'`` for a
        tiny random ViT in tests).
    device : str
    batch_size : int
    seed : int
        Torch seed of random networks.

    Returns
    -------
    FeatureNetwork
    """
    check_option("name", name, NETWORKS)
    if layers is None:
        layers = _DEFAULT_LAYERS[name]
    elif isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if model_name is not None and name != "clip_vit_l14":
        raise BadInputError(f"model_name applies to clip_vit_l14 only, not to {name}.")
    if weights_tag is not None and name not in _TORCHVISION:
        raise BadInputError(
            f"weights_tag applies to the torchvision networks {tuple(_TORCHVISION)}, not {name}."
        )
    resolve_device(device)  # fail on a bad device before loading anything
    if name in _TORCHVISION:
        model, desc = _torchvision_model(name, weights, weights_tag, seed)
    elif name == "swav_resnet50":
        model, desc = _swav_model(weights, seed)
    else:
        model, desc = _clip_model(weights, model_name, device)
    if name == "clip_vit_l14":
        image_size = model.image_size
        image_size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
        if preprocess is None:
            preprocess = Preprocess(image_size, mean=CLIP_MEAN, std=CLIP_STD)
        elif preprocess.size != image_size:
            raise BadInputError(
                f"clip_vit_l14 ({desc}) takes {image_size} px inputs, but preprocess.size is "
                f"{preprocess.size}."
            )
    elif preprocess is None:
        preprocess = Preprocess(224)
    if weights is None:
        logger.warning("%s: random weights (weights=None); its scores mean nothing.", name)
    return FeatureNetwork(
        name, model, layers, preprocess, weights=desc, batch_size=batch_size, device=device
    )
