"""Reading ``.ply`` and ``.glb`` meshes with numpy (see :mod:`.shape3d`; trimesh is not a
dependency of this package)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from ..utils.logging import logger
from ..utils.validation import BadInputError, check_option, check_path

#: Mesh files :func:`read_mesh` reads.
MESH_SUFFIXES = (".ply", ".glb")
#: Colour of meshes without vertex colours.
DEFAULT_GREY = 0.8

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
