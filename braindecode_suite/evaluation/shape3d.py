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

import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..utils.devices import resolve_device
from ..utils.io import write_json_atomic
from ..utils.logging import logger, progress_disabled
from ..utils.validation import BadInputError, check_option, check_path, check_positive_int
from .metrics import bootstrap_ci
from .networks import FeatureNetwork, MissingWeights
from .protocols import PROTOCOLS, Protocol, evaluate_protocol, protocol_networks

__all__ = [
    "CAMERA_DISTANCE",
    "FOV",
    "MESH_SUFFIXES",
    "evaluate_3d",
    "evaluate_mesh_folder",
    "read_mesh",
    "read_turntable",
    "render_views",
]

#: Mesh files :func:`read_mesh` reads.
MESH_SUFFIXES = (".ply", ".glb")
#: Field of view of the render camera in radians (horizontal = vertical), as the turntables.
FOV = 0.7
#: Camera distance from the object's centre, the object scaled to the unit sphere: the
#: sphere's silhouette fills 90 % of the half-width of the frame.
CAMERA_DISTANCE = 1.0 / (0.9 * math.sin(FOV / 2.0))
#: Ambient share of the Lambert shading.
AMBIENT = 0.3
#: Colour of meshes without vertex colours.
DEFAULT_GREY = 0.8
#: Candidate (triangle, pixel) tests per rasterizer chunk.
_CHUNK_TESTS = 1 << 22
_CLIP_SIM = "CLIP-sim"
_CLIP_CHANCE = "CLIP-sim chance"


# ----------------------------------------------------------------------------- PLY

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_COLOR_NAMES = (
    ("red", "green", "blue"),
    ("r", "g", "b"),
    ("diffuse_red", "diffuse_green", "diffuse_blue"),
)


def _ply_header(data: bytes, path: Path) -> tuple[str, list[dict], int]:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise BadInputError(f"path: {str(path)!r} is not a PLY file (no 'ply' ... 'end_header').")
    body = data.index(b"\n", end) + 1
    fmt, elements = None, []
    for raw in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append({"name": words[1], "count": int(words[2]), "props": []})
        elif words[0] == "property" and elements:
            if words[1] == "list":
                prop = (words[4], _PLY_TYPES.get(words[2]), _PLY_TYPES.get(words[3]))
            else:
                prop = (words[2], _PLY_TYPES.get(words[1]), None)
            if prop[1] is None or (words[1] == "list" and prop[2] is None):
                raise BadInputError(f"path: {str(path)!r} has an unknown PLY type in {raw!r}.")
            elements[-1]["props"].append(prop)
    check_option("PLY format", fmt, ("ascii", "binary_little_endian", "binary_big_endian"))
    return fmt, elements, body


def _ply_ascii(text: bytes, elements: list[dict]) -> dict[str, dict]:
    lines = [ln for ln in text.split(b"\n") if ln.strip()]
    out, row = {}, 0
    for el in elements:
        rows = lines[row : row + el["count"]]
        row += el["count"]
        if len(rows) < el["count"]:
            raise BadInputError(f"the PLY file ends inside element {el['name']!r}.")
        if all(p[2] is None for p in el["props"]):
            table = np.array([r.split() for r in rows], dtype=np.float64).reshape(len(rows), -1)
            out[el["name"]] = {p[0]: table[:, i] for i, p in enumerate(el["props"])}
            continue
        cols: dict[str, list] = {p[0]: [] for p in el["props"]}
        for r in rows:
            tokens, k = r.split(), 0
            for name, _, item in el["props"]:
                if item is None:
                    cols[name].append(float(tokens[k]))
                    k += 1
                else:
                    n = int(tokens[k])
                    cols[name].append([int(t) for t in tokens[k + 1 : k + 1 + n]])
                    k += 1 + n
        out[el["name"]] = cols
    return out


