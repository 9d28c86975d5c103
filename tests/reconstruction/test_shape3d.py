"""Brain3D-style Shap-E image-to-3D with a tiny random pipeline, and the mesh writers."""

from __future__ import annotations

import json
import logging
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from braindecode_suite.reconstruction.shape3d import (  # noqa: E402
    NoSurfaceError,
    ShapELatents,
    _turntable_cameras,
    export_meshes,
    load_shap_e_pipeline,
    reconstruct_3d,
    write_glb,
    write_ply,
    write_turntable_gif,
)
from braindecode_suite.utils.io import TMP_MARKER  # noqa: E402
from braindecode_suite.utils.validation import BadInputError  # noqa: E402

N_TOKENS, DIM = 16, 16  # the tiny image encoder: (32 px / patch 8)^2 tokens of width 16
LATENT_SHAPE = (32, 16)
FAST = dict(num_inference_steps=2)
# Heun starts from noise * init_noise_sigma (~400 for Shap-E's schedule), where float32
# rounding is ~3e-5; differently blocked batched matmuls leave ~2e-4 on latents in [-1, 1]
ATOL = 1e-3
RENDER = dict(n_frames=5, frame_size=12, grid_size=16, n_coarse_samples=8, n_fine_samples=8)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shap_e_cache")


@pytest.fixture(scope="module")
def pipe(tiny_cache):
    # module-scoped: build the tiny pipeline once, into a private cache
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BDS_CACHE_DIR", str(tiny_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_shap_e_pipeline("tiny", device="cpu")


def _embeds(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, N_TOKENS, DIM)).astype(np.float32)


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 40, 48, 3), dtype=np.uint8)


# ------------------------------------------------------------------------ loading
def test_tiny_is_cached_and_seeded(pipe, tiny_cache, monkeypatch):
    assert (tiny_cache / "tiny" / "shap-e-img2img-s0-v1" / "model_index.json").is_file()
    assert type(pipe).__name__ == "ShapEImg2ImgPipeline"
    assert pipe.prior.config.embedding_proj_dim == DIM
    # a fresh cache rebuilds the same weights for the same seed, others for another seed
    monkeypatch.setenv("BDS_CACHE_DIR", str(tiny_cache / "other"))
    again = load_shap_e_pipeline("tiny:0", device="cpu")
    other = load_shap_e_pipeline("tiny:1", device="cpu")
    w = pipe.prior.proj_in.weight
    torch.testing.assert_close(again.prior.proj_in.weight, w, rtol=0, atol=0)
    assert not torch.equal(other.prior.proj_in.weight, w)


def test_load_missing_pipeline_offline():
    with pytest.raises(BadInputError, match="someone/not-downloaded.*huggingface-cli download"):
        load_shap_e_pipeline("someone/not-downloaded", device="cpu")


# ---------------------------------------------------------------------- diffusion
def test_shapes_determinism_and_seeds(pipe):
    x = _embeds(3)
    a = reconstruct_3d(image_embeds=x, pipeline=pipe, seed=5, **FAST)
    assert isinstance(a, ShapELatents)
    assert a.latents.shape == (3, *LATENT_SHAPE) and a.latents.dtype == np.float32
    assert a.seeds == (5, 6, 7) and a.source == "image_embeds" and len(a) == 3
    b = reconstruct_3d(image_embeds=x, pipeline=pipe, seed=5, **FAST)
    np.testing.assert_array_equal(a.latents, b.latents)
    c = reconstruct_3d(image_embeds=x, pipeline=pipe, seed=6, **FAST)
    assert not np.allclose(a.latents, c.latents)
    # item i uses seed + i: item 1 at seed 5 is a lone item at seed 6
    lone = reconstruct_3d(image_embeds=x[1:2], pipeline=pipe, seed=6, **FAST)
    np.testing.assert_allclose(a[1], lone[0], atol=ATOL)
    # the conditioning matters
    d = reconstruct_3d(image_embeds=_embeds(3, seed=1), pipeline=pipe, seed=5, **FAST)
    assert not np.allclose(a.latents, d.latents)


