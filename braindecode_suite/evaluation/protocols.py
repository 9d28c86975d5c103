"""The reconstruction papers' evaluation protocols, each exactly as its code runs it.

``evaluate_protocol(recon, gt, protocol=...)`` computes the table of brain-diffuser, MindEye1,
MindEye2 or Takagi & Nishimoto: PixCorr, SSIM, AlexNet(2), AlexNet(5), Inception, CLIP
(two-way identification) and EfficientNet-B1, SwAV (correlation distance), each with a
bootstrap interval. :data:`PROTOCOLS` holds the settings, read from the papers' evaluation code:

- **brain-diffuser** (``scripts/evaluate_reconstruction.py``, ``eval_extract_features.py``;
  environment: torchvision 0.13.1, scikit-image 0.17.2, Pillow 9.2): the reconstruction is
  resized to 425 px with PIL's default filter (bicubic, antialiased, uint8), the 425 px
  stimulus is used as is; SSIM with ``multichannel=True`` on grey images, which scikit-image
  0.17 computes per pixel column (:func:`~.metrics.compute_ssim_columns`); every network sees
  PIL-bilinear 224 x 224 inputs; EfficientNet-B1 ``weights=True``, i.e. ``IMAGENET1K_V1``.
- **mindeye** / **mindeye2** (``src/Reconstruction_Metrics.py`` of fMRI-reconstruction-NSD,
  ``src/final_evaluations.ipynb`` of MindEyeV2; torchvision 0.15.2 / 0.16.0, scikit-image
  0.20 / 0.22): both images first ``Resize((256, 256))``, then ``Resize(425)`` (bilinear) for
  PixCorr/SSIM; tensor resizes without antialiasing (the default before torchvision 0.17);
  SSIM on the 2-D grey image (``multichannel`` no longer exists in scikit-image >= 0.20 and is
  swallowed by ``**kwargs``); networks on the 256 px images resized to AlexNet 256, Inception
  342, CLIP 224, EfficientNet-B1 255 (``DEFAULT`` = ``IMAGENET1K_V2``), SwAV 224.
  MindEye2's "enhanced" table blends ``0.75 * recon + 0.25 * blurry`` first (``blurry=``).
- **takagi** (``codes/utils/img2feat_decoded.py``, ``identification.py``): Resize(299) +
  CenterCrop(299) (PIL) for AlexNet (``features.5``, ``features.12``, ``classifier.5``) and
  Inception; CLIP through Hugging Face's CLIPProcessor (bicubic 224 + centre crop); the
  two-way test fixes the ground truth and averages the correlations over the generated
  samples (pass ``recon`` of shape (n, n_samples, H, W, 3)). No low-level metrics.

Two-way identification: ``R[i, j] = corr(gt_i, recon_j)``; ``'mindeye'`` scores
reconstruction ``j`` by the fraction of ``i != j`` with ``R[i, j] < R[j, j]``, ``'takagi'``
scores ground truth ``i`` by the fraction of ``j != i`` with ``R[i, j] < R[i, i]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..utils.logging import logger
from ..utils.validation import BadInputError, check_option, check_positive_int
from .metrics import (
    _derangement,
    bootstrap_ci,
    correlation_matrix,
    identification_pvalue,
    pearson_rows,
    ssim_gaussian_batch,
    two_way_from_correlation,
)
from .networks import (
    CLIP_MEAN,
    CLIP_STD,
    FeatureNetwork,
    MissingWeights,
    Preprocess,
    load_network,
    resize_tensor,
)

__all__ = [
    "LowLevel",
    "NetworkMetric",
    "Protocol",
    "PROTOCOLS",
    "METRIC_DIRECTIONS",
    "PAPER_COLUMNS",
    "PUBLISHED",
    "PUBLISHED_SOURCE",
    "evaluate_protocol",
    "format_paper_table",
    "paper_table",
    "protocol_networks",
    "retrieval_top1",
]

#: The papers' column order.
PAPER_COLUMNS = ("PixCorr", "SSIM", "Alex2", "Alex5", "Incep", "CLIP", "Eff", "SwAV")

#: Which way is better, per metric.
METRIC_DIRECTIONS = {
    "PixCorr": "higher",
    "SSIM": "higher",
    "Alex2": "higher",
    "Alex5": "higher",
    "Alex7": "higher",
    "Incep": "higher",
    "CLIP": "higher",
    "Eff": "lower",
    "SwAV": "lower",
}
_TWO_WAY = ("Alex2", "Alex5", "Alex7", "Incep", "CLIP")
_ALL_METRICS = (*PAPER_COLUMNS, "Alex7")

#: Low-level images are resized in chunks of this many, to bound memory.
_CHUNK = 64


@dataclass(frozen=True)
class LowLevel:
    """How a protocol computes PixCorr and SSIM.

    Parameters
    ----------
    size : int
        Both images at ``size x size`` (425 in every protocol that has low-level metrics).
    interpolation : 'bilinear' | 'bicubic'
    antialias : bool
    pil : bool
        Resize as PIL resizes uint8 images (see :func:`~.networks.resize_tensor`).
    resize_gt : bool
        False: the stimulus is used at its native size (brain-diffuser: the 425 px NSD
        stimuli); it is resized only when it is not ``size`` px, and the result says so.
    ssim : '2d' | 'columns'
        :func:`~.metrics.compute_ssim` or :func:`~.metrics.compute_ssim_columns`.
    """

    size: int = 425
    interpolation: str = "bilinear"
    antialias: bool = False
    pil: bool = False
    resize_gt: bool = True
    ssim: str = "2d"


@dataclass(frozen=True)
class NetworkMetric:
    """One high-level metric: which network, layer, input transform and score."""

    metric: str
    network: str
    layer: str
    preprocess: Preprocess
    score: str  # 'two_way' | 'distance'
    weights_tag: str | None = None


@dataclass(frozen=True)
class Protocol:
    """A paper's evaluation settings (see the module docstring for the sources).

    Parameters
    ----------
    name, title : str
    pre_resize : int | None
        Both images are first resized to ``pre_resize x pre_resize`` (MindEye: 256); the
        low-level metrics and every network then start from those images.
    pre_resize_antialias : bool
    low_level : LowLevel | None
        None: the protocol defines no PixCorr/SSIM.
    networks : tuple of NetworkMetric
    two_way : 'mindeye' | 'takagi'
    n_test_images : int
        The paper's test set (982 shared images in sessions 1-37, or 1000).
    enhanced_blend : float | None
        Weight of the blurry reconstruction in MindEye2's enhanced images.
    source : str
    notes : tuple of str
    """

    name: str
    title: str
    pre_resize: int | None
    pre_resize_antialias: bool
    low_level: LowLevel | None
    networks: tuple[NetworkMetric, ...]
    two_way: str
    n_test_images: int
    enhanced_blend: float | None = None
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric names in the papers' column order (``Alex7`` last)."""
        have = ({"PixCorr", "SSIM"} if self.low_level else set()) | {
            n.metric for n in self.networks
        }
        return tuple(m for m in _ALL_METRICS if m in have)

    @property
    def directions(self) -> dict[str, str]:
        return {m: METRIC_DIRECTIONS[m] for m in self.metrics}

    def network_for(self, metric: str) -> NetworkMetric:
        for spec in self.networks:
            if spec.metric == metric:
                return spec
        raise KeyError(metric)

    def sizes(self) -> dict:
        """Image sizes at each step."""
        out = {"pre_resize": self.pre_resize}
        if self.low_level is not None:
            out["low_level"] = self.low_level.size
        out["networks"] = {n.metric: n.preprocess.size for n in self.networks}
        return out


