"""The z-buffer rasterizer of :func:`render_views` (why our own: see :mod:`.shape3d`)."""

from __future__ import annotations

import math

import numpy as np

from ..utils.devices import resolve_device
from ..utils.validation import BadInputError, check_mesh, check_option, check_positive_int
from ._meshio import DEFAULT_GREY

#: Field of view of the render camera in radians (horizontal = vertical), as the turntables.
FOV = 0.7
#: Camera distance from the object's centre, the object scaled to the unit sphere: the
#: sphere's silhouette fills 90 % of the half-width of the frame.
CAMERA_DISTANCE = 1.0 / (0.9 * math.sin(FOV / 2.0))
#: Ambient share of the Lambert shading.
AMBIENT = 0.3
#: Candidate (triangle, pixel) tests per rasterizer chunk.
_CHUNK_TESTS = 1 << 22

# ----------------------------------------------------------------------------- rendering


def _check_mesh(vertices, faces, colors):
    v, f = check_mesh(vertices, faces)
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
    return v, f, c


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
