import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from braindecode_suite.pipeline import run_pipeline, validate_pipeline
from braindecode_suite.utils import BadInputError

from .toy_stages import executions

HERE = Path(__file__).parent


@pytest.fixture
def toy_log(tmp_path, monkeypatch):
    log = tmp_path / "executions.txt"
    monkeypatch.setenv("TOY_LOG", str(log))
    return log


def _pipeline(n=5, scale=1.0, **make):
    raw = {
        "name": "toy",
        "stages": {
            "make": {"kind": "toy_make", "n": n, **make},
            "sum": {"kind": "toy_sum", "scale": scale},
        },
    }
    return validate_pipeline(raw, "toy.yaml")


def test_run_writes_manifests_and_published_files(tmp_path, toy_log):
    res = run_pipeline(_pipeline(n=5), out_dir=tmp_path)
    assert res.executed == ["make", "sum"]
    run_dir = tmp_path / "toy"
    assert json.loads((run_dir / "total.json").read_text()) == {"total": 10.0}  # 0+1+2+3+4
    m = json.loads((run_dir / "make" / "manifest.json").read_text())
    for key in ("config", "inputs", "fingerprint", "wall_time_s", "peak_memory_mb", "versions"):
        assert key in m
    assert m["config"] == {"n": 5, "sleep": 0.0, "fail": False}
    assert m["peak_memory_mb"] > 10
    assert m["versions"]["braindecode_suite"]
    m_sum = json.loads((run_dir / "sum" / "manifest.json").read_text())
    assert m_sum["inputs"]["numbers"]["stage"] == "make"
    resolved = json.loads((run_dir / "pipeline.resolved.json").read_text())
    assert resolved["stages"]["sum"] == {"kind": "toy_sum", "scale": 1.0}


def test_rerun_skips_unchanged_and_reruns_changed(tmp_path, toy_log):
    run_pipeline(_pipeline(n=5), out_dir=tmp_path)
    res = run_pipeline(_pipeline(n=5), out_dir=tmp_path)
    assert res.executed == [] and res.skipped == ["make", "sum"]
    assert executions(toy_log) == ["make", "sum"]
    # a downstream config change reruns only downstream
    res = run_pipeline(_pipeline(n=5, scale=2.0), out_dir=tmp_path)
    assert res.executed == ["sum"]
    assert json.loads((tmp_path / "toy" / "total.json").read_text())["total"] == 20.0
    # an upstream change reruns both (the input fingerprint changes)
    res = run_pipeline(_pipeline(n=6, scale=2.0), out_dir=tmp_path)
    assert res.executed == ["make", "sum"]


def test_force_redoes_stage_and_downstream(tmp_path, toy_log):
    run_pipeline(_pipeline(), out_dir=tmp_path)
    res = run_pipeline(_pipeline(), out_dir=tmp_path, force=["make"])
    assert res.executed == ["make", "sum"]
    res = run_pipeline(_pipeline(), out_dir=tmp_path, force=["sum"])
    assert res.executed == ["sum"]
    with pytest.raises(BadInputError, match="'force'.*Allowed values are 'make', 'sum'"):
        run_pipeline(_pipeline(), out_dir=tmp_path, force=["smu"])


def test_tampered_output_is_not_trusted(tmp_path, toy_log):
    run_pipeline(_pipeline(), out_dir=tmp_path)
    (tmp_path / "toy" / "sum" / "total.json").write_text('{"total": 999}')
    res = run_pipeline(_pipeline(), out_dir=tmp_path)
    assert res.executed == ["sum"]
    assert json.loads((tmp_path / "toy" / "total.json").read_text())["total"] == 10.0


def test_failing_stage_leaves_no_artifact_and_keeps_earlier(tmp_path, toy_log):
    run_pipeline(_pipeline(n=5), out_dir=tmp_path)
    before = (tmp_path / "toy" / "make" / "manifest.json").read_text()
    with pytest.raises(RuntimeError, match="toy failure"):
        run_pipeline(_pipeline(n=7, fail=True), out_dir=tmp_path)
    run_dir = tmp_path / "toy"
    # the previous complete stage is intact, no temporary folder is left
    assert (run_dir / "make" / "manifest.json").read_text() == before
    assert [p.name for p in run_dir.iterdir() if ".tmp-" in p.name] == []
    # and the next run redoes it (config changed) instead of trusting the old one
    res = run_pipeline(_pipeline(n=7), out_dir=tmp_path)
    assert res.executed == ["make", "sum"]


def test_killed_run_leaves_nothing_trusted(tmp_path, toy_log):
    root, out = str(HERE.parents[1]), str(tmp_path)
    script = (
        f"import sys; sys.path.insert(0, {root!r})\n"
        "from tests.pipeline import toy_stages\n"
        "from braindecode_suite.pipeline import run_pipeline, validate_pipeline\n"
        "p = validate_pipeline({'name': 'toy', 'stages': {'make': {'kind': 'toy_make', "
        "'sleep': 60}, 'sum': {'kind': 'toy_sum'}}})\n"
        f"run_pipeline(p, out_dir={out!r})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env={**os.environ}, text=True
    )
    try:
        line = proc.stdout.readline()
        assert "TOY_STARTED" in line
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = tmp_path / "toy"
    assert not (run_dir / "make").exists()
    assert any(".tmp-" in p.name for p in run_dir.iterdir())  # the half-written stage
    res = run_pipeline(_pipeline(n=5), out_dir=tmp_path)
    assert res.executed == ["make", "sum"]
    assert not any(".tmp-" in p.name for p in run_dir.iterdir())  # cleaned up
    time.sleep(0)