def _imagenet(size, **kw) -> Preprocess:
    return Preprocess(size, **kw)


def _clip(size, **kw) -> Preprocess:
    return Preprocess(size, mean=CLIP_MEAN, std=CLIP_STD, **kw)


def _mindeye(name: str, title: str, n_test: int, blend, source: str, notes) -> Protocol:
    tv = {"resize": "squash", "interpolation": "bilinear", "antialias": False}
    return Protocol(
        name=name,
        title=title,
        pre_resize=256,
        pre_resize_antialias=False,
        low_level=LowLevel(425, "bilinear", antialias=False, pil=False, ssim="2d"),
        networks=(
            NetworkMetric("Alex2", "alexnet", "features.4", _imagenet(256, **tv), "two_way"),
            NetworkMetric("Alex5", "alexnet", "features.11", _imagenet(256, **tv), "two_way"),
            NetworkMetric("Incep", "inception_v3", "avgpool", _imagenet(342, **tv), "two_way"),
            NetworkMetric("CLIP", "clip_vit_l14", "output", _clip(224, **tv), "two_way"),
            NetworkMetric(
                "Eff",
                "efficientnet_b1",
                "avgpool",
                _imagenet(255, **tv),
                "distance",
                "IMAGENET1K_V2",
            ),
            NetworkMetric("SwAV", "swav_resnet50", "avgpool", _imagenet(224, **tv), "distance"),
        ),
        two_way="mindeye",
        n_test_images=n_test,
        enhanced_blend=blend,
        source=source,
        notes=notes,
    )


_PIL = {"resize": "squash", "interpolation": "bilinear", "antialias": True, "pil": True}
_TAKAGI = {
    "resize": "shorter_crop",
    "interpolation": "bilinear",
    "antialias": True,
    "pil": True,
}

