"""Scores of 3D reconstructions: 2D metrics on rendered views, and CLIP similarity.

Brain3D / MinD-3D style: each reconstructed object is rendered from ``n_views`` viewpoints on
an orbit around it, the views are scored against the stimulus image with a paper's 2D
protocol (:func:`~.protocols.evaluate_protocol`, views as the samples of one stimulus), and
``CLIP-sim`` is the cosine similarity between the CLIP image embeddings of each view and of
its stimulus, averaged over views (``CLIP-sim chance``: the same on mismatched
object/stimulus pairs).

Files: :func:`read_mesh` parses ``.ply`` (ascii, binary little- and big-endian; what
``diffusers.utils.export_to_ply``, Shap-E and trimesh write) and ``.glb`` (glTF 2.0 binary:
``POSITION``, ``COLOR_0``, ``indices``), :func:`read_turntable` the ``<name>_turntable.gif``
of the 3D route (its volume-rendered views, the only views of an object without a surface).
trimesh is not a dependency of this package, so both formats are parsed here with numpy.

**The renderer.** :func:`render_views` is a small z-buffer rasterizer in torch: a pinhole
camera (field of view :data:`FOV` = 0.7 rad, as the route's turntables) at
:data:`CAMERA_DISTANCE` from the centre of the object's bounding box, which is scaled to the
unit sphere (so the whole object is always in frame with a 10 % margin); view ``k`` at
azimuth ``2 pi k / n_views`` and a fixed elevation, view 0 looking along +y from the -y side
(the turntables' first view); per-vertex colours interpolated with perspective-correct
barycentric weights; flat Lambert shading from a headlight (a light along the viewing
direction, two-sided, 30 % ambient); white background; no antialiasing. It runs on the CPU
or a GPU through the same code. We write our own because the usual ones cannot be relied on
here: ``pytorch3d`` has no wheel on PyPI for Python 3.11 on Linux x86_64 (``pip download
pytorch3d`` finds no distribution; it is built from source against a matching torch/CUDA),
``nvdiffrast`` is not on PyPI and needs CUDA or an OpenGL context, and ``pyrender`` (last
release 0.1.45, 2021) installs but draws through OpenGL, so it needs PyOpenGL plus a display,
EGL or OSMesa from the system. The rasterizer is one vectorised pass per chunk of triangles
(every pixel centre inside each triangle's bounding box is tested at once; the z-test packs
depth and triangle index into one int64 ``scatter_reduce(amax)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..utils.io import write_json_atomic
from ..utils.logging import progress_disabled
from ..utils.validation import BadInputError, check_option, check_path, check_positive_int
from ._meshio import DEFAULT_GREY, MESH_SUFFIXES, read_mesh
from ._render import AMBIENT, CAMERA_DISTANCE, FOV, render_views
from .metrics import bootstrap_ci
from .networks import FeatureNetwork, MissingWeights
from .protocols import PROTOCOLS, Protocol, evaluate_protocol, protocol_networks

__all__ = [
    "AMBIENT",
    "CAMERA_DISTANCE",
    "DEFAULT_GREY",
    "FOV",
    "MESH_SUFFIXES",
    "evaluate_3d",
    "evaluate_mesh_folder",
    "read_mesh",
    "read_turntable",
    "render_views",
]

_CLIP_SIM = "CLIP-sim"
_CLIP_CHANCE = "CLIP-sim chance"

# ----------------------------------------------------------------------------- turntables


def read_turntable(gif_path, n_views: int | None = None) -> np.ndarray:
    """The frames of a turntable GIF as RGB uint8.

    Pillow merges identical consecutive frames into one and adds up their durations when it
    writes a GIF; frames are repeated here by ``duration / gcd(durations)`` to undo that.

    Parameters
    ----------
    gif_path : str | PathLike
    n_views : int | None
        Keep this many frames, evenly spaced around the orbit (frame ``floor(k n / n_views)``
        for ``k < n_views``); None keeps all.

    Returns
    -------
    frames : ndarray of shape (n_frames, height, width, 3), uint8
    """
    from PIL import Image, ImageSequence

    path = check_path("gif_path", gif_path, kind="file")
    frames, durations = [], []
    try:
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                frames.append(np.asarray(frame.convert("RGB")))
                durations.append(int(frame.info.get("duration", 0) or 0))
    except OSError as err:
        raise BadInputError(f"gif_path: cannot read {str(path)!r} as an image: {err}") from None
    if all(d > 0 for d in durations):
        base = math.gcd(*durations)
        frames = [f for f, d in zip(frames, durations, strict=True) for _ in range(d // base)]
    arr = np.stack(frames)
    if n_views is not None:
        n_views = check_positive_int("n_views", n_views)
        if n_views > len(arr):
            raise BadInputError(
                f"n_views={n_views} but {str(path)!r} has only {len(arr)} frames; ask for at "
                f"most {len(arr)} views."
            )
        arr = arr[(np.arange(n_views) * len(arr)) // n_views]
    return arr


# ----------------------------------------------------------------------------- metrics


def _summary(values, *, n_boot: int, random_state: int, per_item: bool, **extra) -> dict:
    values = np.asarray(values, dtype=np.float64)
    lo, hi = bootstrap_ci(values, n_boot=n_boot, random_state=random_state)
    out = {"mean": float(values.mean()), "ci": [lo, hi], "n": int(values.size), **extra}
    if per_item:
        out["values"] = values.tolist()
    return out


def _check_images(name: str, images, ndim: int) -> np.ndarray:
    arr = np.asarray(images)
    shape = "(n_objects, n_views, height, width, 3)" if ndim == 5 else "(n_objects, H, W, 3)"
    if arr.ndim != ndim or arr.shape[-1] != 3 or arr.size == 0:
        raise BadInputError(f"{name} must have shape {shape}, got {arr.shape} instead.")
    if arr.dtype != np.uint8:
        ok = arr.dtype.kind == "f" and np.isfinite(arr).all()
        if not ok or arr.min() < 0 or arr.max() > 1:
            if arr.dtype.kind != "f":
                got = f"dtype {arr.dtype}"
            elif not ok:
                got = "NaN or infinite values"
            else:
                got = f"values in [{arr.min():.4g}, {arr.max():.4g}]"
            raise BadInputError(
                f"{name} must be uint8 (0..255) or finite floats in [0, 1], got {got}."
            )
    return arr


def _check_views(views, gt):
    views = _check_images("views", views, 5)
    gt = _check_images("gt", gt, 4)
    if len(views) != len(gt):
        raise BadInputError(
            f"views has {len(views)} objects but gt has {len(gt)} stimuli; they must pair up "
            "in order."
        )
    return views, gt


def _embed(fn, images: np.ndarray, what: str) -> np.ndarray:
    feats = np.asarray(fn(images), dtype=np.float64)
    if feats.ndim < 2 or len(feats) != len(images):
        raise BadInputError(
            f"clip must return embeddings (n_images, dim), one row per image; got shape "
            f"{feats.shape} for {len(images)} {what}."
        )
    feats = feats.reshape(len(feats), -1)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    if not np.isfinite(feats).all() or (norms == 0).any():
        raise BadInputError(
            f"clip returned non-finite or all-zero embeddings for some {what}; cosine "
            "similarity is undefined for them."
        )
    return feats / norms


def _clip_network(proto, clip, weights, device, batch_size):
    """(callable or None, description, reason-if-missing)."""
    if clip is not None:
        if not callable(clip):
            raise BadInputError(
                f"clip must be None (the protocol's CLIP from the local cache) or a callable "
                f"images -> (n, dim) embeddings, got {type(clip).__name__}."
            )
        if isinstance(clip, FeatureNetwork):
            desc = clip.weights
        else:
            desc = f"user function {getattr(clip, '__name__', type(clip).__name__)}"
        return clip, desc, None
    if "CLIP" not in proto.metrics:
        return None, None, f"the {proto.name} protocol names no CLIP network"
    net = protocol_networks(
        proto, metrics=["CLIP"], weights=weights or "default", device=device, batch_size=batch_size
    )["CLIP"]
    if isinstance(net, MissingWeights):
        return None, None, str(net)
    return net, net.weights, None


def evaluate_3d(
    views,
    gt,
    *,
    protocol="mindeye2",
    metrics: Sequence[str] | None = None,
    clip: Callable | None = None,
    networks: Mapping[str, Callable] | None = None,
    weights: Mapping[str, object] | None = None,
    device: str = "auto",
    batch_size: int = 32,
    n_boot: int = 1000,
    random_state: int = 0,
    per_item: bool = False,
) -> dict:
    """Score rendered views of reconstructed objects against their stimuli.

    The 2D metrics are :func:`~.protocols.evaluate_protocol` with the views as the samples
    of each stimulus (low-level metrics and distances averaged over views, two-way
    identification on correlations averaged over views). ``CLIP-sim`` per object is the mean
    over its views of ``cos(CLIP(view), CLIP(stimulus))``; ``CLIP-sim chance`` per object is
    the same against every other object's stimulus, averaged. Both carry a bootstrap 95 % CI
    over objects; ``CLIP-sim`` also gives the chance mean as ``"chance"``.

    Parameters
    ----------
    views : ndarray of shape (n_objects, n_views, H, W, 3)
        uint8, or float in [0, 1] (e.g. from :func:`render_views`).
    gt : ndarray of shape (n_objects, H', W', 3)
        The stimuli, in the order of ``views``.
    protocol : str | Protocol
        The 2D protocol (:data:`~.protocols.PROTOCOLS`).
    metrics : sequence of str | None
        Subset of the protocol's metrics plus ``'CLIP-sim'`` (default: all of them).
    clip : callable | None
        None: the protocol's CLIP network from the local cache (missing weights give
        ``{"missing": reason}`` entries, never random weights); or a callable images
        ``(n, H, W, 3)`` -> embeddings ``(n, dim)`` such as a
        :class:`~.networks.FeatureNetwork`. The same network scores the 2D ``CLIP`` metric
        unless ``networks`` names another.
    networks, weights, device, batch_size, n_boot, random_state, per_item
        As for :func:`~.protocols.evaluate_protocol`; with ``per_item`` ``CLIP-sim`` also
        holds ``"per_view"`` (n_objects, n_views) similarities.

    Returns
    -------
    results : dict
        The 2D protocol's entries, ``"CLIP-sim"``, ``"CLIP-sim chance"`` and ``"_meta"``
        (the protocol's, plus ``n_views``, ``view_size`` and ``clip``).
    """
    views, gt = _check_views(views, gt)
    if isinstance(protocol, Protocol):
        proto = protocol
    else:
        proto = PROTOCOLS[check_option("protocol", protocol, tuple(PROTOCOLS))]
    allowed = (*proto.metrics, _CLIP_SIM)
    if metrics is None:
        wanted = allowed
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        wanted = tuple(check_option("metrics", m, allowed) for m in metrics)
    n, n_views = views.shape[:2]
    if not wanted:
        raise BadInputError(f"metrics is empty; name at least one of {list(allowed)}.")
    flat_2d = [m for m in wanted if m != _CLIP_SIM]
    networks = dict(networks or {})
    for key in networks:
        if key not in flat_2d:
            raise BadInputError(
                f"networks has an entry for {key!r}, which is not among the 2D metrics "
                f"evaluated ({flat_2d}); the CLIP of CLIP-sim is passed as clip=."
            )
    need_clip = _CLIP_SIM in wanted or ("CLIP" in flat_2d and "CLIP" not in networks)
    clip_fn, clip_desc, missing = (
        _clip_network(proto, clip, weights, device, batch_size) if need_clip else (None,) * 3
    )
    if clip_fn is not None and "CLIP" in flat_2d and "CLIP" not in networks:
        networks["CLIP"] = clip_fn  # one CLIP network for both scores
    results: dict = {}
    if flat_2d:
        results = evaluate_protocol(
            views,
            gt,
            protocol=proto,
            metrics=flat_2d,
            device=device,
            batch_size=batch_size,
            n_boot=n_boot,
            random_state=random_state,
            networks=networks or None,
            weights=weights,
            per_item=per_item,
        )
    meta = results.pop("_meta", {"protocol": proto.name, "n": n, "notes": []})
    common = {"n_boot": n_boot, "random_state": random_state}
    if _CLIP_SIM in wanted:
        if clip_fn is None:
            results[_CLIP_SIM] = {"missing": missing}
            results[_CLIP_CHANCE] = {"missing": missing}
        else:
            e_gt = _embed(clip_fn, gt, "stimuli")
            e_v = _embed(clip_fn, views.reshape(n * n_views, *views.shape[2:]), "views")
            sim = np.einsum("ikd,jd->ijk", e_v.reshape(n, n_views, -1), e_gt)  # view i, stim j
            own = sim[np.arange(n), np.arange(n)]  # (n, n_views)
            per_object = own.mean(axis=1)
            extra = {"per_view": own.tolist()} if per_item else {}
            if n >= 2:
                mean_sim = sim.mean(axis=2)
                chance = (mean_sim.sum(axis=1) - np.diag(mean_sim)) / (n - 1)
                results[_CLIP_CHANCE] = _summary(
                    chance, direction="higher", per_item=per_item, **common
                )
                extra["chance"] = float(chance.mean())
            else:
                results[_CLIP_CHANCE] = {"missing": "needs at least 2 objects"}
            results[_CLIP_SIM] = _summary(
                per_object,
                direction="higher",
                per_item=per_item,
                network=getattr(clip_fn, "name", "user function"),
                weights=clip_desc,
                **extra,
                **common,
            )
    meta.update(
        {
            "n_views": int(n_views),
            "view_size": [int(views.shape[2]), int(views.shape[3])],
            "clip": clip_desc if clip_fn is not None else {"missing": missing},
            "metrics": list(wanted),
        }
    )
    meta.setdefault("notes", []).append(
        f"2D metrics over {n_views} views per object (the views are the protocol's samples)"
    )
    results["_meta"] = meta
    return results


# ----------------------------------------------------------------------------- folders


def _find_objects(mesh_dir: Path, source: str) -> dict[str, tuple[str, Path]]:
    meshes: dict[str, Path] = {}
    for suffix in MESH_SUFFIXES:  # .ply before .glb
        for p in sorted(mesh_dir.glob(f"*{suffix}")):
            meshes.setdefault(p.stem, p)
    gifs = {p.name[: -len("_turntable.gif")]: p for p in sorted(mesh_dir.glob("*_turntable.gif"))}
    names = sorted(set(meshes) | set(gifs))
    out = {}
    for name in names:
        if source == "turntable" or (source == "auto" and name not in meshes):
            if name not in gifs:
                raise BadInputError(
                    f"mesh_dir: {name!r} has no {name}_turntable.gif (source={source!r})."
                )
            out[name] = ("turntable", gifs[name])
        elif name in meshes:
            out[name] = (meshes[name].suffix[1:].lower(), meshes[name])
        else:
            raise BadInputError(
                f"mesh_dir: {name!r} has no .ply or .glb mesh, only a turntable GIF; pass "
                "source='auto' to score its turntable frames instead."
            )
    if not out:
        raise BadInputError(
            f"mesh_dir: no meshes ({', '.join(MESH_SUFFIXES)}) or *_turntable.gif in "
            f"{str(mesh_dir)!r}."
        )
    return out


def _read_stimuli(gt_dir: Path, names: list[str]) -> tuple[np.ndarray, list[Path]]:
    from PIL import Image

    from .folders import IMAGE_SUFFIXES

    found: dict[str, Path] = {}
    for p in sorted(gt_dir.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(p.stem, p)
    only_obj = [n for n in names if n not in found]
    only_gt = sorted(set(found) - set(names))
    if only_obj or only_gt:
        raise BadInputError(
            f"mesh_dir and gt_dir must hold the same names: {len(only_obj)} object(s) without "
            f"a stimulus image (e.g. {only_obj[:3]}), {len(only_gt)} stimulus image(s) without "
            f"an object (e.g. {only_gt[:3]})."
        )
    arrays = []
    for name in names:
        with Image.open(found[name]) as im:
            arrays.append(np.asarray(im.convert("RGB")))
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        raise BadInputError(f"gt_dir: the stimuli have different sizes {shapes[:3]}.")
    return np.stack(arrays), [found[n] for n in names]


def _strip(path: Path, stimulus, views, labels: Sequence[str], tile: int = 128) -> Path:
    """One row: the stimulus then each view, each under a text label; a PNG, atomically."""
    from PIL import Image, ImageDraw, ImageFont

    from ..utils.io import atomic_path
    from .report import LABEL_HEIGHT

    tiles = [stimulus, *views]
    grid = Image.new("RGB", (tile * len(tiles), tile + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for k, (img, text) in enumerate(zip(tiles, labels, strict=True)):
        pic = Image.fromarray(np.asarray(img, dtype=np.uint8)).resize((tile, tile), Image.BICUBIC)
        grid.paste(pic, (k * tile, LABEL_HEIGHT))
        draw.text((k * tile + 1, 0), text, fill="black", font=font)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path


def evaluate_mesh_folder(
    mesh_dir,
    gt_dir,
    out_dir,
    *,
    n_views: int = 8,
    size: int = 256,
    elevation: float = 20.0,
    up: str = "z",
    source: str = "auto",
    protocol: str = "mindeye2",
    metrics: Sequence[str] | None = None,
    clip: Callable | None = None,
    networks: Mapping[str, Callable] | None = None,
    weights: Mapping[str, object] | None = None,
    device: str = "auto",
    batch_size: int = 32,
    n_boot: int = 1000,
    random_state: int = 0,
) -> dict:
    """Render every object of a folder and score its views against its stimulus.

    Objects are ``<name>.ply`` / ``<name>.glb`` (a PLY first when both exist), rendered with
    :func:`render_views`, or ``<name>_turntable.gif`` (the 3D route's volume-rendered
    frames, :func:`read_turntable`: evenly spaced frames, resized to ``size``), used when an
    object has no mesh (``source='auto'``), always (``'turntable'``) or never (``'mesh'``).
    Each pairs with ``gt_dir/<name>.<png|jpg|...>``; every name must be on both sides.

    Writes into ``out_dir`` (each file atomically): ``metrics.json`` (:func:`evaluate_3d`'s
    results; ``_meta.objects`` says per object which file was scored and whether it came from
    a turntable), ``views/<name>.png`` (the stimulus beside its views, labelled with each
    view's CLIP similarity) and ``report.html`` (the best, median and worst object by
    CLIP-sim).

    Parameters
    ----------
    mesh_dir, gt_dir : path
        The objects (e.g. a run's ``meshes`` artifact) and the stimuli.
    out_dir : path
        Created if needed.
    n_views, size, elevation, up
        As for :func:`render_views`.
    source : 'auto' | 'mesh' | 'turntable'
    protocol, metrics, clip, networks, weights, device, batch_size, n_boot, random_state
        As for :func:`evaluate_3d`; ``device`` also renders.

    Returns
    -------
    results : dict
        What ``metrics.json`` holds.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from .report import write_report_html

    mesh_dir = check_path("mesh_dir", mesh_dir, kind="dir")
    gt_dir = check_path("gt_dir", gt_dir, kind="dir")
    check_option("source", source, ("auto", "mesh", "turntable"))
    n_views = check_positive_int("n_views", n_views)
    size = check_positive_int("size", size)
    check_option("up", up, ("z", "y"))
    out_dir = check_path("out_dir", out_dir, must_exist=False)
    objects = _find_objects(mesh_dir, source)
    names = list(objects)
    gt, gt_files = _read_stimuli(gt_dir, names)
    views = np.empty((len(names), n_views, size, size, 3), dtype=np.uint8)
    info = []
    for i, name in enumerate(tqdm(names, desc="render", disable=progress_disabled())):
        kind, path = objects[name]
        entry = {"name": name, "source": kind, "file": path.name, "gt_file": gt_files[i].name}
        if kind == "turntable":
            frames = read_turntable(path, n_views)
            views[i] = np.stack(
                [np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames]
            )
            entry["from_turntable"] = True
            entry["frame_size"] = list(frames.shape[1:3])
        else:
            v, f, c = read_mesh(path)
            views[i] = render_views(
                v, f, c, n_views=n_views, size=size, elevation=elevation, up=up, device=device
            )
            entry.update({"n_vertices": len(v), "n_faces": len(f), "has_colors": c is not None})
        info.append(entry)
    results = evaluate_3d(
        views,
        gt,
        protocol=protocol,
        metrics=metrics,
        clip=clip,
        networks=networks,
        weights=weights,
        device=device,
        batch_size=batch_size,
        n_boot=n_boot,
        random_state=random_state,
        per_item=True,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = results.get(_CLIP_SIM, {})
    per_view = sim.get("per_view")
    for i, name in enumerate(names):
        labels = ["stimulus"] + [
            f"view {k}" + (f": {per_view[i][k]:.2f}" if per_view else "") for k in range(n_views)
        ]
        _strip(out_dir / "views" / f"{name}.png", gt[i], views[i], labels)
    rank_by = next((m for m in (_CLIP_SIM, "PixCorr") if "values" in results.get(m, {})), None)
    images = {}
    if rank_by is not None:
        order = np.argsort(-np.asarray(results[rank_by]["values"]), kind="stable")
        picks = {"best": order[0], "median": order[len(order) // 2], "worst": order[-1]}
    else:
        picks = {f"object {k}": k for k in range(min(3, len(names)))}
    for label, k in picks.items():
        caption = f"{label} by {rank_by}: {names[k]}" if rank_by else names[k]
        images[caption] = out_dir / "views" / f"{names[k]}.png"
    from_turntable = [e["name"] for e in info if e["source"] == "turntable"]
    results["_meta"].update(
        {
            "mesh_dir": str(mesh_dir),
            "gt_dir": str(gt_dir),
            "objects": info,
            "from_turntable": from_turntable,
            "render": {
                "n_views": n_views,
                "size": size,
                "elevation_deg": float(elevation),
                "fov_rad": FOV,
                "camera_distance": CAMERA_DISTANCE,
                "up": up,
                "background": "white",
            },
        }
    )
    write_json_atomic(out_dir / "metrics.json", results)
    shown = {
        k: {kk: vv for kk, vv in v.items() if kk not in ("values", "per_view")}
        for k, v in results.items()
        if not k.startswith("_") and isinstance(v, dict)
    }
    provenance = [
        f"{len(names)} objects from {mesh_dir} against the stimuli in {gt_dir}; {n_views} "
        f"views of {size} px at {elevation:g} degrees elevation, scored with the "
        f"{results['_meta'].get('protocol')!r} 2D protocol (docs/evaluation.md).",
    ]
    if from_turntable:
        provenance.append(
            f"{len(from_turntable)} object(s) have no mesh and were scored on their turntable "
            f"GIF frames (Shap-E's own volume rendering, other camera and background): "
            f"{', '.join(from_turntable[:10])}{' ...' if len(from_turntable) > 10 else ''}."
        )
    clip_used = results["_meta"].get("clip")
    if isinstance(clip_used, str):
        provenance.append(f"CLIP network of CLIP-sim: {clip_used}.")
    missing = [k for k, v in results.items() if isinstance(v, dict) and "missing" in v]
    if missing:
        provenance.append(f"Not computed (weights missing): {', '.join(missing)}.")
    write_report_html(
        out_dir / "report.html",
        title=f"3D evaluation of {mesh_dir}",
        metrics=shown,
        images=images,
        provenance=provenance,
        stages=[],
    )
    return results