def test_batch_of_four_equals_four_singles(pipe):
    x = _embeds(4, seed=2)
    four = reconstruct_3d(image_embeds=x, pipeline=pipe, batch_size=4, **FAST)
    singles = [
        reconstruct_3d(image_embeds=x[i : i + 1], pipeline=pipe, seed=i, **FAST) for i in range(4)
    ]
    np.testing.assert_allclose(
        four.latents, np.concatenate([s.latents for s in singles]), atol=ATOL
    )
    three = reconstruct_3d(image_embeds=x, pipeline=pipe, batch_size=3, **FAST)
    np.testing.assert_allclose(four.latents, three.latents, atol=ATOL)


def test_embeds_and_images_routes_agree(pipe):
    images = _images(3)
    # independent reference: the pipeline's own encoder, one PIL image at a time
    with torch.no_grad():
        ref = torch.cat(
            [pipe._encode_image(Image.fromarray(im), "cpu", 1, False) for im in images]
        ).numpy()
    assert ref.shape == (3, N_TOKENS, DIM)
    by_images = reconstruct_3d(images=images, pipeline=pipe, seed=2, batch_size=2, **FAST)
    by_embeds = reconstruct_3d(image_embeds=ref, pipeline=pipe, seed=2, **FAST)
    assert by_images.source == "images"
    np.testing.assert_allclose(by_images.latents, by_embeds.latents, atol=ATOL)
    # and a direct diffusers call per image with generator seed + i
    for i, im in enumerate(images):
        direct = pipe(
            Image.fromarray(im),
            generator=torch.Generator().manual_seed(2 + i),
            guidance_scale=3.0,
            output_type="latent",
            **FAST,
        ).images[0]
        np.testing.assert_allclose(by_images[i], direct.numpy(), atol=ATOL)
    # the class method is back after the bypass
    assert "_encode_image" not in vars(pipe)


def test_guidance_scale_changes_result(pipe):
    x = _embeds(1, seed=3)
    g1 = reconstruct_3d(image_embeds=x, pipeline=pipe, guidance_scale=1.0, **FAST)
    g3 = reconstruct_3d(image_embeds=x, pipeline=pipe, guidance_scale=3.0, **FAST)
    assert not np.allclose(g1.latents, g3.latents)


def test_bad_inputs(pipe):
    x, im = _embeds(2), _images(2)
    with pytest.raises(BadInputError, match="exactly one.*got both"):
        reconstruct_3d(image_embeds=x, images=im, pipeline=pipe)
    with pytest.raises(BadInputError, match="exactly one.*got neither"):
        reconstruct_3d(pipeline=pipe)
    with pytest.raises(BadInputError, match="last dimension must be 16.*got 8"):
        reconstruct_3d(image_embeds=x[..., :8], pipeline=pipe)
    with pytest.raises(BadInputError, match="must have 16 tokens.*got 4"):
        reconstruct_3d(image_embeds=x[:, :4], pipeline=pipe)
    with pytest.raises(BadInputError, match=r"shape \(n_items, 16, 16\)"):
        reconstruct_3d(image_embeds=x[0], pipeline=pipe)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        reconstruct_3d(image_embeds=bad, pipeline=pipe)
    with pytest.raises(BadInputError, match="uint8.*float"):
        reconstruct_3d(images=im.astype(np.float32), pipeline=pipe)
    with pytest.raises(BadInputError, match=r"images must have shape"):
        reconstruct_3d(images=im[..., :1], pipeline=pipe)
    with pytest.raises(BadInputError, match="batch_size"):
        reconstruct_3d(image_embeds=x, pipeline=pipe, batch_size=0)
    with pytest.raises(BadInputError, match="guidance_scale"):
        reconstruct_3d(image_embeds=x, pipeline=pipe, guidance_scale=float("nan"))
    with pytest.raises(BadInputError, match="pipeline must be"):
        reconstruct_3d(image_embeds=x, pipeline=None)