PROTOCOLS: dict[str, Protocol] = {
    "brain-diffuser": Protocol(
        name="brain-diffuser",
        title="Brain-Diffuser (Ozcelik & VanRullen 2023)",
        pre_resize=None,
        pre_resize_antialias=True,
        low_level=LowLevel(
            425, "bicubic", antialias=True, pil=True, resize_gt=False, ssim="columns"
        ),
        networks=(
            NetworkMetric("Alex2", "alexnet", "features.4", _imagenet(224, **_PIL), "two_way"),
            NetworkMetric("Alex5", "alexnet", "features.11", _imagenet(224, **_PIL), "two_way"),
            NetworkMetric("Incep", "inception_v3", "avgpool", _imagenet(224, **_PIL), "two_way"),
            NetworkMetric("CLIP", "clip_vit_l14", "output", _clip(224, **_PIL), "two_way"),
            NetworkMetric(
                "Eff",
                "efficientnet_b1",
                "avgpool",
                _imagenet(224, **_PIL),
                "distance",
                "IMAGENET1K_V1",
            ),
            NetworkMetric("SwAV", "swav_resnet50", "avgpool", _imagenet(224, **_PIL), "distance"),
        ),
        two_way="mindeye",
        n_test_images=982,
        source="ozcelikfu/brain-diffuser scripts/evaluate_reconstruction.py, "
        "scripts/eval_extract_features.py, environment.yml",
        notes=(
            "SSIM per pixel column: scikit-image 0.17.2 with multichannel=True on grey images.",
            "Reconstruction resized with PIL's default filter (bicubic) to 425 px, networks on "
            "PIL-bilinear 224 x 224 inputs: emulated in torch (antialiased passes rounded to 8 "
            "bits, within one grey level of Pillow).",
        ),
    ),
    "mindeye": _mindeye(
        "mindeye",
        "MindEye1 (Scotti et al. 2023)",
        982,
        None,
        "MedARC-AI/fMRI-reconstruction-NSD src/Reconstruction_Metrics.py, src/environment.yaml",
        ("torchvision 0.15.2: tensor Resize without antialiasing.",),
    ),
    "mindeye2": _mindeye(
        "mindeye2",
        "MindEye2 (Scotti et al. 2024)",
        1000,
        0.25,
        "MedARC-AI/MindEyeV2 src/final_evaluations.ipynb, src/setup.sh",
        (
            "torchvision 0.16.0: tensor Resize without antialiasing.",
            "The notebook runs OpenAI CLIP in float16 on the GPU; here it runs in float32.",
        ),
    ),
    "takagi": Protocol(
        name="takagi",
        title="Takagi & Nishimoto (CVPR 2023)",
        pre_resize=None,
        pre_resize_antialias=True,
        low_level=None,
        networks=(
            NetworkMetric("Alex2", "alexnet", "features.5", _imagenet(299, **_TAKAGI), "two_way"),
            NetworkMetric("Alex5", "alexnet", "features.12", _imagenet(299, **_TAKAGI), "two_way"),
            NetworkMetric("Alex7", "alexnet", "classifier.5", _imagenet(299, **_TAKAGI), "two_way"),
            NetworkMetric("Incep", "inception_v3", "avgpool", _imagenet(299, **_TAKAGI), "two_way"),
            NetworkMetric(
                "CLIP",
                "clip_vit_l14",
                "output",
                _clip(
                    224,
                    resize="shorter_crop",
                    interpolation="bicubic",
                    antialias=True,
                    pil=True,
                ),
                "two_way",
            ),
        ),
        two_way="takagi",
        n_test_images=982,
        source="yu-takagi/StableDiffusionReconstruction codes/utils/img2feat_decoded.py, "
        "codes/utils/identification.py",
        notes=(
            "Two-way identification fixes the ground truth and averages the correlations over "
            "the generated samples (5 per image in the paper).",
            "CLIP: Hugging Face openai/clip-vit-large-patch14 image_embeds there (L2-normalised,"
            " which leaves correlations unchanged); open_clip ViT-L-14-quickgelu here.",
        ),
    ),
}


# ----------------------------------------------------------------------------- helpers


def _get_protocol(protocol) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    return PROTOCOLS[check_option("protocol", protocol, tuple(PROTOCOLS))]


def _check_image_array(name: str, images, ndims: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim not in ndims or arr.shape[-1] != 3:
        shapes = " or ".join(
            {4: "(n_images, height, width, 3)", 5: "(n_images, n_samples, height, width, 3)"}[d]
            for d in ndims
        )
        raise BadInputError(f"{name} must have shape {shapes}, got {arr.shape} instead.")
    if arr.size == 0:
        raise BadInputError(f"{name} is empty (shape {arr.shape}).")
    if arr.dtype != np.uint8:
        if arr.dtype.kind != "f":
            raise BadInputError(
                f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {arr.dtype}."
            )
        if not np.isfinite(arr).all():
            raise BadInputError(f"{name} holds NaN or infinite values.")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise BadInputError(
                f"{name} holds floats in [{lo:.4g}, {hi:.4g}], but float images must lie in "
                f"[0, 1]; pass uint8 0..255 or divide by 255."
            )
    return arr


def _resize_np(
    images: np.ndarray, size: int, *, interpolation: str, antialias: bool, pil: bool = False
) -> np.ndarray:
    """Square-resize (n, H, W, 3) images in torch, chunked; float32 in [0, 1] out.

    The tensors stay channels-last in memory (a permuted view of the NHWC array), so
    ``interpolate`` writes channels-last output and no strided gather copy is needed.
    """
    import torch

    if images.shape[1:3] == (size, size) and not pil:
        # resizing to the same size is the identity (torchvision too); uint8 stays uint8 (every
        # consumer scales it), so 1,000 images do not become a 0.8 GB float copy here
        return images if images.dtype in (np.uint8, np.float32) else _as_float(images)
    out = np.empty((len(images), size, size, 3), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(images), _CHUNK):
            chunk = images[start : start + _CHUNK]
            t = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)
            t = t.float() / 255.0 if chunk.dtype == np.uint8 else t.float()
            t = resize_tensor(t, size, interpolation=interpolation, antialias=antialias, pil=pil)
            if interpolation != "bilinear":  # bicubic overshoots; bilinear stays in [0, 1]
                t = t.clamp_(0.0, 1.0)
            out_view = torch.from_numpy(out[start : start + len(chunk)])
            out_view.copy_(t.permute(0, 2, 3, 1))
    return out