def _ply_binary(buf: bytes, elements: list[dict], endian: str) -> dict[str, dict]:
    out, offset = {}, 0
    for el in elements:
        props, count = el["props"], el["count"]
        if all(p[2] is None for p in props):
            dtype = np.dtype([(p[0], endian + p[1]) for p in props])
            arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
            out[el["name"]] = {p[0]: arr[p[0]] for p in props}
            offset += dtype.itemsize * count
            continue
        arr = None
        lists = [i for i, prop in enumerate(props) if prop[2] is not None]
        if len(lists) == 1 and count > 0:  # fast path: all lists as long as the first
            head = sum(np.dtype(kind).itemsize for _, kind, _ in props[: lists[0]])
            name, kind, item = props[lists[0]]
            if offset + head + np.dtype(kind).itemsize <= len(buf):
                first = int(np.frombuffer(buf, endian + kind, count=1, offset=offset + head)[0])
                fields = [(pn, endian + pk) for pn, pk, _ in props[: lists[0]]]
                fields += [(f"{name}__n", endian + kind), (name, endian + item, (first,))]
                fields += [(pn, endian + pk) for pn, pk, _ in props[lists[0] + 1 :]]
                dtype = np.dtype(fields)
                if offset + dtype.itemsize * count <= len(buf):
                    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
                    if (arr[f"{name}__n"] != first).any():
                        arr = None
        if arr is not None:
            out[el["name"]] = {prop[0]: arr[prop[0]] for prop in props}
            offset += arr.dtype.itemsize * count
            continue
        cols: dict[str, list] = {p[0]: [] for p in props}
        for _ in range(count):  # mixed polygon sizes: one row at a time
            for name, kind, item in props:
                value = np.frombuffer(buf, endian + kind, count=1, offset=offset)[0]
                offset += np.dtype(kind).itemsize
                if item is None:
                    cols[name].append(value)
                else:
                    n = int(value)
                    cols[name].append(np.frombuffer(buf, endian + item, n, offset).tolist())
                    offset += np.dtype(item).itemsize * n
        out[el["name"]] = cols
    return out