# ------------------------------------------------------------------ mesh writers
# a tetrahedron, with colours whose uint8 values are worked out by hand:
# export_to_ply stores round(c * 255.499): 1 -> 255, 0.5 -> 128 (127.75), 0.2 -> 51 (51.1)
TET_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.5]], np.float32)
TET_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
TET_C = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.2, 1]], np.float32)
TET_C_U8 = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 51, 255]], np.uint8)


def _read_ply(path):
    data = path.read_bytes()
    head, _, body = data.partition(b"end_header\n")
    lines = head.decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    n_v = int(next(ln for ln in lines if ln.startswith("element vertex")).split()[-1])
    n_f = int(next(ln for ln in lines if ln.startswith("element face")).split()[-1])
    vdt = np.dtype([("xyz", "<f4", 3), ("rgb", "u1", 3)])
    fdt = np.dtype([("n", "u1"), ("idx", "<i4", 3)])
    verts = np.frombuffer(body, vdt, count=n_v)
    faces = np.frombuffer(body, fdt, count=n_f, offset=n_v * vdt.itemsize)
    assert len(body) == n_v * vdt.itemsize + n_f * fdt.itemsize
    assert (faces["n"] == 3).all()
    return verts["xyz"], faces["idx"], verts["rgb"]


def _read_glb(path):
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_len, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON" and json_len % 4 == 0
    doc = json.loads(data[20 : 20 + json_len])
    bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + json_len)
    assert bin_type == b"BIN\x00" and bin_len % 4 == 0
    binary = data[28 + json_len : 28 + json_len + bin_len]
    assert 28 + json_len + bin_len == len(data)
    assert doc["asset"]["version"] == "2.0" and doc["buffers"][0]["byteLength"] <= bin_len
    prim = doc["meshes"][doc["nodes"][doc["scenes"][doc["scene"]]["nodes"][0]]["mesh"]]
    prim = prim["primitives"][0]
    assert prim["mode"] == 4

    def accessor(i, dtype, width):
        acc = doc["accessors"][i]
        view = doc["bufferViews"][acc["bufferView"]]
        assert view["byteOffset"] % 4 == 0
        count = acc["count"] * width
        arr = np.frombuffer(binary, dtype, count=count, offset=view["byteOffset"])
        return acc, arr.reshape(-1, width) if width > 1 else arr

    pos_acc, pos = accessor(prim["attributes"]["POSITION"], "<f4", 3)
    assert (pos_acc["componentType"], pos_acc["type"]) == (5126, "VEC3")
    np.testing.assert_array_equal(pos_acc["min"], pos.min(0))
    np.testing.assert_array_equal(pos_acc["max"], pos.max(0))
    col_acc, col = accessor(prim["attributes"]["COLOR_0"], "<f4", 3)
    assert (col_acc["componentType"], col_acc["type"]) == (5126, "VEC3")
    idx_acc, idx = accessor(prim["indices"], "<u4", 1)
    assert (idx_acc["componentType"], idx_acc["type"]) == (5125, "SCALAR")
    return pos, idx.reshape(-1, 3), col, doc


def _no_tmp_files(folder):
    return not [p for p in folder.iterdir() if TMP_MARKER in p.name]


def test_ply_and_glb_of_a_tetrahedron(tmp_path):
    ply = write_ply(tmp_path / "tet.ply", TET_V, TET_F, TET_C)
    v, f, c = _read_ply(ply)
    np.testing.assert_array_equal(v, TET_V)
    np.testing.assert_array_equal(f, TET_F)
    np.testing.assert_array_equal(c, TET_C_U8)
    glb = write_glb(tmp_path / "tet.glb", TET_V, TET_F, TET_C)
    v, f, c, doc = _read_glb(glb)
    np.testing.assert_array_equal(v, TET_V)
    np.testing.assert_array_equal(f, TET_F)
    np.testing.assert_array_equal(c, TET_C)
    q = np.array(doc["nodes"][0]["rotation"])
    np.testing.assert_allclose(np.linalg.norm(q), 1.0, atol=1e-7)
    assert _no_tmp_files(tmp_path)


