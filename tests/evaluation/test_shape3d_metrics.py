"""3D metrics: the rasterizer against hand-worked camera geometry, mesh files built by hand
with struct/json, and evaluate_3d / evaluate_mesh_folder on generated objects."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from PIL import Image

from braindecode_suite.evaluation import load_network
from braindecode_suite.evaluation.shape3d import (
    AMBIENT,
    CAMERA_DISTANCE,
    FOV,
    evaluate_3d,
    evaluate_mesh_folder,
    read_mesh,
    read_turntable,
    render_views,
)
from braindecode_suite.utils.validation import BadInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
S2 = 1.0 / math.sqrt(2.0)  # half side of a square whose corners lie on the unit circle


def _focal(size):
    return (size / 2.0) / math.tan(FOV / 2.0)


def _n_centres(size, half):
    """Pixel centres c + 0.5 within ``half`` pixels of the image centre, along one axis."""
    return sum(abs(c + 0.5 - size / 2.0) <= half for c in range(size))


def _square(y=0.0, half=S2, colors=(RED, RED, GREEN, GREEN)):
    """A square in the plane y = const (facing a camera on the -y side), corners
    (-h,-h), (-h,+h), (+h,+h), (+h,-h) in (x, z): the first two at x = -h."""
    v = np.array([[-half, y, -half], [-half, y, half], [half, y, half], [half, y, -half]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    return v, f, np.array(colors, dtype=np.uint8)


def _cube(colors=None):
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = np.array([t for q in quads for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))])
    if colors is None:  # red at x = -1, green at x = +1
        colors = np.array([RED] * 4 + [GREEN] * 4, dtype=np.uint8)
    return v, f, colors


def _covered(img):
    return np.any(img != 255, axis=-1)


# ------------------------------------------------------------------------------ rasterizer


@pytest.mark.parametrize("size", [64, 101])
def test_square_facing_camera_covers_the_projected_area(size):
    v, f, c = _square()
    img = render_views(v, f, c, n_views=1, size=size, elevation=0.0)[0]
    # corners at unit distance: no rescaling; the square sits at depth CAMERA_DISTANCE
    half = _focal(size) * S2 / CAMERA_DISTANCE
    assert _covered(img).sum() == _n_centres(size, half) ** 2
    rows, cols = np.nonzero(_covered(img))
    assert rows.min() + rows.max() == size - 1 and cols.min() + cols.max() == size - 1


def test_cube_head_on_shows_its_front_face_only():
    v, f, c = _cube(np.full((8, 3), 200, np.uint8))
    size = 80
    img = render_views(v, f, c, n_views=1, size=size, elevation=0.0)[0]
    s = 1.0 / math.sqrt(3.0)  # the cube scaled to the unit sphere
    half = _focal(size) * s / (CAMERA_DISTANCE - s)  # front face at depth D - s
    assert _covered(img).sum() == _n_centres(size, half) ** 2
    # the front face's normal is the viewing direction: full brightness (Lambert cos = 1)
    assert np.all(img[_covered(img)] == 200)


def test_colours_interpolate_linearly_across_a_facing_square():
    size = 64
    v, f, c = _square()  # red at x = -h, green at x = +h
    img = render_views(v, f, c, n_views=1, size=size, elevation=0.0)[0].astype(float)
    half = _focal(size) * S2 / CAMERA_DISTANCE
    row = size // 2
    for col in range(size):
        u = col + 0.5 - size / 2.0
        if abs(u) < half - 1:
            t = (u + half) / (2 * half)  # fraction of the way from the red to the green edge
            np.testing.assert_allclose(img[row, col], [255 * (1 - t), 255 * t, 0], atol=1.01)
    mid = img[row, size // 2 - 1 : size // 2 + 1].mean(axis=0)  # the two centre columns
    np.testing.assert_allclose(mid, [127.5, 127.5, 0], atol=1.0)


def test_perspective_correct_colours_on_a_tilted_square():
    """Ray/plane intersection by hand: the colour follows the 3D position, not the screen."""
    size, angle = 96, math.radians(50)
    v, f, c = _square()
    rot = np.array(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    )
    img = render_views(v @ rot.T, f, c, n_views=1, size=size, elevation=0.0)[0].astype(float)
    eye = np.array([0.0, -CAMERA_DISTANCE, 0.0])
    right, down, forward = np.eye(3)[0], -np.eye(3)[2], np.eye(3)[1]
    normal, x_axis = rot @ [0, 1, 0], rot @ [1, 0, 0]
    foc, checked = _focal(size), 0
    for r in range(4, size - 4, 3):
        for col in range(4, size - 4, 3):
            d = right * (col + 0.5 - size / 2) / foc + down * (r + 0.5 - size / 2) / foc + forward
            point = eye - (eye @ normal) / (d @ normal) * d
            t = (point @ x_axis + S2) / (2 * S2)
            if not (0.02 < t < 0.98 and abs(point[2]) < S2 - 0.02):
                continue
            rgb = img[r, col]
            assert rgb[1] / (rgb[0] + rgb[1]) == pytest.approx(t, abs=0.012)  # shading cancels
            shade = AMBIENT + (1 - AMBIENT) * abs(normal @ forward)
            assert rgb[0] + rgb[1] == pytest.approx(255 * shade, abs=1.5)
            checked += 1
    assert checked > 100
    # and the tolerance tells the two apart: along the centre row, the affine (screen-space)
    # mix between the projected left and right edges is off by more than 0.03 somewhere
    edges = [rot @ [sign * S2, 0, 0] - eye for sign in (-1, 1)]
    u_left, u_right = (foc * (e @ right) / (e @ forward) for e in edges)
    worst = 0.0
    for col in range(int(u_left) + 1, int(u_right)):
        d = right * (col + 0.5 - size / 2) / foc + forward
        point = eye - (eye @ normal) / (d @ normal) * d
        t_true = (point @ x_axis + S2) / (2 * S2)
        t_affine = (col + 0.5 - size / 2 - u_left) / (u_right - u_left)
        worst = max(worst, abs(t_true - t_affine))
    assert worst > 0.03


@pytest.mark.parametrize("order", [0, 1])
def test_z_buffer_keeps_the_nearer_triangle(order):
    near_v, near_f, _ = _square(y=-0.3, half=0.5)
    far_v, far_f, _ = _square(y=0.3, half=0.7)
    parts = [(near_v, near_f, BLUE), (far_v, far_f, RED)][:: 1 if order == 0 else -1]
    v = np.concatenate([p[0] for p in parts])
    f = np.concatenate([parts[0][1], parts[1][1] + 4])
    c = np.array([p[2] for p in parts for _ in range(4)], dtype=np.uint8)
    img = render_views(v, f, c, n_views=1, size=64, elevation=0.0)[0]
    assert tuple(img[32, 32]) == BLUE  # overlap: the nearer (blue) square
    far_only = np.all(img == RED, axis=-1)
    near_only = np.all(img == BLUE, axis=-1)
    assert far_only.sum() > 0 and near_only.sum() > far_only.sum()


def test_views_follow_the_orbit():
    v, f, c = _cube()
    four = render_views(v, f, c, n_views=4, size=48)
    eight = render_views(v, f, c, n_views=8, size=48)
    np.testing.assert_array_equal(eight[::2], four)  # same azimuths 0, 90, 180, 270
    assert np.abs(four[0].astype(int) - four[1]).mean() > 5  # the views differ
    # view 0 looks along +y: red (x = -1) on the left, green (x = +1) on the right
    row = four[0][24]
    assert row[14][0] > row[14][1] and row[34][1] > row[34][0]
    # azimuth 90 at zero elevation: the camera on the -x side sees the red face only
    side = render_views(v, f, c, n_views=4, size=48, elevation=0.0)[1]
    assert _covered(side).sum() > 100 and np.all(side[_covered(side)][:, 1:] == 0)


def test_symmetric_object_looks_the_same_from_every_quarter_turn():
    v, f, _ = _cube()
    views = render_views(v, f, None, n_views=4, size=64, elevation=30.0)
    for k in range(1, 4):
        assert np.mean(np.all(views[k] == views[0], axis=-1)) > 0.995


def test_up_axis_and_scale_invariance():
    v, f, c = _cube()
    ref = render_views(v, f, c, n_views=2, size=40)
    y_up = v[:, [0, 2, 1]] * [1, 1, -1]  # (x, y, z) z-up -> (x, z, -y) y-up
    np.testing.assert_array_equal(render_views(y_up, f, c, n_views=2, size=40, up="y"), ref)
    moved = v * 3.5 + [10, -4, 2]  # normalised to the unit sphere around the bbox centre
    assert np.mean(render_views(moved, f, c, n_views=2, size=40) == ref) > 0.99


def test_render_speed_5k_faces():
    import time

    nu, nv = 50, 52  # a UV sphere, 5096 faces
    th, ph = np.meshgrid(
        np.linspace(0, np.pi, nu), np.linspace(0, 2 * np.pi, nv, False), indexing="ij"
    )
    v = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    f = [
        t
        for i in range(nu - 1)
        for j in range(nv)
        for t in (
            (i * nv + j, (i + 1) * nv + j, i * nv + (j + 1) % nv),
            (i * nv + (j + 1) % nv, (i + 1) * nv + j, (i + 1) * nv + (j + 1) % nv),
        )
    ]
    start = time.perf_counter()
    views = render_views(v, np.array(f), None, n_views=8, size=256)
    assert time.perf_counter() - start < 5.0
    assert views.shape == (8, 256, 256, 3)
    # a sphere looks like a disc of radius f * tan(asin(1 / D)) from every side
    radius = _focal(256) * math.tan(math.asin(1 / CAMERA_DISTANCE))
    area = _covered(views).sum(axis=(1, 2))
    np.testing.assert_allclose(area, math.pi * radius**2, rtol=0.03)


@pytest.mark.gpu
def test_cuda_renders_like_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    v, f, c = _cube()
    cpu = render_views(v, f, c, n_views=4, size=64)
    gpu = render_views(v, f, c, n_views=4, size=64, device="cuda")
    assert np.mean(np.abs(cpu.astype(int) - gpu) <= 1) > 0.999


def test_render_bad_inputs():
    v, f, c = _cube()
    with pytest.raises(
        BadInputError, match=r"faces must index vertices 0\.\.7, got indices 1\.\.8"
    ):
        render_views(v, f + 1, c)
    with pytest.raises(
        BadInputError, match=r"vertices must be a numeric array .* got shape \(8, 2\)"
    ):
        render_views(v[:, :2], f, c)
    with pytest.raises(BadInputError, match=r"colors must have shape \(8, 3\)"):
        render_views(v, f, c[:4])
    with pytest.raises(BadInputError, match=r"colors must be uint8 0\.\.255 or floats in \[0, 1\]"):
        render_views(v, f, c.astype(float))
    with pytest.raises(BadInputError, match=r"elevation must be .* between -90 and 90, got 90"):
        render_views(v, f, c, elevation=90)
    with pytest.raises(BadInputError, match=r"background must be a grey level in \[0, 1\], got 2"):
        render_views(v, f, c, background=2)
    with pytest.raises(BadInputError, match="Allowed values are 'z', 'y'"):
        render_views(v, f, c, up="x")
    with pytest.raises(BadInputError, match="n_views must be >= 1, got 0"):
        render_views(v, f, c, n_views=0)


# ------------------------------------------------------------------------------ mesh files

V4 = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.5], [0.0, 1.0, -0.25]])
C4 = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)
QUAD_AS_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]])


def _ply_header(fmt, n_faces=1, extra=""):
    return (
        f"ply\nformat {fmt} 1.0\ncomment made by hand\nelement vertex 4\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {n_faces}\nproperty list uchar int vertex_indices\n{extra}end_header\n"
    ).encode()


def test_read_ascii_ply_with_a_quad(tmp_path):
    body = "".join(
        f"{x} {y} {z} {r} {g} {b}\n" for (x, y, z), (r, g, b) in zip(V4, C4, strict=True)
    )
    path = tmp_path / "quad.ply"
    path.write_bytes(_ply_header("ascii") + (body + "4 0 1 2 3\n").encode())
    v, f, c = read_mesh(path)
    np.testing.assert_allclose(v, V4)
    np.testing.assert_array_equal(f, QUAD_AS_TRIANGLES)  # fan triangulation
    np.testing.assert_array_equal(c, C4)
    assert c.dtype == np.uint8 and f.dtype.kind == "i"


@pytest.mark.parametrize("endian", ["<", ">"])
def test_read_binary_ply_triangles_and_mixed_polygons(tmp_path, endian):
    fmt = "binary_little_endian" if endian == "<" else "binary_big_endian"
    verts = b"".join(struct.pack(endian + "3f3B", *p, *col) for p, col in zip(V4, C4, strict=True))
    tris = struct.pack(endian + "B3i", 3, 0, 1, 2) + struct.pack(endian + "B3i", 3, 0, 2, 3)
    path = tmp_path / "tri.ply"
    path.write_bytes(_ply_header(fmt, 2) + verts + tris)
    v, f, c = read_mesh(path)
    np.testing.assert_allclose(v, V4)
    np.testing.assert_array_equal(f, QUAD_AS_TRIANGLES)
    np.testing.assert_array_equal(c, C4)
    # a quad then a triangle (the row-by-row path), and an element after the faces
    mixed = struct.pack(endian + "B4i", 4, 0, 1, 2, 3) + struct.pack(endian + "B3i", 3, 1, 2, 3)
    extra = "element edge 1\nproperty int vertex1\nproperty int vertex2\n"
    path.write_bytes(_ply_header(fmt, 2, extra) + verts + mixed + struct.pack(endian + "2i", 0, 1))
    _, f, _ = read_mesh(path)
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3], [1, 2, 3]])


def test_read_ply_float_colours_and_no_colours(tmp_path):
    head = (
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty double x\nproperty double y\n"
        "property double z\nproperty float r\nproperty float g\nproperty float b\n"
        "element face 1\nproperty list uchar uint vertex_index\nend_header\n"
    )
    path = tmp_path / "f.ply"
    path.write_text(head + "0 0 0 1 0 0.5\n1 0 0 0 1 0\n0 1 0 0 0 1\n3 0 1 2\n")
    _, _, c = read_mesh(path)
    np.testing.assert_array_equal(c[0], [255, 0, 128])
    path.write_text(
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
    )
    assert read_mesh(path)[2] is None


def _glb(doc: dict, binary: bytes) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return (
        struct.pack("<4sII", b"glTF", 2, total)
        + struct.pack("<I4s", len(js), b"JSON")
        + js
        + struct.pack("<I4s", len(binary), b"BIN\0")
        + binary
    )


def test_read_glb_built_by_hand(tmp_path):
    pos = V4.astype("<f4").tobytes()  # 48 bytes
    col = np.c_[C4, np.full(4, 255)].astype("<u1").tobytes()  # normalised uint8 RGBA, 16 bytes
    idx = QUAD_AS_TRIANGLES.astype("<u2").tobytes()  # 12 bytes
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"children": [1], "translation": [0, 0, 2]}, {"mesh": 0, "scale": [2, 2, 2]}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "indices": 2}]}],
        "buffers": [{"byteLength": 76}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 48},
            {"buffer": 0, "byteOffset": 48, "byteLength": 16},
            {"buffer": 0, "byteOffset": 64, "byteLength": 12},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3"},
            {
                "bufferView": 1,
                "componentType": 5121,
                "normalized": True,
                "count": 4,
                "type": "VEC4",
            },
            {"bufferView": 2, "componentType": 5123, "count": 6, "type": "SCALAR"},
        ],
    }
    path = tmp_path / "m.glb"
    path.write_bytes(_glb(doc, pos + col + idx))
    v, f, c = read_mesh(path)
    world = V4 * 2 + [0, 0, 2]  # glTF y-up world; read_mesh returns z-up: (x, y, z) -> (x, -z, y)
    np.testing.assert_allclose(v, np.c_[world[:, 0], -world[:, 2], world[:, 1]], atol=1e-6)
    np.testing.assert_array_equal(f, QUAD_AS_TRIANGLES)
    np.testing.assert_array_equal(c, C4)


def test_package_writers_read_back(tmp_path):
    from braindecode_suite.reconstruction.shape3d import write_glb, write_ply

    rng = np.random.default_rng(0)
    v = rng.normal(size=(30, 3)).astype(np.float32)
    f = rng.integers(0, 30, size=(40, 3))
    c = rng.random((30, 3)).astype(np.float32)
    vp, fp, cp = read_mesh(write_ply(tmp_path / "a.ply", v, f, c))
    vg, fg, cg = read_mesh(write_glb(tmp_path / "a.glb", v, f, c))
    for vv, ff in ((vp, fp), (vg, fg)):
        np.testing.assert_allclose(vv, v, atol=1e-6)  # the GLB's z-up -> y-up node undone
        np.testing.assert_array_equal(ff, f)
    np.testing.assert_array_equal(cp, np.round(c * 255.499))  # diffusers' export_to_ply
    assert np.abs(cg.astype(int) - np.round(c * 255)).max() == 0


def test_read_mesh_bad_inputs(tmp_path):
    with pytest.raises(BadInputError, match=r"path: .*nope\.ply' does not exist"):
        read_mesh(tmp_path / "nope.ply")
    (tmp_path / "m.obj").write_text("v 0 0 0\n")
    with pytest.raises(BadInputError, match=r"path suffix.*Allowed values are '\.ply', '\.glb'"):
        read_mesh(tmp_path / "m.obj")
    (tmp_path / "pc.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
        "property float z\nend_header\n0 0 0\n"
    )
    with pytest.raises(BadInputError, match="has no faces"):
        read_mesh(tmp_path / "pc.ply")
    verts = b"".join(struct.pack("<3f3B", *p, *col) for p, col in zip(V4, C4, strict=True))
    (tmp_path / "cut.ply").write_bytes(_ply_header("binary_little_endian") + verts[:20])
    with pytest.raises(BadInputError, match="truncated or malformed"):
        read_mesh(tmp_path / "cut.ply")
    (tmp_path / "bad.ply").write_bytes(
        _ply_header("binary_little_endian") + verts + struct.pack("<B3i", 3, 0, 1, 9)
    )
    with pytest.raises(BadInputError, match="faces index vertices 0..9, but there are 4"):
        read_mesh(tmp_path / "bad.ply")
    (tmp_path / "x.glb").write_bytes(b"not a glb at all, no")
    with pytest.raises(BadInputError, match=r"is not a binary glTF \(\.glb\) file"):
        read_mesh(tmp_path / "x.glb")


# ------------------------------------------------------------------------------ turntables


def test_read_turntable_undoes_merged_frames(tmp_path):
    from braindecode_suite.reconstruction.shape3d import write_turntable_gif

    frames = np.zeros((6, 16, 16, 3), np.uint8)
    for k, value in enumerate([0, 0, 80, 160, 160, 240]):  # two pairs of equal frames
        frames[k] = value
    path = write_turntable_gif(tmp_path / "t_turntable.gif", frames)
    with Image.open(path) as im:
        assert im.n_frames == 4  # Pillow merged the equal neighbours
    out = read_turntable(path)
    assert out.shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(out[:, 0, 0, 0], [0, 0, 80, 160, 160, 240])
    np.testing.assert_array_equal(
        read_turntable(path, 3)[:, 0, 0, 0], [0, 80, 160]
    )  # frames 0, 2, 4
    with pytest.raises(BadInputError, match="n_views=7 but .* has only 6 frames"):
        read_turntable(path, 7)


# ------------------------------------------------------------------------------ evaluate_3d


@pytest.fixture(scope="module")
def tiny_clip():
    return load_network("clip_vit_l14", weights=None, model_name="tiny", device="cpu")


def _images(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(b).resize((size, size))) for b in base])


def test_identical_views_give_clip_sim_one_and_full_identification(tiny_clip):
    gt = _images(6)
    views = np.repeat(gt[:, None], 3, axis=1)
    res = evaluate_3d(
        views, gt, metrics=["PixCorr", "CLIP", "CLIP-sim"], clip=tiny_clip, n_boot=100,
        device="cpu", per_item=True,
    )  # fmt: skip
    assert res["CLIP-sim"]["mean"] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(res["CLIP-sim"]["per_view"], 1.0, atol=1e-5)
    assert res["CLIP"]["mean"] == 1.0  # two-way identification, same tiny CLIP network
    assert res["PixCorr"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert res["CLIP-sim chance"]["mean"] < 1.0
    assert res["CLIP-sim"]["chance"] == res["CLIP-sim chance"]["mean"]
    assert res["_meta"]["n_views"] == 3 and res["_meta"]["n_samples"] == 3
    assert "random weights" in res["CLIP-sim"]["weights"]


def test_clip_sim_matches_a_hand_computed_cosine():
    gt = _images(3, size=8, seed=1)
    views = _images(6, size=8, seed=2).reshape(3, 2, 8, 8, 3)

    def embed(images):  # mean colour per quadrant: a transparent embedding
        x = np.asarray(images, dtype=float)
        return x.reshape(len(x), 2, 4, 2, 4, 3).mean(axis=(2, 4)).reshape(len(x), -1)

    res = evaluate_3d(views, gt, metrics=["CLIP-sim"], clip=embed, n_boot=50, per_item=True)
    e_v, e_g = embed(views.reshape(6, 8, 8, 3)).reshape(3, 2, -1), embed(gt)
    cos = np.array(
        [
            [[e_v[i, k] @ e_g[j] / np.linalg.norm(e_v[i, k]) / np.linalg.norm(e_g[j])
              for k in range(2)] for j in range(3)]
            for i in range(3)
        ]
    )  # fmt: skip
    own = np.array([cos[i, i].mean() for i in range(3)])
    chance = np.array([np.mean([cos[i, j].mean() for j in range(3) if j != i]) for i in range(3)])
    np.testing.assert_allclose(res["CLIP-sim"]["values"], own)
    np.testing.assert_allclose(res["CLIP-sim chance"]["values"], chance)
    assert res["CLIP-sim"]["weights"] == "user function embed"
    assert set(res) == {"CLIP-sim", "CLIP-sim chance", "_meta"}


def test_unrelated_views_score_at_chance(tiny_clip):
    gt = _images(24, seed=3)
    views = _images(24 * 2, seed=4).reshape(24, 2, 32, 32, 3)
    res = evaluate_3d(views, gt, metrics=["CLIP", "CLIP-sim"], clip=tiny_clip, n_boot=200)
    lo, hi = res["CLIP-sim"]["ci"]
    assert lo - 0.02 < res["CLIP-sim chance"]["mean"] < hi + 0.02
    assert abs(res["CLIP-sim"]["mean"] - res["CLIP-sim chance"]["mean"]) < 0.05
    assert 0.3 < res["CLIP"]["mean"] < 0.7  # two-way chance 50 %


def test_missing_clip_weights_are_reported_not_replaced():
    gt = _images(3)
    views = np.repeat(gt[:, None], 2, axis=1)
    res = evaluate_3d(views, gt, metrics=["PixCorr", "CLIP", "CLIP-sim"], n_boot=20, device="cpu")
    for key in ("CLIP-sim", "CLIP-sim chance", "CLIP"):
        assert set(res[key]) >= {"missing"} and "mean" not in res[key]
        assert "not in the Hugging Face cache" in res[key]["missing"]
    assert res["PixCorr"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert "missing" in res["_meta"]["clip"]


def test_evaluate_3d_bad_inputs(tiny_clip):
    gt = _images(3)
    views = np.repeat(gt[:, None], 2, axis=1)
    with pytest.raises(BadInputError, match=r"views must have shape \(n_objects, n_views, "):
        evaluate_3d(gt, gt, clip=tiny_clip)
    with pytest.raises(BadInputError, match="views has 3 objects but gt has 2 stimuli"):
        evaluate_3d(views, gt[:2], clip=tiny_clip)
    with pytest.raises(BadInputError, match="'metrics' parameter.*Did you mean 'CLIP-sim'"):
        evaluate_3d(views, gt, metrics=["CLIP-sin"], clip=tiny_clip)
    with pytest.raises(BadInputError, match="clip must be None .* or a callable"):
        evaluate_3d(views, gt, metrics=["CLIP-sim"], clip="ViT-L-14")
    with pytest.raises(BadInputError, match=r"clip must return embeddings \(n_images, dim\)"):
        evaluate_3d(views, gt, metrics=["CLIP-sim"], clip=lambda x: np.ones(3))
    with pytest.raises(BadInputError, match="networks has an entry for 'Alex2', which is not"):
        evaluate_3d(views, gt, metrics=["CLIP-sim"], clip=tiny_clip, networks={"Alex2": len})
    with pytest.raises(BadInputError, match="must be uint8 .* in \\[0, 1\\]"):
        evaluate_3d(views * 2.0, gt, clip=tiny_clip)


# ------------------------------------------------------------------------------ folders


def _objects():
    """A red/green cube, a blue-ish square pyramid and a coloured tetrahedron."""
    cube = _cube()
    pv = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [0, 0, 1.2]], float)
    pf = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4], [0, 2, 1], [0, 3, 2]])
    pc = np.array([BLUE, BLUE, (0, 128, 255), (0, 128, 255), (255, 255, 0)], np.uint8)
    tv = np.array([[1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]], float)
    tf = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    tc = np.array([RED, GREEN, BLUE, (200, 200, 200)], np.uint8)
    return {"cube": cube, "pyramid": (pv, pf, pc), "tetra": (tv, tf, tc)}


def test_evaluate_mesh_folder_end_to_end(tmp_path, tiny_clip):
    from braindecode_suite.reconstruction.shape3d import write_glb, write_ply, write_turntable_gif

    meshes, stimuli = tmp_path / "meshes", tmp_path / "stimuli"
    meshes.mkdir()
    stimuli.mkdir()
    objs = _objects()
    write_ply(meshes / "cube.ply", objs["cube"][0], objs["cube"][1], objs["cube"][2] / 255.0)
    write_glb(
        meshes / "pyramid.glb", objs["pyramid"][0], objs["pyramid"][1], objs["pyramid"][2] / 255.0
    )
    # the tetrahedron has no mesh file: only its turntable (8 frames rendered here)
    write_turntable_gif(
        meshes / "tetra_turntable.gif", render_views(*objs["tetra"], n_views=8, size=48)
    )
    for name, (v, f, c) in objs.items():  # stimulus = the object's first view
        Image.fromarray(render_views(v, f, c, n_views=1, size=64)[0]).save(stimuli / f"{name}.png")
    res = evaluate_mesh_folder(
        meshes, stimuli, tmp_path / "out", n_views=4, size=64, metrics=["PixCorr", "CLIP", "CLIP-sim"],
        clip=tiny_clip, n_boot=50, device="cpu",
    )  # fmt: skip
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["CLIP-sim"]["mean"] == pytest.approx(res["CLIP-sim"]["mean"])
    meta = saved["_meta"]
    assert meta["from_turntable"] == ["tetra"]
    sources = {o["name"]: o["source"] for o in meta["objects"]}
    assert sources == {"cube": "ply", "pyramid": "glb", "tetra": "turntable"}
    per_view = np.array(saved["CLIP-sim"]["per_view"])
    assert per_view.shape == (3, 4)
    # view 0 of a mesh object is its stimulus (the PLY's colours are rounded to 8 bits)
    names = [o["name"] for o in meta["objects"]]
    for name in ("cube", "pyramid"):
        assert per_view[names.index(name), 0] == pytest.approx(1.0, abs=1e-3)
    for name in names:
        with Image.open(tmp_path / "out" / "views" / f"{name}.png") as im:
            assert im.size == (5 * 128, 128 + 12)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "CLIP-sim" in html and "best by CLIP-sim" in html and "turntable" in html


def test_evaluate_mesh_folder_bad_inputs(tmp_path, tiny_clip):
    from braindecode_suite.reconstruction.shape3d import write_ply

    meshes, stimuli = tmp_path / "m", tmp_path / "s"
    meshes.mkdir()
    stimuli.mkdir()
    with pytest.raises(BadInputError, match="mesh_dir: no meshes"):
        evaluate_mesh_folder(meshes, stimuli, tmp_path / "o", clip=tiny_clip)
    v, f, c = _cube()
    write_ply(meshes / "a.ply", v, f, c / 255.0)
    Image.new("RGB", (8, 8)).save(stimuli / "b.png")
    with pytest.raises(
        BadInputError, match=r"1 object\(s\) without a stimulus image \(e.g. \['a'\]"
    ):
        evaluate_mesh_folder(meshes, stimuli, tmp_path / "o", clip=tiny_clip)
    with pytest.raises(BadInputError, match="'a' has no a_turntable.gif"):
        evaluate_mesh_folder(meshes, stimuli, tmp_path / "o", source="turntable", clip=tiny_clip)
    with pytest.raises(BadInputError, match="'source' parameter"):
        evaluate_mesh_folder(meshes, stimuli, tmp_path / "o", source="gif")
    with pytest.raises(BadInputError, match=r"gt_dir: .*nowhere' does not exist"):
        evaluate_mesh_folder(meshes, tmp_path / "nowhere", tmp_path / "o")


def test_cli_evaluate_3d(tmp_path):
    from typer.testing import CliRunner

    from braindecode_suite.cli import app
    from braindecode_suite.reconstruction.shape3d import write_ply

    meshes, stimuli = tmp_path / "m", tmp_path / "s"
    meshes.mkdir()
    stimuli.mkdir()
    for name, (v, f, c) in _objects().items():
        write_ply(meshes / f"{name}.ply", v, f, c / 255.0)
        Image.fromarray(render_views(v, f, c, n_views=1, size=32)[0]).save(stimuli / f"{name}.png")
    result = CliRunner().invoke(
        app,
        ["evaluate-3d", "--pred", str(meshes), "--gt", str(stimuli), "--views", "2", "--size", "32",
         "--metrics", "PixCorr", "--metrics", "CLIP-sim", "--n-boot", "20", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "CLIP-sim: not computed" in result.output and "PixCorr" in result.output
    saved = json.loads((tmp_path / "m_eval3d" / "metrics.json").read_text())
    assert saved["PixCorr"]["n"] == 3 and "missing" in saved["CLIP-sim"]


def test_cli_evaluate_3d_help_and_bad_input(monkeypatch, capsys, tmp_path):
    import sys

    from braindecode_suite.cli import main

    def bds(*args):
        monkeypatch.setattr(sys, "argv", ["bds", *args])
        with pytest.raises(SystemExit) as info:
            main()
            raise SystemExit(0)
        out = capsys.readouterr()
        return info.value.code or 0, out.out + out.err

    code, out = bds("evaluate-3d", "--help")
    assert code == 0 and "--views" in out and "CLIP-sim" in out
    code, out = bds("evaluate-3d", "--pred", str(tmp_path / "none"), "--gt", str(tmp_path))
    assert code == 2 and "mesh_dir" in out and "does not exist" in out