def _as_float(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32, copy=False)


def _summary(values, *, direction, n_boot, random_state, per_item, **extra) -> dict:
    values = np.asarray(values, dtype=np.float64)
    lo, hi = bootstrap_ci(values, n_boot=n_boot, random_state=random_state)
    out = {
        "mean": float(values.mean()),
        "ci": [lo, hi],
        "n": int(values.size),
        "direction": direction,
        **extra,
    }
    if per_item:
        out["values"] = values.tolist()
    return out


def _ssim_device(device):
    """The torch device for the batched SSIM (GPU), or None for scikit-image on a CPU."""
    if device in (None, "cpu"):
        return None
    from ..utils.devices import resolve_device

    resolved = str(resolve_device(device))
    return None if resolved == "cpu" else resolved


def _low_level(
    proto: Protocol,
    rec: np.ndarray,
    gt: np.ndarray,
    notes: list,
    *,
    chance_index: np.ndarray | None = None,
    ssim_device=None,
) -> dict:
    """Per-reconstruction PixCorr and SSIM: rec (m, H, W, 3) and gt (m, H', W', 3) paired.

    Each chunk is resized once and scored directly (the public ``compute_pixcorr`` /
    ``compute_ssim`` would check, copy and resize again). With ``chance_index``, the
    reconstructions are also scored against ``gt[chance_index]`` (mismatched pairs).
    """
    from skimage.color import rgb2gray

    low = proto.low_level
    s = low.size
    gt_native = not low.resize_gt and gt.shape[1:3] == (s, s)
    if not low.resize_gt and not gt_native:
        notes.append(
            f"ground truth is {gt.shape[1]}x{gt.shape[2]} px, not the native {s} px of the "
            f"protocol: resized like the reconstructions"
        )
    kw = {"interpolation": low.interpolation, "antialias": low.antialias, "pil": low.pil}

    def prepare_gt(images):
        return _as_float(images) if gt_native else _resize_np(images, s, **kw)

    def score(r, g):
        ssim = ssim_gaussian_batch(
            rgb2gray(r), rgb2gray(g), per_column=low.ssim == "columns", device=ssim_device
        )
        return pearson_rows(r, g), ssim

    out: dict[str, list] = {"PixCorr": [], "SSIM": [], "PixCorr_chance": [], "SSIM_chance": []}
    for start in range(0, len(rec), _CHUNK):
        sl = slice(start, start + _CHUNK)
        r = _resize_np(rec[sl], s, **kw)
        pix, ssim = score(r, prepare_gt(gt[sl]))
        out["PixCorr"].append(pix)
        out["SSIM"].append(ssim)
        if chance_index is not None:
            pix, ssim = score(r, prepare_gt(gt[chance_index[sl]]))
            out["PixCorr_chance"].append(pix)
            out["SSIM_chance"].append(ssim)
    return {k: np.concatenate(v) for k, v in out.items() if v}


def protocol_networks(
    protocol="mindeye2",
    *,
    metrics: Sequence[str] | None = None,
    weights: Mapping[str, object] | object = "default",
    device: str = "auto",
    batch_size: int = 32,
) -> dict[str, FeatureNetwork | MissingWeights]:
    """Build a protocol's networks, one per (network, weights, preprocessing).

    Parameters
    ----------
    protocol : str | Protocol
    metrics : sequence of str | None
        High-level metrics to build networks for (default: all of the protocol's).
    weights : 'default' | path | None | dict
        For every network, or a dict ``{network name: 'default' | path | None}`` (missing
        names: ``'default'``). None builds random networks (tests only).
    device, batch_size
        Passed to :func:`~.networks.load_network`.

    Returns
    -------
    networks : dict of str to FeatureNetwork or MissingWeights
        ``{metric: network}``; metrics that share a network (AlexNet 2 and 5) share one
        object. A network whose weights are missing is the :class:`MissingWeights` error.
    """
    proto = _get_protocol(protocol)
    wanted = proto.metrics if metrics is None else tuple(metrics)
    groups: dict[tuple, list[NetworkMetric]] = {}
    for metric in wanted:
        try:
            spec = proto.network_for(metric)
        except KeyError:
            continue
        groups.setdefault((spec.network, spec.weights_tag, spec.preprocess), []).append(spec)
    out: dict[str, FeatureNetwork | MissingWeights] = {}
    for (network, tag, preprocess), specs in groups.items():
        w = weights.get(network, "default") if isinstance(weights, Mapping) else weights
        try:
            net = load_network(
                network,
                tuple(dict.fromkeys(s.layer for s in specs)),
                preprocess=preprocess,
                weights=w,
                weights_tag=tag,
                device=device,
                batch_size=batch_size,
            )
        except MissingWeights as err:
            net = err
            logger.warning("%s", err)
        for spec in specs:
            out[spec.metric] = net
    return out