def _triangulate(polygons) -> np.ndarray:
    """Fan-triangulate a list/array of polygons; polygons with < 3 corners are dropped."""
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        polys = polygons.astype(np.int64)
        if polys.shape[1] < 3:
            return np.zeros((0, 3), np.int64)
        return np.concatenate(
            [polys[:, [0, k, k + 1]] for k in range(1, polys.shape[1] - 1)], axis=0
        )
    tris = [(p[0], p[k], p[k + 1]) for p in polygons if len(p) >= 3 for k in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.clip(np.round(values.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if values.dtype == np.uint8:
        return values
    scale = 255.0 / np.iinfo(values.dtype).max
    return np.clip(np.round(values.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def _read_ply(path: Path):
    data = path.read_bytes()
    fmt, elements, body = _ply_header(data, path)
    try:
        if fmt == "ascii":
            parsed = _ply_ascii(data[body:], elements)
            for el in elements:  # ascii values were read as float64: restore the types
                for name, kind, item in el["props"]:
                    if item is None:
                        parsed[el["name"]][name] = np.asarray(parsed[el["name"]][name]).astype(kind)
        else:
            endian = "<" if fmt == "binary_little_endian" else ">"
            parsed = _ply_binary(data[body:], elements, endian)
    except (ValueError, IndexError, struct.error) as err:
        if isinstance(err, BadInputError):
            raise BadInputError(f"path: {str(path)!r}: {err}") from None
        raise BadInputError(f"path: {str(path)!r} is a truncated or malformed PLY: {err}") from None
    vert = parsed.get("vertex")
    if vert is None or not {"x", "y", "z"} <= set(vert):
        raise BadInputError(f"path: {str(path)!r} has no vertex element with x, y, z.")
    vertices = np.stack([np.asarray(vert[k], dtype=np.float64) for k in "xyz"], axis=1)
    face = parsed.get("face", {})
    key = next((k for k in ("vertex_indices", "vertex_index") if k in face), None)
    if key is None:
        raise BadInputError(
            f"path: {str(path)!r} has no faces (a point cloud?); read_mesh reads triangle "
            "meshes (element face with a vertex_indices list)."
        )
    faces = _triangulate(face[key])
    colors = None
    for names in _COLOR_NAMES:
        if set(names) <= set(vert):
            colors = np.stack([_to_uint8(np.asarray(vert[k])) for k in names], axis=1)
            break
    return vertices, faces, colors


# ----------------------------------------------------------------------------- GLB

_GLTF_COMPONENTS = {5120: "i1", 5121: "u1", 5122: "i2", 5123: "u2", 5125: "u4", 5126: "f4"}
_GLTF_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def _gltf_accessor(doc: dict, binary: bytes, index: int, path: Path) -> np.ndarray:
    acc = doc["accessors"][index]
    if "sparse" in acc or "bufferView" not in acc:
        raise BadInputError(f"path: {str(path)!r}: sparse or view-less accessors are not read.")
    view = doc["bufferViews"][acc["bufferView"]]
    if view.get("buffer", 0) != 0 or "uri" in doc["buffers"][view.get("buffer", 0)]:
        raise BadInputError(
            f"path: {str(path)!r} keeps data in an external buffer; only the GLB's own BIN "
            "chunk is read."
        )
    kind = np.dtype("<" + _GLTF_COMPONENTS[acc["componentType"]])
    width, count = _GLTF_WIDTH[acc["type"]], acc["count"]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride") or kind.itemsize * width
    rows = np.ndarray(
        (count, width), dtype=kind, buffer=binary, offset=start, strides=(stride, kind.itemsize)
    ).copy()
    if acc.get("normalized") and kind.kind in "iu":
        rows = np.maximum(rows / np.iinfo(kind).max, -1.0)
    return rows


def _node_matrices(doc: dict) -> list[tuple[int, np.ndarray]]:
    """(mesh index, world matrix) of every node holding a mesh in the default scene."""

    def local(node) -> np.ndarray:
        if "matrix" in node:
            return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major
        x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        m = np.eye(4)
        m[:3, :3] = rot * np.asarray(node.get("scale", (1.0, 1.0, 1.0)))[None, :]
        m[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
        return m

    nodes = doc.get("nodes", [])
    scenes = doc.get("scenes")
    if scenes:
        roots = scenes[doc.get("scene", 0)].get("nodes", [])
    else:
        children = {c for n in nodes for c in n.get("children", [])}
        roots = [i for i in range(len(nodes)) if i not in children]
    out, stack = [], [(i, np.eye(4)) for i in roots]
    while stack:
        i, parent = stack.pop()
        world = parent @ local(nodes[i])
        if "mesh" in nodes[i]:
            out.append((nodes[i]["mesh"], world))
        stack.extend((c, world) for c in nodes[i].get("children", []))
    if not out and not nodes:
        out = [(k, np.eye(4)) for k in range(len(doc.get("meshes", [])))]
    return out


def _read_glb(path: Path):
    data = path.read_bytes()
    if len(data) < 20 or data[:4] != b"glTF":
        raise BadInputError(f"path: {str(path)!r} is not a binary glTF (.glb) file.")
    _, version, _ = struct.unpack_from("<4sII", data, 0)
    if version != 2:
        raise BadInputError(f"path: {str(path)!r} is glTF version {version}; 2 is read.")
    doc, binary, pos = None, b"", 12
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from("<I4s", data, pos)
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"JSON":
            doc = json.loads(chunk.decode("utf-8"))
        elif kind == b"BIN\x00":
            binary = chunk
        pos += 8 + length
    if doc is None:
        raise BadInputError(f"path: {str(path)!r} has no JSON chunk.")
    # glTF is y-up; return z-up like the PLY files (inverse of write_glb's node rotation)
    y_to_z = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    verts, faces, cols, any_color, offset = [], [], [], False, 0
    for mesh_index, world in _node_matrices(doc):
        for prim in doc["meshes"][mesh_index].get("primitives", []):
            if prim.get("mode", 4) != 4:
                mode = prim.get("mode")
                logger.warning("%s: a primitive of mode %s (not triangles) is skipped.", path, mode)
                continue
            attrs = prim.get("attributes", {})
            if "POSITION" not in attrs:
                continue
            pos3 = _gltf_accessor(doc, binary, attrs["POSITION"], path).astype(np.float64)
            homog = np.c_[pos3, np.ones(len(pos3))] @ (y_to_z @ world).T
            if "indices" in prim:
                idx = _gltf_accessor(doc, binary, prim["indices"], path).astype(np.int64)
            else:
                idx = np.arange(len(pos3), dtype=np.int64)
            if "COLOR_0" in attrs:
                c = _gltf_accessor(doc, binary, attrs["COLOR_0"], path)[:, :3]
                color, any_color = _to_uint8(np.asarray(c, dtype=np.float64)), True
            else:
                material = {}
                if "material" in prim:
                    material = doc.get("materials", [])[prim["material"]]
                factor = material.get("pbrMetallicRoughness", {}).get("baseColorFactor")
                any_color |= factor is not None
                rgb = factor[:3] if factor is not None else [DEFAULT_GREY] * 3
                color = np.tile(_to_uint8(np.asarray(rgb, dtype=np.float64)), (len(pos3), 1))
            verts.append(homog[:, :3])
            faces.append(idx.reshape(-1, 3) + offset)
            cols.append(color)
            offset += len(pos3)
    if not faces:
        raise BadInputError(f"path: {str(path)!r} holds no triangle primitive.")
    colors = np.concatenate(cols) if any_color else None
    return np.concatenate(verts), np.concatenate(faces), colors


def read_mesh(path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a triangle mesh with optional per-vertex colours from ``.ply`` or ``.glb``.

    PLY: ascii or binary (either byte order); vertex ``x, y, z`` and ``red, green, blue``
    (also ``r, g, b`` or ``diffuse_*``; floats are taken as 0..1); faces from a
    ``vertex_indices`` / ``vertex_index`` list, polygons fan-triangulated; other elements
    skipped. GLB: every triangle primitive of the default scene with its node transforms,
    ``POSITION``, ``COLOR_0`` (float or normalised integers; the stored values are taken as
    display colours with no linear-to-sRGB step, as Shap-E and
    :func:`~braindecode_suite.reconstruction.shape3d.write_glb` store them, so a PLY and a GLB
    of one export read the same) or the material's ``baseColorFactor``, and ``indices``.

    Parameters
    ----------
    path : str | PathLike
        A ``.ply`` or ``.glb`` file.

    Returns
    -------
    vertices : ndarray of shape (n_vertices, 3), float64
        In a z-up frame: PLY coordinates as stored; glTF's y-up scene is turned back to z-up
        (``(x, y, z) -> (x, -z, y)``), the inverse of the node rotation ``write_glb`` adds.
    faces : ndarray of shape (n_faces, 3), int64
    colors : ndarray of shape (n_vertices, 3), uint8, or None
        None when the file has no colours.
    """
    path = check_path("path", path, kind="file")
    suffix = path.suffix.lower()
    check_option("path suffix", suffix, MESH_SUFFIXES)
    try:
        vertices, faces, colors = _read_ply(path) if suffix == ".ply" else _read_glb(path)
    except BadInputError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, struct.error) as err:
        raise BadInputError(
            f"path: {str(path)!r} is a truncated or malformed {suffix} file ({err!r})."
        ) from None
    if len(faces) == 0:
        raise BadInputError(f"path: {str(path)!r} has no triangles.")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise BadInputError(
            f"path: {str(path)!r}: faces index vertices {faces.min()}..{faces.max()}, but "
            f"there are {len(vertices)} vertices."
        )
    if not np.isfinite(vertices).all():
        raise BadInputError(f"path: {str(path)!r} has NaN or infinite vertex coordinates.")
    return vertices, faces, colors


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


# ----------------------------------------------------------------------------- rendering


def _check_mesh(vertices, faces, colors):
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or v.dtype.kind not in "iuf":
        raise BadInputError(
            f"vertices must be a numeric array of shape (n_vertices >= 1, 3), got shape "
            f"{v.shape} and dtype {v.dtype}."
        )
    if not np.isfinite(v).all():
        raise BadInputError("vertices holds NaN or infinite values.")
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.dtype.kind not in "iu":
        raise BadInputError(
            f"faces must be integer vertex indices of shape (n_faces >= 1, 3), got shape "
            f"{f.shape} and dtype {f.dtype}."
        )
    if f.min() < 0 or f.max() >= len(v):
        raise BadInputError(
            f"faces must index vertices 0..{len(v) - 1}, got indices {f.min()}..{f.max()}."
        )
    if colors is None:
        c = np.full(v.shape, DEFAULT_GREY)
    else:
        c = np.asarray(colors)
        if c.shape != v.shape:
            raise BadInputError(
                f"colors must have shape {v.shape} (RGB per vertex) or be None, got {c.shape}."
            )
        if c.dtype == np.uint8:
            c = c / 255.0
        elif c.dtype.kind == "f" and np.isfinite(c).all() and c.min() >= 0 and c.max() <= 1:
            c = c.astype(np.float64)
        else:
            raise BadInputError(
                f"colors must be uint8 0..255 or floats in [0, 1], got dtype {c.dtype}."
            )
    return v.astype(np.float64), f.astype(np.int64), c


def _cameras(n_views: int, elevation: float):
    """Per view: eye position, right, down and forward unit vectors (object at the origin)."""
    e = math.radians(elevation)
    out = []
    for k in range(n_views):
        theta = 2.0 * math.pi * k / n_views
        eye = CAMERA_DISTANCE * np.array(
            [-math.sin(theta) * math.cos(e), -math.cos(theta) * math.cos(e), math.sin(e)]
        )
        forward = -eye / np.linalg.norm(eye)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        out.append((eye, right, down, forward))
    return out


def _rasterize(screen, inv_z, faces, size: int):
    """Nearest triangle per pixel: (size * size,) int64 face index, -1 where empty.

    ``screen`` (V, 2) pixel coordinates (pixel (r, c) has its centre at (c + .5, r + .5)),
    ``inv_z`` (V,) 1 / depth. Each chunk tests every pixel centre inside each triangle's
    bounding box; the z-test keeps the largest ``(1/z bits << 32) | face`` per pixel.
    """
    import torch

    dev = screen.device
    p = screen[faces]  # (F, 3, 2)
    iz = inv_z[faces]  # (F, 3)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    lo = torch.ceil(p.amin(1) - 0.5).clamp(min=0).long()  # first pixel centre >= min
    hi = torch.floor(p.amax(1) - 0.5).clamp(max=size - 1).long()  # last centre <= max
    width = (hi[:, 0] - lo[:, 0] + 1).clamp(min=0)
    height = (hi[:, 1] - lo[:, 1] + 1).clamp(min=0)
    count = torch.where((area.abs() > 1e-12) & (iz > 0).all(1), width * height, 0)
    keep = torch.nonzero(count).squeeze(1)
    best = torch.full((size * size,), -1, dtype=torch.int64, device=dev)
    if len(keep) == 0:
        return best
    csum = torch.cumsum(count[keep], 0).cpu().numpy()
    starts = [0]
    while starts[-1] < len(keep):  # about _CHUNK_TESTS tests a chunk (a bigger face alone)
        done = csum[starts[-1] - 1] if starts[-1] else 0
        nxt = int(np.searchsorted(csum, done + _CHUNK_TESTS, side="right"))
        starts.append(max(nxt, starts[-1] + 1))
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        idx = keep[a:b]
        cnt = count[idx]
        tri = torch.repeat_interleave(torch.arange(len(idx), device=dev), cnt)
        first = torch.cumsum(cnt, 0) - cnt
        local = torch.arange(len(tri), device=dev) - first[tri]
        f = idx[tri]
        w = width[f]
        col = lo[f, 0] + local % w
        row = lo[f, 1] + local // w
        px = col.to(screen.dtype) + 0.5
        py = row.to(screen.dtype) + 0.5
        pf = p[f]
        bary = []
        for i, j in ((1, 2), (2, 0), (0, 1)):  # weight of corner k = area opposite it
            bary.append(
                (pf[:, j, 0] - pf[:, i, 0]) * (py - pf[:, i, 1])
                - (pf[:, j, 1] - pf[:, i, 1]) * (px - pf[:, i, 0])
            )
        bary = torch.stack(bary, 1) / area[f, None]
        inside = (bary >= 0).all(1)
        depth = (bary * iz[f]).sum(1).float()
        ok = inside & (depth > 0)
        key = (depth[ok].view(torch.int32).long() << 32) | f[ok]
        best.scatter_reduce_(0, (row * size + col)[ok], key, "amax")
    covered = best >= 0
    best[covered] = best[covered] & 0xFFFFFFFF
    return best


def render_views(
    vertices,
    faces,
    colors=None,
    *,
    n_views: int = 8,
    size: int = 256,
    elevation: float = 20.0,
    background: float = 1.0,
    up: str = "z",
    device: str = "cpu",
) -> np.ndarray:
    """Render a coloured triangle mesh from ``n_views`` viewpoints on an orbit.

    See the module docstring for the camera (field of view :data:`FOV`, distance
    :data:`CAMERA_DISTANCE` from the bounding-box centre, object scaled to the unit sphere),
    the shading (Lambert headlight, :data:`AMBIENT` ambient, two-sided, flat per face) and the
    interpolation (perspective-correct barycentric per-vertex colours).

    Parameters
    ----------
    vertices : ndarray of shape (n_vertices, 3)
    faces : int ndarray of shape (n_faces, 3)
    colors : ndarray of shape (n_vertices, 3) | None
        uint8 0..255 or floats in [0, 1]; None: uniform grey (:data:`DEFAULT_GREY`).
    n_views : int
        Views at azimuths ``2 pi k / n_views``; view 0 looks along +y (from the -y side),
        azimuth growing towards the -x side (as the 3D route's turntables).
    size : int
        Side of the square images in pixels.
    elevation : float
        Camera elevation above the horizontal plane in degrees, in (-90, 90).
    background : float
        Grey level in [0, 1] of empty pixels (1: white).
    up : 'z' | 'y'
        The mesh's vertical axis: 'z' (Shap-E, and what :func:`read_mesh` returns) or 'y'
        (a y-up PLY from another tool; read as ``(x, y, z) -> (x, -z, y)``).
    device : str
        'cpu', 'cuda', 'cuda:N' or 'auto'.

    Returns
    -------
    views : ndarray of shape (n_views, size, size, 3), uint8
    """
    import torch

    v, f, c = _check_mesh(vertices, faces, colors)
    n_views = check_positive_int("n_views", n_views)
    size = check_positive_int("size", size)
    check_option("up", up, ("z", "y"))
    for name, value, lo, hi in (("elevation", elevation, -90.0, 90.0),):
        if not isinstance(value, (int, float)) or not lo < value < hi:
            raise BadInputError(
                f"{name} must be a number of degrees strictly between {lo:g} and {hi:g}, got "
                f"{value!r}."
            )
    if not isinstance(background, (int, float)) or not 0.0 <= background <= 1.0:
        raise BadInputError(f"background must be a grey level in [0, 1], got {background!r}.")
    dev = resolve_device(device)
    if up == "y":
        v = v[:, [0, 2, 1]] * np.array([1.0, -1.0, 1.0])
    used = v[np.unique(f)]
    centre = (used.min(0) + used.max(0)) / 2.0
    radius = float(np.linalg.norm(used - centre, axis=1).max())
    v = (v - centre) / (radius if radius > 0 else 1.0)
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = normals / np.where(norm > 0, norm, 1.0)

    focal = (size / 2.0) / math.tan(FOV / 2.0)
    vt = torch.as_tensor(v, dtype=torch.float64, device=dev)
    ft = torch.as_tensor(f, device=dev)
    ct = torch.as_tensor(c, dtype=torch.float32, device=dev)
    nt = torch.as_tensor(normals, dtype=torch.float64, device=dev)
    out = np.empty((n_views, size, size, 3), dtype=np.uint8)
    with torch.inference_mode():
        for k, (eye, right, down, forward) in enumerate(_cameras(n_views, elevation)):
            basis = torch.as_tensor(np.stack([right, down, forward], 1), device=dev)
            cam = (vt - torch.as_tensor(eye, device=dev)) @ basis  # x right, y down, z depth
            inv_z = 1.0 / cam[:, 2]
            screen = cam[:, :2] * (focal * inv_z)[:, None] + size / 2.0
            face_id = _rasterize(screen, inv_z, ft, size)
            image = torch.full((size * size, 3), float(background), device=dev)
            pix = torch.nonzero(face_id >= 0).squeeze(1)
            if len(pix):
                fid = face_id[pix]
                tri = ft[fid]
                p = screen[tri]  # (m, 3, 2)
                px = (pix % size).double() + 0.5
                py = (pix // size).double() + 0.5
                bary = []
                for i, j in ((1, 2), (2, 0), (0, 1)):
                    bary.append(
                        (p[:, j, 0] - p[:, i, 0]) * (py - p[:, i, 1])
                        - (p[:, j, 1] - p[:, i, 1]) * (px - p[:, i, 0])
                    )
                bary = torch.stack(bary, 1) * inv_z[tri]  # perspective-correct weights
                bary = bary / bary.sum(1, keepdim=True)
                rgb = (bary[:, :, None].float() * ct[tri]).sum(1)
                cos = (nt[fid] @ torch.as_tensor(forward, device=dev)).abs().float()
                image[pix] = rgb * (AMBIENT + (1.0 - AMBIENT) * cos)[:, None]
            image = (image.clamp(0, 1) * 255.0).round().to(torch.uint8)
            out[k] = image.reshape(size, size, 3).cpu().numpy()
    return out


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