def test_reading_an_artifact_nobody_writes_is_reported(tmp_path, toy_log):
    with pytest.raises(
        BadInputError,
        match=r"stages.sum: kind 'toy_sum' reads the artifact "
        r"'numbers'.*come later",
    ):
        p = validate_pipeline(
            {"name": "toy", "stages": {"sum": {"kind": "toy_sum"}, "make": {"kind": "toy_make"}}}
        )
        run_pipeline(p, out_dir=tmp_path)


def test_missing_data_dir_is_reported(tmp_path, toy_log):
    with pytest.raises(BadInputError, match="--data-dir '.*nowhere' does not exist"):
        run_pipeline(_pipeline(), out_dir=tmp_path, data_dir=tmp_path / "nowhere")


def test_cuda_asked_without_cuda(tmp_path, toy_log):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BadInputError, match="no CUDA device is available"):
        run_pipeline(_pipeline(), out_dir=tmp_path, device="cuda")


def test_missing_paths_in_the_yaml_are_reported_before_running(tmp_path, toy_log):
    raw = {
        "name": "nsd",
        "data_dir": str(tmp_path / "gone"),
        "stages": {"fmri": {"kind": "load_nsd", "data_dir": str(tmp_path / "absent")}},
    }
    with pytest.raises(BadInputError) as info:
        run_pipeline(validate_pipeline(raw, "nsd.yaml"), out_dir=tmp_path)
    msg = str(info.value)
    assert "nsd.yaml: data_dir: '" in msg and "gone' does not exist" in msg
    assert "nsd.yaml: stages.fmri.data_dir: '" in msg and "holds nsddata/" in msg
    assert not (tmp_path / "nsd").exists()  # nothing ran, no run directory made


def _two_routes(sum2_inputs=None, **extra):
    stages = {
        "make_a": {"kind": "toy_make", "n": 3},
        "make_b": {"kind": "toy_make", "n": 5},
        "sum_b": {"kind": "toy_sum"},
        "sum_a": {"kind": "toy_sum", "inputs": {"numbers": "make_a"}},
        "gather": {"kind": "toy_gather"},
    }
    if sum2_inputs is not None:
        stages["sum_a"]["inputs"] = sum2_inputs
    stages.update(extra)
    return validate_pipeline({"name": "routes", "stages": stages}, "routes.yaml")


def test_inputs_override_and_gather(tmp_path, toy_log):
    run_pipeline(_two_routes(), out_dir=tmp_path)
    run_dir = tmp_path / "routes"
    # sum_b takes the last writer (make_b: 0..4), sum_a the one it names (make_a: 0..2)
    assert json.loads((run_dir / "sum_b" / "total.json").read_text())["total"] == 10.0
    assert json.loads((run_dir / "sum_a" / "total.json").read_text())["total"] == 3.0
    assert json.loads((run_dir / "gather" / "all.json").read_text()) == {
        "sum_b": 10.0,
        "sum_a": 3.0,
    }
    # changing one gathered route reruns the gatherer
    raw = {
        "name": "routes",
        "stages": {
            "make_a": {"kind": "toy_make", "n": 4},
            "make_b": {"kind": "toy_make", "n": 5},
            "sum_b": {"kind": "toy_sum"},
            "sum_a": {"kind": "toy_sum", "inputs": {"numbers": "make_a"}},
            "gather": {"kind": "toy_gather"},
        },
    }
    res = run_pipeline(validate_pipeline(raw, "routes.yaml"), out_dir=tmp_path)
    assert res.executed == ["make_a", "sum_a", "gather"]


@pytest.mark.parametrize(
    "inputs, match",
    [
        ({"numbers": "nope"}, "inputs.numbers: there is no stage 'nope'"),
        ({"numbers": "gather"}, "'gather' does not come before 'sum_a'"),
        ({"numbers": "sum_b"}, "'sum_b' does not write 'numbers'.*\\['make_a', 'make_b'\\]"),
    ],
)
def test_bad_inputs_override(tmp_path, toy_log, inputs, match):
    with pytest.raises(BadInputError, match=match):
        run_pipeline(_two_routes(inputs), out_dir=tmp_path)


def test_inputs_override_of_a_key_the_stage_does_not_read():
    with pytest.raises(BadInputError, match=r"sum_a.inputs: kind 'toy_sum' does not read \['x'\]"):
        _two_routes({"x": "make_a"})
    with pytest.raises(BadInputError, match="sum_a.inputs: must map artifact keys"):
        _two_routes({"numbers": 3})