def _features(fn, images: np.ndarray, layer: str, cache: dict, key: str) -> np.ndarray:
    """Features of ``images`` from a FeatureNetwork (cached per network) or a plain callable."""
    if isinstance(fn, FeatureNetwork):
        ck = (id(fn), key)
        if ck not in cache:
            cache[ck] = fn.extract(images)
        feats = cache[ck]
        if layer not in feats:
            raise BadInputError(
                f"the network given for layer {layer!r} extracts only {list(feats)}; build it "
                f"with that layer (see protocol_networks)."
            )
        return feats[layer]
    feats = fn(images)
    if isinstance(feats, Mapping):
        feats = feats[layer]
    feats = np.asarray(feats)
    if feats.ndim < 2 or len(feats) != len(images):
        raise BadInputError(
            f"a feature function must return an array (n_images, n_features) with one row per "
            f"image, got shape {feats.shape} for {len(images)} images."
        )
    return feats.reshape(len(feats), -1)


def _correlation_distance(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``1 - r`` per pair in float64, NaN only for exactly constant rows (as scipy's).

    Unlike :func:`~.metrics.correlation_distance`, rows of tiny but varying values (random
    networks) are kept: a correlation does not depend on the scale.
    """
    a = gt.reshape(len(gt), -1).astype(np.float64)
    b = pred.reshape(len(pred), -1).astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 1.0 - np.clip(r, -1.0, 1.0)


def _describe(fn) -> str:
    if isinstance(fn, FeatureNetwork):
        return fn.weights
    return f"user function {getattr(fn, '__name__', type(fn).__name__)}"


# ----------------------------------------------------------------------------- main entry


def evaluate_protocol(
    recon,
    gt,
    *,
    protocol="mindeye2",
    metrics: Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int = 32,
    n_boot: int = 1000,
    random_state: int = 0,
    networks: Mapping[str, Callable] | None = None,
    weights: Mapping[str, object] | None = None,
    blurry=None,
    per_item: bool = False,
    chance: bool = True,
) -> dict:
    """Score reconstructions with one paper's protocol.

    Parameters
    ----------
    recon : ndarray of shape (n, H, W, 3) or (n, n_samples, H, W, 3)
        Reconstructions (uint8, or float in [0, 1]), in the order of ``gt``. With several
        samples per stimulus, low-level metrics and correlation distances are averaged over
        the samples and two-way identification uses the correlations averaged over them
        (Takagi's procedure); MindEye and brain-diffuser score one sample per stimulus.
    gt : ndarray of shape (n, H', W', 3)
        The stimuli (sizes may differ from ``recon``).
    protocol : 'mindeye2' | 'mindeye' | 'brain-diffuser' | 'takagi' | Protocol
    metrics : sequence of str | None
        Subset of ``PROTOCOLS[protocol].metrics`` (default: all).
    device : str
    batch_size : int
        Images per network forward pass.
    n_boot : int
        Bootstrap resamples (over stimuli) of each 95 % interval.
    random_state : int
        Seed of the bootstrap.
    networks : dict of str to callable | None
        ``{metric: f}`` replacing the protocol's network for that metric: ``f(images)`` gets
        the images as the protocol hands them to its networks (after any pre-resize) and
        returns features ``(n_images, n_features)`` (or a dict keyed by layer); a
        :class:`~.networks.FeatureNetwork` is used with the protocol's layer. Tests pass
        random-initialised networks here.
    weights : dict | None
        ``{network name: 'default' | path | None}`` for the protocol's own networks (default
        ``'default'``: the published weights from the local caches).
    blurry : ndarray | None
        MindEye2's blurry (low-level) reconstructions, same shape as ``recon``: the scored
        images become ``0.75 * recon + 0.25 * blurry`` after the 256 px resize (its
        "enhanced" table). Only for ``protocol='mindeye2'``.
    per_item : bool
        Also return each metric's per-stimulus values (``"values"``).
    chance : bool
        Also score PixCorr and SSIM on mismatched pairs (reconstruction ``i`` against the
        stimulus of a fixed derangement ``j != i``) and report the mean as ``"chance"``:
        the level a reconstruction reaches from image statistics alone. Doubles the
        low-level cost.

    Returns
    -------
    results : dict
        ``{metric: {"mean", "ci", "n", "direction", ...}}`` (two-way metrics add ``"chance"``
        0.5, a binomial ``"p_value"`` and the network/layer/input size; distances add the
        network/layer/input size) or ``{metric: {"missing": reason}}`` when a network's
        weights are not available; and ``"_meta"``: protocol, sizes, weights per metric,
        n, notes.
    """
    proto = _get_protocol(protocol)
    recon = _check_image_array("recon", recon, (4, 5))
    gt = _check_image_array("gt", gt, (4,))
    if len(recon) != len(gt):
        raise BadInputError(
            f"recon has {len(recon)} stimuli but gt has {len(gt)}; they must pair up in order."
        )
    n = len(gt)
    n_samples = recon.shape[1] if recon.ndim == 5 else 1
    if metrics is None:
        wanted = proto.metrics
    else:
        if isinstance(metrics, str):
            metrics = [metrics]
        wanted = tuple(check_option("metrics", m, _ALL_METRICS) for m in metrics)
        for m in wanted:
            if m not in proto.metrics:
                raise BadInputError(
                    f"the {proto.name} protocol defines no {m!r} metric; it has "
                    f"{list(proto.metrics)}."
                )
    if n < 2 and any(m in _TWO_WAY for m in wanted):
        raise BadInputError(f"two-way identification needs at least 2 stimuli, got {n}.")
    networks = dict(networks or {})
    for key in networks:
        if key not in wanted:
            raise BadInputError(
                f"networks has an entry for {key!r}, which is not among the metrics evaluated "
                f"({list(wanted)})."
            )
        if not callable(networks[key]):
            raise BadInputError(f"networks[{key!r}] must be callable.")
    n_boot = check_positive_int("n_boot", n_boot)
    notes: list[str] = list(proto.notes)
    if n != proto.n_test_images:
        notes.append(f"{n} stimuli; the published {proto.name} numbers use {proto.n_test_images}")

    # 1. the images every metric starts from
    rec_flat = recon.reshape(n * n_samples, *recon.shape[-3:])
    enhanced = blurry is not None
    if proto.pre_resize:
        kw = {"interpolation": "bilinear", "antialias": proto.pre_resize_antialias}
        rec_stage = _resize_np(rec_flat, proto.pre_resize, **kw)
        gt_stage = _resize_np(gt, proto.pre_resize, **kw)
    else:
        rec_stage, gt_stage = rec_flat, gt
    if enhanced:
        if proto.enhanced_blend is None:
            raise BadInputError(
                f"blurry= makes MindEye2's enhanced reconstructions (0.75 * recon + 0.25 * "
                f"blurry); the {proto.name} protocol has no such step. Use protocol='mindeye2'."
            )
        blurry = _check_image_array("blurry", blurry, (recon.ndim,))
        if blurry.shape[:-3] != recon.shape[:-3]:
            raise BadInputError(
                f"blurry must hold one image per reconstruction: shape {blurry.shape[:-3]} "
                f"before the image axes, recon has {recon.shape[:-3]}."
            )
        blur_stage = _resize_np(
            blurry.reshape(n * n_samples, *blurry.shape[-3:]),
            proto.pre_resize,
            interpolation="bilinear",
            antialias=proto.pre_resize_antialias,
        )
        b = proto.enhanced_blend
        rec_stage = (1.0 - b) * _as_float(rec_stage) + b * _as_float(blur_stage)
    gt_rep = np.repeat(gt_stage, n_samples, axis=0) if n_samples > 1 else gt_stage

    results: dict = {}
    common = {"n_boot": n_boot, "random_state": random_state, "per_item": per_item}
    weights_used: dict[str, str] = {}

    # 2. PixCorr / SSIM
    low_wanted = [m for m in wanted if m in ("PixCorr", "SSIM")]
    if low_wanted:
        chance_index = None
        if chance and n >= 2:
            perm = _derangement(n, np.random.default_rng(random_state))
            # flat item k = (stimulus k // n_samples, sample k % n_samples)
            chance_index = (perm[:, None] * n_samples + np.arange(n_samples)).reshape(-1)
        low = _low_level(
            proto,
            rec_stage,
            gt_rep,
            notes,
            chance_index=chance_index,
            ssim_device=_ssim_device(device),
        )
        for m in low_wanted:
            values = low[m].reshape(n, n_samples).mean(axis=1)
            bad = np.isnan(values)
            if bad.all():
                results[m] = {"missing": f"{m} is undefined: every image pair has a constant image"}
                continue
            if bad.any():
                notes.append(
                    f"{m}: {int(bad.sum())} stimulus/stimuli with a constant image left out "
                    f"(correlation undefined)"
                )
            extra = {}
            if chance_index is not None:
                extra["chance"] = float(np.nanmean(low[f"{m}_chance"]))
            results[m] = _summary(values[~bad], direction="higher", **extra, **common)

    # 3. networks
    high_wanted = [m for m in wanted if m not in ("PixCorr", "SSIM")]
    built = protocol_networks(
        proto,
        metrics=[m for m in high_wanted if m not in networks],
        weights=weights or "default",
        device=device,
        batch_size=batch_size,
    )
    fns = {**built, **networks}
    cache: dict = {}
    for m in high_wanted:
        spec = proto.network_for(m)
        fn = fns[m]
        info = {"network": spec.network, "layer": spec.layer, "input_size": spec.preprocess.size}
        if isinstance(fn, MissingWeights):
            results[m] = {"missing": str(fn), **info}
            weights_used[m] = "missing"
            continue
        try:
            f_gt = _features(fn, gt_stage, spec.layer, cache, "gt")
            f_rec = _features(fn, rec_stage, spec.layer, cache, "recon")
        except MissingWeights as err:
            results[m] = {"missing": str(err), **info}
            weights_used[m] = "missing"
            continue
        weights_used[m] = _describe(fn)
        info["weights"] = weights_used[m]
        f_rec = f_rec.reshape(n, n_samples, -1)
        if f_gt.shape[1] != f_rec.shape[2]:
            raise BadInputError(
                f"{m}: ground-truth and reconstruction features differ in size "
                f"({f_gt.shape[1]} vs {f_rec.shape[2]})."
            )
        if spec.score == "two_way":
            r = np.mean([correlation_matrix(f_gt, f_rec[:, k]) for k in range(n_samples)], 0)
            scores = two_way_from_correlation(r, variant=proto.two_way)
            results[m] = _summary(
                scores,
                direction="higher",
                chance=0.5,
                p_value=identification_pvalue(scores, n),
                **info,
                **common,
            )
        else:
            dist = np.mean(
                [_correlation_distance(f_gt, f_rec[:, k]) for k in range(n_samples)], axis=0
            )
            bad = np.isnan(dist)
            if bad.all():
                results[m] = {"missing": f"{m}: every feature row is constant", **info}
                continue
            if bad.any():
                notes.append(f"{m}: {int(bad.sum())} stimuli with constant features left out")
            results[m] = _summary(dist[~bad], direction="lower", **info, **common)

    results["_meta"] = {
        "protocol": proto.name,
        "title": proto.title,
        "n": n,
        "n_samples": n_samples,
        "two_way_variant": proto.two_way,
        "sizes": proto.sizes(),
        "weights": weights_used,
        "enhanced": enhanced,
        "metrics": list(wanted),
        "source": proto.source,
        "notes": notes,
    }
    return results


# ----------------------------------------------------------------------------- retrieval


def retrieval_top1(
    brain_embeds,
    image_embeds,
    *,
    n_items: int = 300,
    n_repeats: int = 30,
    random_state: int = 0,
) -> dict:
    """Top-1 retrieval among random subsets of test items, as MindEye1/2.

    Each repeat draws ``n_items`` items without replacement, L2-normalises the flattened
    embeddings and takes the cosine similarity ``S[b, i]`` between brain embedding ``b`` and
    image embedding ``i``. ``brain_to_image`` is the fraction of brain embeddings whose most
    similar image is their own (the papers' "image retrieval"); ``image_to_brain`` the fraction
    of images whose most similar brain embedding is their own ("brain retrieval").

    MindEye's notebooks compute the same two numbers, but their ``batchwise_cosine_similarity``
    returns the transposed matrix, so the number printed as ``fwd`` (reported as image
    retrieval) is the per-image argmax (``image_to_brain`` here) and ``bwd`` is
    ``brain_to_image``. Ties go to the first index here (``argsort(...)[-1]`` there).

    Parameters
    ----------
    brain_embeds, image_embeds : ndarray of shape (n, ...)
        Paired embeddings (e.g. CLIP embeddings predicted from fMRI, and of the stimuli).
    n_items : int
        Subset size (300 in MindEye); chance is ``1 / n_items``. With fewer than ``n_items``
        items, all of them are used in a single evaluation (the result says so).
    n_repeats : int
        Number of random subsets (30 in MindEye).
    random_state : int
        Seed of the subsets (``numpy.random.default_rng``).

    Returns
    -------
    results : dict
        ``{"brain_to_image": {...}, "image_to_brain": {...}, "n_items", "n_repeats",
        "chance", "note"}``; each direction has ``"mean"``, ``"ci"`` (MindEye's normal
        interval: mean +- 1.96 SD / sqrt(n_repeats), None with one repeat) and
        ``"per_repeat"``.
    """
    b = np.asarray(brain_embeds)
    im = np.asarray(image_embeds)
    for name, arr in (("brain_embeds", b), ("image_embeds", im)):
        if arr.ndim < 2 or arr.dtype.kind not in "biuf":
            raise BadInputError(
                f"{name} must be a numeric array of shape (n_items, ...), got shape "
                f"{arr.shape} and dtype {arr.dtype}."
            )
        if not np.isfinite(arr).all():
            raise BadInputError(f"{name} holds NaN or infinite values.")
    if len(b) != len(im):
        raise BadInputError(
            f"brain_embeds has {len(b)} items but image_embeds has {len(im)}; they must pair up."
        )
    b = b.reshape(len(b), -1).astype(np.float64)
    im = im.reshape(len(im), -1).astype(np.float64)
    n = len(b)
    if n < 2:
        raise BadInputError(f"retrieval needs at least 2 items, got {n}.")
    n_items = check_positive_int("n_items", n_items, minimum=2)
    n_repeats = check_positive_int("n_repeats", n_repeats)
    for name, arr in (("brain_embeds", b), ("image_embeds", im)):
        norms = np.linalg.norm(arr, axis=1)
        if (norms == 0).any():
            raise BadInputError(
                f"{name} has {int((norms == 0).sum())} all-zero embedding(s); cosine "
                f"similarity is undefined for them."
            )
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    im = im / np.linalg.norm(im, axis=1, keepdims=True)
    note = f"{n_repeats} random subsets of {n_items} of {n} items"
    if n <= n_items:
        if n < n_items:
            logger.warning(
                "retrieval: only %d items (< n_items=%d); scoring all of them once, chance 1/%d.",
                n,
                n_items,
                n,
            )
        note = f"all {n} items, one evaluation (n_items={n_items} requested)"
        n_items, n_repeats, subsets = n, 1, [np.arange(n)]
    else:
        rng = np.random.default_rng(random_state)
        subsets = [rng.choice(n, size=n_items, replace=False) for _ in range(n_repeats)]
    b2i, i2b = [], []
    target = np.arange(n_items)
    for idx in subsets:
        sim = b[idx] @ im[idx].T  # rows: brain, columns: images
        b2i.append(float(np.mean(sim.argmax(axis=1) == target)))
        i2b.append(float(np.mean(sim.argmax(axis=0) == target)))

    def summary(values):
        values = np.asarray(values)
        mean = float(values.mean())
        if len(values) > 1:
            half = 1.959963984540054 * values.std() / math.sqrt(len(values))
            ci = [mean - half, mean + half]
        else:
            ci = None
        return {"mean": mean, "ci": ci, "per_repeat": values.tolist()}

    return {
        "brain_to_image": summary(b2i),
        "image_to_brain": summary(i2b),
        "n_items": n_items,
        "n_repeats": n_repeats,
        "chance": 1.0 / n_items,
        "note": note,
    }


# ----------------------------------------------------------------------------- tables

PUBLISHED_SOURCE = (
    "Copied from ../shared/EVALUATION_PROTOCOLS.md (the papers' tables; NSD subjects 1/2/5/7 "
    "mean; MindEye2 Table 1 on the 1000-image test set with enhanced reconstructions). "
    "Two-way identification in percent. Not re-derived here."
)

#: Published rows to print beside ours (see :data:`PUBLISHED_SOURCE`).
PUBLISHED: dict[str, dict] = {
    "brain-it_40h": {
        "method": "Brain-IT (2025)",
        "data": "40 h",
        "protocol": "mindeye2",
        "values": {
            "PixCorr": 0.386,
            "SSIM": 0.486,
            "Alex2": 98.4,
            "Alex5": 99.5,
            "Incep": 97.3,
            "CLIP": 96.4,
            "Eff": 0.564,
            "SwAV": 0.320,
        },
    },
    "mindeye2_40h": {
        "method": "MindEye2 (2024)",
        "data": "40 h",
        "protocol": "mindeye2",
        "values": {
            "PixCorr": 0.322,
            "SSIM": 0.431,
            "Alex2": 96.1,
            "Alex5": 98.6,
            "Incep": 95.4,
            "CLIP": 93.0,
            "Eff": 0.619,
            "SwAV": 0.344,
        },
    },
    "brain-it_1h": {
        "method": "Brain-IT (2025)",
        "data": "1 h",
        "protocol": "mindeye2",
        "values": {"PixCorr": 0.331, "SSIM": 0.473, "Alex2": 97.1},
    },
    "mindeye2_1h": {
        "method": "MindEye2 (2024)",
        "data": "1 h",
        "protocol": "mindeye2",
        "values": {"PixCorr": 0.195, "SSIM": 0.419, "Alex2": 84.2},
    },
}


def paper_table(
    metrics: Mapping[str, Mapping] | None,
    *,
    label: str = "ours",
    data: str = "",
    published: bool | Sequence[str] = True,
) -> list[dict]:
    """Rows laid out like the papers' tables: ours first, then the published rows.

    Parameters
    ----------
    metrics : dict | None
        The result of :func:`evaluate_protocol` (None: published rows only).
    label, data : str
        ``method`` and ``data`` cells of our row.
    published : bool | sequence of str
        Include all :data:`PUBLISHED` rows (True), none (False) or the named keys.

    Returns
    -------
    rows : list of dict
        ``{"method", "data", "protocol", "PixCorr", ..., "SwAV"}``; two-way identification in
        percent as published, distances and correlations as fractions; None where a value is
        missing or not reported.
    """
    rows = []
    if metrics is not None:
        if not isinstance(metrics, Mapping):
            raise BadInputError(
                f"metrics must be the dict evaluate_protocol returns, got {type(metrics).__name__}."
            )
        row = {
            "method": label,
            "data": data,
            "protocol": metrics.get("_meta", {}).get("protocol"),
        }
        for col in PAPER_COLUMNS:
            entry = metrics.get(col)
            if not isinstance(entry, Mapping) or "mean" not in entry:
                row[col] = None
            else:
                row[col] = entry["mean"] * (100.0 if col in _TWO_WAY else 1.0)
        rows.append(row)
    if published is True:
        keys = list(PUBLISHED)
    elif published is False:
        keys = []
    else:
        keys = [check_option("published", k, tuple(PUBLISHED)) for k in published]
    for key in keys:
        pub = PUBLISHED[key]
        rows.append(
            {
                "method": pub["method"],
                "data": pub["data"],
                "protocol": pub["protocol"],
                **{c: pub["values"].get(c) for c in PAPER_COLUMNS},
            }
        )
    return rows


def format_paper_table(rows: Sequence[Mapping]) -> str:
    """A Markdown table of :func:`paper_table` rows (Eff and SwAV marked lower-is-better)."""
    head = [
        "method",
        "data",
        *[c + ("↓" if METRIC_DIRECTIONS[c] == "lower" else "") for c in PAPER_COLUMNS],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row.get("method", "")), str(row.get("data", ""))]
        for col in PAPER_COLUMNS:
            v = row.get(col)
            if v is None:
                cells.append("")
            elif col in _TWO_WAY:
                cells.append(f"{v:.1f}")
            else:
                cells.append(f"{v:.3f}".replace("0.", ".", 1) if 0 <= v < 1 else f"{v:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