def test_writers_on_a_marching_cubes_sphere(tmp_path):
    skimage_measure = pytest.importorskip("skimage.measure")
    grid = np.linspace(-1, 1, 24)
    sdf = 0.6 - np.sqrt(sum(g**2 for g in np.meshgrid(grid, grid, grid, indexing="ij")))
    verts, faces, _, _ = skimage_measure.marching_cubes(sdf, 0.0, spacing=(grid[1] - grid[0],) * 3)
    verts = (verts - 1).astype(np.float32)  # grid index 0 -> -1
    colors = (verts + 1) / 2
    v, f, c = _read_ply(write_ply(tmp_path / "s.ply", verts, faces, colors))
    np.testing.assert_array_equal(v, verts)
    np.testing.assert_array_equal(f, faces)
    np.testing.assert_array_equal(c, np.round(colors * 255.499).astype(np.uint8))
    v, f, c, _ = _read_glb(write_glb(tmp_path / "s.glb", verts, faces, colors))
    np.testing.assert_array_equal(f, faces)
    np.testing.assert_array_equal(c, colors)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 0.6, atol=0.02)


def test_writer_validation_leaves_no_file(tmp_path):
    with pytest.raises(
        BadInputError, match=r"faces must index vertices 0\.\.3, got indices 1\.\.4"
    ):
        write_glb(tmp_path / "x.glb", TET_V, TET_F + 1, TET_C)
    with pytest.raises(BadInputError, match=r"colors must be finite RGB values in \[0, 1\]"):
        write_ply(tmp_path / "x.ply", TET_V, TET_F, TET_C * 2)
    with pytest.raises(BadInputError, match="faces must be integer"):
        write_ply(tmp_path / "x.ply", TET_V, TET_F.astype(float), TET_C)
    assert list(tmp_path.iterdir()) == []


def test_turntable_gif_round_trip(tmp_path):
    frames = np.zeros((6, 12, 10, 3), np.uint8)
    frames[np.arange(6), np.arange(6), 0] = 255  # every frame differs from the previous
    gif = write_turntable_gif(tmp_path / "t.gif", frames, fps=5)
    with Image.open(gif) as im:
        assert (im.n_frames, im.size) == (6, (10, 12))
        assert im.info["duration"] == 200
        for k in range(6):
            im.seek(k)
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), frames[k])


def test_turntable_cameras_match_diffusers_pan_cameras():
    from diffusers.pipelines.shap_e.camera import create_pan_cameras

    # diffusers' 20 cameras are linspace(0, 2 pi, 20): 19 distinct views + a repeat of
    # the first; ours with n_frames=19 (endpoint excluded) are exactly those 19
    ref, ours = create_pan_cameras(8), _turntable_cameras(19, 8)
    for attr in ("origin", "x", "y", "z"):
        torch.testing.assert_close(getattr(ours, attr), getattr(ref, attr)[:19])
    assert ours.camera_rays.shape == (1, 19 * 8 * 8, 2, 3)


# --------------------------------------------------------------------- export
def test_export_tiny_latents_without_surface(pipe, tmp_path, caplog):
    lat = reconstruct_3d(image_embeds=_embeds(2), pipeline=pipe, **FAST)
    state = torch.get_rng_state()
    with caplog.at_level(logging.WARNING, logger="braindecode_suite"):
        paths = export_meshes(lat, tmp_path, pipeline=pipe, names=["a", "b"], **RENDER)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
    assert "item 1 ('b') has no surface" in caplog.text
    assert "marching-cubes lookup table" in caplog.text
    # no mesh files, never an empty or partial one; the turntables are written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_turntable.gif", "b_turntable.gif"]
    assert paths == {
        "a": {"turntable": tmp_path / "a_turntable.gif"},
        "b": {"turntable": tmp_path / "b_turntable.gif"},
    }
    with Image.open(paths["a"]["turntable"]) as im:
        assert (im.n_frames, im.size) == (5, (12, 12))
    with pytest.raises(NoSurfaceError, match=r"item 0 \('a'\) has no surface"):
        export_meshes(
            lat, tmp_path / "r", pipeline=pipe, names=["a", "b"], on_empty="raise", **RENDER
        )
    assert not (tmp_path / "r" / "a.ply").exists()


