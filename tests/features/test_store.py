"""Tests of the HDF5 feature store: round trips, crash safety, corruption, bad inputs."""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from braindecode_suite.features.store import (
    FeatureStore,
    get_cache_dir,
    list_stores,
    prune_cache,
)
from braindecode_suite.utils.validation import BadInputError

REPO_ROOT = Path(__file__).resolve().parents[2]
ROW_SHAPE = (3, 5)  # unequal on purpose


def expected_rows(rows, row_shape=ROW_SHAPE):
    """Deterministic float data: row r holds r + k / 8 for k = 0..size-1 (exact in float16)."""
    rows = np.asarray(rows)
    size = int(np.prod(row_shape))
    vals = (rows[:, None] % 97) + (np.arange(size)[None, :] % 16) / 8.0
    return vals.reshape(len(rows), *row_shape).astype(np.float32)


def write_store(path, ids, data, *, batch=10, **kwargs):
    fields = {k: (v.shape[1:], v.dtype.str) for k, v in data.items()}
    with FeatureStore.open_writer(path, ids, fields, **kwargs) as w:
        for start in range(0, len(ids), batch):
            sl = slice(start, start + batch)
            w.append(ids[sl], {k: v[sl] for k, v in data.items()})
    return Path(path)


@pytest.fixture
def store_path():
    return get_cache_dir() / "run" / "feats.h5"


# -- round trips -------------------------------------------------------------------------
@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_round_trip_and_reads(store_path, id_kind):
    rng = np.random.default_rng(0)
    n = 53
    ids = (
        rng.permutation(1000)[:n]
        if id_kind == "int"
        else np.array([f"img_{i:03d}" for i in rng.permutation(n)])
    )
    data = {
        "f16": (rng.standard_normal((n, 4, 3)) * 10).astype(np.float16),
        "f32": rng.standard_normal((n, 7)).astype(np.float32),
        "u8": rng.integers(0, 256, (n, 2, 3, 2)).astype(np.uint8),
    }
    write_store(
        store_path, ids, data, batch=8, attrs={"model": "tiny", "layers": ("a", "b")}, chunk_rows=5
    )
    assert not store_path.with_name(store_path.name + ".partial").exists()
    store = FeatureStore(store_path)
    assert store.n_rows == n and store.fields == ["f16", "f32", "u8"]
    assert store.attrs == {"model": "tiny", "layers": ["a", "b"]}
    np.testing.assert_array_equal(store.stimulus_ids, ids)
    assert store.stimulus_ids.dtype.kind == ("i" if id_kind == "int" else "U")
    for name, ref in data.items():
        full = store.read(name)
        assert full.dtype == ref.dtype
        np.testing.assert_array_equal(full, ref)
        info = store.field_info(name)
        assert info["shape"] == ref.shape and info["dtype"] == ref.dtype.name
        assert info["chunks"][0] == 5 and info["compression"] == "lzf"
    # arbitrary order with repeats equals numpy fancy indexing
    pick = np.array([7, 0, 52, 7, 3, 3, 40, 12, 0])
    for name, ref in data.items():
        np.testing.assert_array_equal(store.read(name, ids[pick]), ref[pick])
    got = store.read("f16", ids[pick], dtype=np.float64)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, data["f16"][pick].astype(np.float64))
    # iter_blocks reassembles exactly, in stored and in requested order
    blocks = list(store.iter_blocks("f32", block_rows=4))
    assert [len(b[0]) for b in blocks] == [4] * 13 + [1]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), data["f32"])
    np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), ids)
    blocks = list(store.iter_blocks("u8", ids[pick], block_rows=2))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), data["u8"][pick])
    np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), ids[pick])
    assert FeatureStore.exists(store_path)
    assert store.verify()
    info = store.info()
    assert info["n_rows"] == n and info["size_bytes"] == store_path.stat().st_size
    assert set(info["fields"]) == set(data)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_compression_options_and_large_chunks(store_path, compression):
    ids = np.arange(30)
    data = {"x": expected_rows(ids)}
    write_store(store_path, ids, data, compression=compression, batch=7)
    store = FeatureStore(store_path)
    assert store.field_info("x")["compression"] == compression
    assert store.field_info("x")["chunks"][0] == 30  # ~1 MiB default, capped at n_rows
    np.testing.assert_array_equal(store.read("x", ids[::-1]), data["x"][::-1])