def test_export_turntable_is_deterministic_per_item(pipe, tmp_path):
    lat = reconstruct_3d(image_embeds=_embeds(2, seed=4), pipeline=pipe, **FAST)
    kw = dict(pipeline=pipe, formats=(), **RENDER)
    both = export_meshes(lat, tmp_path / "both", names=["a", "b"], seed=3, **kw)
    again = export_meshes(lat.latents[1:], tmp_path / "one", names=["b"], seed=4, **kw)
    assert both["b"]["turntable"].read_bytes() == again["b"]["turntable"].read_bytes()
    assert both["a"]["turntable"].read_bytes() != both["b"]["turntable"].read_bytes()
    nothing = export_meshes(lat, tmp_path / "none", names=["a", "b"], turntable=False, **kw)
    assert nothing == {"a": {}, "b": {}}


def test_export_writes_the_decoded_mesh(pipe, tmp_path, monkeypatch):
    from diffusers.pipelines.shap_e.renderer import MeshDecoderOutput

    seen = []

    def fake_decode(latents, device, grid_size=128, **_):
        # stands in for marching cubes with real weights: a known mesh per latent
        seen.append((latents.shape, grid_size))
        return MeshDecoderOutput(
            verts=torch.from_numpy(TET_V),
            faces=torch.from_numpy(TET_F),
            vertex_channels={k: torch.from_numpy(TET_C[:, j].copy()) for j, k in enumerate("RGB")},
        )

    monkeypatch.setattr(pipe.shap_e_renderer, "decode_to_mesh", fake_decode)
    lat = np.zeros((2, *LATENT_SHAPE), np.float32)
    paths = export_meshes(
        list(lat), tmp_path, pipeline=pipe, names=["x", "y"], turntable=False, grid_size=16
    )
    assert seen == [((1, *LATENT_SHAPE), 16)] * 2
    assert set(paths["y"]) == {"ply", "glb"}
    v, f, c = _read_ply(paths["y"]["ply"])
    np.testing.assert_array_equal(v, TET_V)
    np.testing.assert_array_equal(c, TET_C_U8)
    v, f, c, _ = _read_glb(paths["x"]["glb"])
    np.testing.assert_array_equal(f, TET_F)
    assert _no_tmp_files(tmp_path)


def test_export_bad_inputs(pipe, tmp_path):
    lat = np.zeros((2, *LATENT_SHAPE), np.float32)
    kw = dict(pipeline=pipe, turntable=False)
    with pytest.raises(BadInputError, match=r"latents must have shape \(n_items >= 1, 32, 16\)"):
        export_meshes(lat[:, :8], tmp_path, names=["a", "b"], **kw)
    with pytest.raises(BadInputError, match="got 1, expected 2"):
        export_meshes(lat, tmp_path, names=["a"], **kw)
    with pytest.raises(BadInputError, match="unique"):
        export_meshes(lat, tmp_path, names=["a", "a"], **kw)
    with pytest.raises(BadInputError, match="plain file names"):
        export_meshes(lat, tmp_path, names=["a", "../b"], **kw)
    with pytest.raises(BadInputError, match="'formats'.*'obj'"):
        export_meshes(lat, tmp_path, names=["a", "b"], formats=("obj",), **kw)
    with pytest.raises(BadInputError, match="on_empty"):
        export_meshes(lat, tmp_path, names=["a", "b"], on_empty="skip", **kw)
    with pytest.raises(BadInputError, match="n_frames"):
        export_meshes(lat, tmp_path, pipeline=pipe, names=["a", "b"], n_frames=0)