def test_get_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BDS_CACHE_DIR", str(tmp_path / "c"))
    assert get_cache_dir() == tmp_path / "c" / "features"
    assert (tmp_path / "c" / "features").is_dir()


# -- crash safety --------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from braindecode_suite.features.store import FeatureStore
    sys.path.insert(0, {tests!r})
    from test_store import expected_rows
    ids = np.arange(2000) * 3
    w = FeatureStore.open_writer({path!r}, ids, {{"x": ((3, 5), "float32"),
                                                  "h": ((3, 5), "float16")}})
    for start in range(0, 2000, 50):
        x = expected_rows(np.arange(start, start + 50))
        w.append(ids[start:start + 50], {{"x": x, "h": x}})
        print(w.n_done, flush=True)
        time.sleep(0.05)
    w.close()
    """
)


def test_kill_mid_run_then_resume(store_path):
    store_path.parent.mkdir(parents=True, exist_ok=True)
    script = CHILD.format(path=str(store_path), tests=str(Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    reported = 0
    deadline = time.monotonic() + 30
    try:
        while reported < 5 * 50:
            try:
                reported = int(lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"child reported only {reported} rows; stderr: {proc.stderr.read()}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    partial = store_path.with_name(store_path.name + ".partial")
    assert not store_path.exists()
    assert partial.exists()
    with pytest.raises(BadInputError, match="does not exist.*partial file exists"):
        FeatureStore(store_path)
    with pytest.raises(BadInputError, match="partial store"):
        FeatureStore(partial)
    assert not FeatureStore.exists(store_path)
    assert [e["status"] for e in list_stores()] == ["partial"]

    ids = np.arange(2000) * 3
    fields = {"x": ((3, 5), "float32"), "h": ((3, 5), "float16")}
    w = FeatureStore.open_writer(store_path, ids, fields)
    assert w.n_done >= 5 * 50 and w.n_done % 50 == 0 and w.n_done < 2000
    np.testing.assert_array_equal(w.remaining_ids, ids[w.n_done :])
    for start in range(w.n_done, 2000, 128):  # other batch size than the child's
        stop = min(start + 128, 2000)
        x = expected_rows(np.arange(start, stop))
        w.append(ids[start:stop], {"x": x, "h": x})
    assert w.close() == store_path
    assert not partial.exists()
    store = FeatureStore(store_path)
    np.testing.assert_array_equal(store.read("x"), expected_rows(np.arange(2000)))
    np.testing.assert_array_equal(store.read("h"), expected_rows(np.arange(2000)).astype("f2"))
    assert store.verify()


def _write_partial(path, ids, n_written, *, batch=10, compression="lzf", chunk_rows=4):
    w = FeatureStore.open_writer(
        path, ids, {"x": (ROW_SHAPE, "float32")}, compression=compression, chunk_rows=chunk_rows
    )
    for start in range(0, n_written, batch):
        w.append(ids[start : start + batch], {"x": expected_rows(np.arange(start, start + batch))})
    assert w.close() is None
    return path.with_name(path.name + ".partial")


def _finish(path, ids, **kwargs):
    w = FeatureStore.open_writer(path, ids, {"x": (ROW_SHAPE, "float32")}, **kwargs)
    n_done = w.n_done
    rem = np.arange(n_done, len(ids))
    for start in range(0, rem.size, 25):
        r = rem[start : start + 25]
        w.append(ids[r], {"x": expected_rows(r)})
    w.close()
    np.testing.assert_array_equal(FeatureStore(path).read("x"), expected_rows(np.arange(len(ids))))
    return n_done


@pytest.mark.parametrize("compression", [None, "lzf"])
@pytest.mark.parametrize("damage", ["garbage@0.3", "garbage@0.5", "garbage@0.8", "truncate"])
def test_damaged_partial_recovers_with_correct_data(store_path, damage, compression):
    ids = np.arange(200)
    partial = _write_partial(store_path, ids, 150, compression=compression)
    size = partial.stat().st_size
    if damage == "truncate":
        os.truncate(partial, size // 2)
    else:
        frac = float(damage.split("@")[1])
        with open(partial, "r+b") as f:
            f.seek(int(size * frac))
            f.write(np.random.default_rng(1).integers(0, 256, 512, dtype=np.uint8).tobytes())
    n_done = _finish(store_path, ids, compression=compression, chunk_rows=4)
    assert n_done % 10 == 0 and 0 <= n_done <= 150


def test_checksum_failure_keeps_verified_prefix(store_path, caplog):
    ids = np.arange(100)
    partial = _write_partial(store_path, ids, 80, compression=None, chunk_rows=4)
    with h5py.File(partial, "r") as f:  # locate the raw bytes of row 44 (chunk 11)
        offset = f["fields/x"].id.get_chunk_info(11).byte_offset
    with open(partial, "r+b") as f:
        f.seek(offset)
        f.write(np.full(ROW_SHAPE, 1234.5, np.float32).tobytes())
    with caplog.at_level(logging.INFO, logger="braindecode_suite"):
        n_done = _finish(store_path, ids, compression=None, chunk_rows=4)
    assert n_done == 40  # batch 40..50 holds row 44; batches before it were kept
    assert "failed its checksum" in caplog.text
    assert "resuming" in caplog.text and "40 of 100 rows already written" in caplog.text


def test_corrupt_complete_file(store_path):
    ids = np.arange(300)
    write_store(store_path, ids, {"x": expected_rows(ids)}, batch=100)
    good = get_cache_dir() / "good.h5"
    write_store(good, ids[:20], {"x": expected_rows(ids[:20])})
    stale = get_cache_dir() / "stale.h5.partial"
    stale.write_bytes(b"not hdf5 at all")
    os.truncate(store_path, store_path.stat().st_size // 2)
    with pytest.raises(
        BadInputError, match="corrupt or truncated.*recomputed.*cache prune --corrupt"
    ):
        FeatureStore(store_path)
    assert not FeatureStore.exists(store_path)
    status = {Path(e["path"]).name: e["status"] for e in list_stores()}
    assert status == {"feats.h5": "corrupt", "good.h5": "complete", "stale.h5.partial": "corrupt"}
    would = prune_cache(corrupt=True, partial=False, dry_run=True)
    assert {Path(e["path"]).name for e in would} == {"feats.h5", "stale.h5.partial"}
    assert store_path.exists() and stale.exists()
    removed = prune_cache(corrupt=True, partial=False)
    assert {Path(e["path"]).name for e in removed} == {"feats.h5", "stale.h5.partial"}
    assert not store_path.exists() and not stale.exists() and good.exists()
    assert prune_cache(older_than_days=1) == []
    assert [Path(e["path"]).name for e in prune_cache(everything=True)] == ["good.h5"]
    assert list_stores() == []


def test_prune_partial_and_incomplete_flag(store_path):
    ids = np.arange(50)
    partial = _write_partial(store_path, ids, 20)
    assert [e["status"] for e in list_stores()] == ["partial"]
    assert prune_cache(partial=False) == []
    assert [Path(e["path"]) for e in prune_cache()] == [partial]
    # a non-partial file whose complete flag is unset is refused
    _write_partial(store_path, ids, 20)
    os.replace(partial, store_path)
    with pytest.raises(BadInputError, match="not marked complete"):
        FeatureStore(store_path)


def test_exception_in_context_keeps_resumable_partial(store_path):
    ids = np.arange(30)
    with pytest.raises(RuntimeError, match="extractor died"):
        with FeatureStore.open_writer(store_path, ids, {"x": (ROW_SHAPE, "float32")}) as w:
            w.append(ids[:10], {"x": expected_rows(np.arange(10))})
            raise RuntimeError("extractor died")
    assert not store_path.exists()
    assert _finish(store_path, ids) == 10


# -- bad inputs -----------------------------------------------------------------------------
def test_writer_bad_inputs(store_path):
    ids = np.array(["a", "b", "c", "d"])
    x = expected_rows(np.arange(4))
    with pytest.raises(BadInputError, match="1 duplicated ids.*'a'"):
        FeatureStore.open_writer(store_path, np.array(["a", "b", "a"]), {"x": (ROW_SHAPE, "f4")})
    with pytest.raises(BadInputError, match="compression.*Did you mean 'lzf'"):
        FeatureStore.open_writer(store_path, ids, {"x": (ROW_SHAPE, "f4")}, compression="lz")
    w = FeatureStore.open_writer(store_path, ids, {"x": (ROW_SHAPE, "f4"), "y": ((2,), "u1")})
    y = np.ones((4, 2), np.uint8)
    with pytest.raises(BadInputError, match=r"next 2 ids.*expected \['a', 'b'\], got \['b', 'a'\]"):
        w.append(ids[[1, 0]], {"x": x[:2], "y": y[:2]})
    with pytest.raises(
        BadInputError, match=r"arrays\['x'\] has shape \(2, 5, 3\), expected \(2, 3, 5\)"
    ):
        w.append(ids[:2], {"x": x[:2].reshape(2, 5, 3), "y": y[:2]})
    with pytest.raises(BadInputError, match=r"missing \['y'\]"):
        w.append(ids[:2], {"x": x[:2]})
    bad = x[:2].copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(BadInputError, match=r"arrays\['x'\] contains 1 non-finite"):
        w.append(ids[:2], {"x": bad, "y": y[:2]})
    assert w.n_done == 0  # nothing was written by the failed appends
    w.append(ids[:2], {"x": x[:2], "y": y[:2]})
    with pytest.raises(BadInputError, match=r"expected \['c'\], got \['a'\]"):
        w.append(ids[:1], {"x": x[:1], "y": y[:1]})
    w.append(ids[2:], {"x": x[2:], "y": y[2:]})
    w.close()
    with pytest.raises(BadInputError, match="already exists.*FeatureStore"):
        FeatureStore.open_writer(store_path, ids, {"x": (ROW_SHAPE, "f4")})


def test_float16_overflow_refused(store_path):
    w = FeatureStore.open_writer(store_path, np.arange(2), {"x": ((1,), "float16")})
    with pytest.raises(BadInputError, match="overflows float16"):
        w.append(np.arange(2), {"x": np.array([[1.0], [1e6]])})


def test_reader_bad_inputs(store_path):
    ids = np.arange(10) * 2
    write_store(store_path, ids, {"layer1": expected_rows(ids)})
    store = FeatureStore(store_path)
    with pytest.raises(
        BadInputError, match=r"3 of 5 requested.*feats.h5.*first missing: \[1, 3, 5\]"
    ):
        store.read("layer1", [0, 1, 2, 3, 5])
    with pytest.raises(BadInputError, match=r"first missing: \[101, 103, 105, 107, 109\]"):
        store.read("layer1", np.arange(101, 121, 2))
    with pytest.raises(BadInputError, match="Allowed values are 'layer1'.*Did you mean 'layer1'"):
        store.read("layer_1")
    with pytest.raises(BadInputError, match="Did you mean 'layer1'"):
        list(store.iter_blocks("layer2"))
    with pytest.raises(BadInputError, match="must be integers"):
        store.read("layer1", ["0"])
    with pytest.raises(BadInputError, match="does not exist"):
        FeatureStore(store_path.with_name("nope.h5"))


# -- resume checks ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, reason",
    [
        ("ids", "stimulus ids differ"),
        ("fields", "fields .* differ"),
        ("dtype", "fields .* differ"),
        ("attrs", "attrs differ"),
    ],
)
def test_mismatching_resume_starts_over(store_path, caplog, change, reason):
    ids = np.arange(40)
    _write_partial(store_path, ids, 20, chunk_rows=4)
    new_ids = ids[::-1].copy() if change == "ids" else ids
    fields = {"x": (ROW_SHAPE, "float32")}
    if change == "fields":
        fields = {"x": (ROW_SHAPE, "float32"), "z": ((2,), "float32")}
    if change == "dtype":
        fields = {"x": (ROW_SHAPE, "float16")}
    attrs = {"weights": "v2"} if change == "attrs" else None
    with caplog.at_level(logging.WARNING, logger="braindecode_suite"):
        w = FeatureStore.open_writer(store_path, new_ids, fields, attrs=attrs, chunk_rows=4)
    assert w.n_done == 0
    np.testing.assert_array_equal(w.remaining_ids, new_ids)
    assert caplog.records and caplog.records[-1].levelno == logging.WARNING
    assert "discarding" in caplog.text
    assert re.search(reason, caplog.text)
    w.abort()


def test_matching_resume_logs_progress(store_path, caplog):
    ids = np.arange(40)
    _write_partial(store_path, ids, 30, chunk_rows=4)
    with caplog.at_level(logging.INFO, logger="braindecode_suite"):
        n_done = _finish(store_path, ids, chunk_rows=8)  # chunk size does not matter for resume
    assert n_done == 30
    assert "30 of 40 rows already written" in caplog.text
