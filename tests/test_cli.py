"""The `bds` command line: help everywhere, exit codes 0 / 2 / 1, one clear message."""

import sys

import pytest

from braindecode_suite.cli import main

from .pipeline import toy_stages  # noqa: F401  (registers toy stages)


def bds(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["bds", *args])
    with pytest.raises(SystemExit) as info:
        main()
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["demo"],
        ["evaluate"],
        ["run"],
        ["datasets"],
        ["datasets", "list"],
        ["datasets", "info"],
        ["datasets", "fetch"],
        ["datasets", "verify"],
        ["cache"],
        ["cache", "ls"],
        ["cache", "info"],
        ["cache", "prune"],
        ["report"],
    ],
)
def test_help_everywhere(monkeypatch, capsys, cmd):
    code, out, _ = bds(monkeypatch, capsys, *cmd, "--help")
    assert code == 0
    assert "Usage" in out


def test_version(monkeypatch, capsys):
    from braindecode_suite import __version__

    code, out, _ = bds(monkeypatch, capsys, "--version")
    assert code == 0 and __version__ in out


def test_bad_usage_exits_2(monkeypatch, capsys):
    code, _, err = bds(monkeypatch, capsys, "run")  # missing argument
    assert code == 2 and "Missing argument" in err
    code, _, err = bds(monkeypatch, capsys, "frobnicate")
    assert code == 2


def test_missing_pipeline_file_exits_2_without_traceback(monkeypatch, capsys, tmp_path):
    code, _, err = bds(monkeypatch, capsys, "run", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml' does not exist" in err
    assert "Traceback" not in err


def test_yaml_typo_exits_2_with_key_path(monkeypatch, capsys, tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text("name: t\nstages:\n  make: {kind: toy_make, nn: 3}\n")
    code, _, err = bds(monkeypatch, capsys, "run", str(p), "--out", str(tmp_path))
    assert code == 2
    assert "typo.yaml: stages.make.nn: unknown key" in err


def test_missing_data_dir_exits_2(monkeypatch, capsys, tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("name: t\nstages:\n  make: {kind: toy_make}\n")
    code, _, err = bds(
        monkeypatch,
        capsys,
        "run",
        str(p),
        "--data-dir",
        str(tmp_path / "absent"),
        "--out",
        str(tmp_path),
    )
    assert code == 2 and "absent' does not exist" in err


def test_internal_error_exits_1(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TOY_LOG", str(tmp_path / "log"))
    p = tmp_path / "fail.yaml"
    p.write_text("name: t\nstages:\n  make: {kind: toy_make, fail: true}\n")
    code, _, err = bds(monkeypatch, capsys, "run", str(p), "--out", str(tmp_path))
    assert code == 1
    assert "This is a bug" in err and "toy failure" in err and "Traceback" not in err


def test_verbose_shows_traceback(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["bds", "--verbose", "run", str(tmp_path / "nope.yaml")])
    from braindecode_suite.utils import BadInputError

    with pytest.raises(BadInputError):
        main()


def test_run_ok_exits_0(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TOY_LOG", str(tmp_path / "log"))
    p = tmp_path / "ok.yaml"
    p.write_text("name: t\nstages:\n  make: {kind: toy_make}\n  sum: {kind: toy_sum}\n")
    code, out, _ = bds(monkeypatch, capsys, "run", str(p), "--out", str(tmp_path))
    assert code == 0 and "2 stage(s) run" in out
    code, out, _ = bds(monkeypatch, capsys, "run", str(p), "--out", str(tmp_path))
    assert code == 0 and "0 stage(s) run, 2 skipped" in out


def test_datasets_list_and_info(monkeypatch, capsys):
    code, out, _ = bds(monkeypatch, capsys, "datasets", "list")
    assert code == 0 and "nsd" in out and "nsd_demo" in out
    code, out, _ = bds(monkeypatch, capsys, "datasets", "info", "nsd")
    assert code == 0 and "Data Access form" in out and "nsd_expdesign.mat" in out
    code, _, err = bds(monkeypatch, capsys, "datasets", "info", "nds")
    assert code == 2 and "Did you mean 'nsd'" in err


def test_cache_commands_on_empty_cache(monkeypatch, capsys, tmp_path):
    code, out, _ = bds(monkeypatch, capsys, "cache", "ls", "--cache-dir", str(tmp_path))
    assert code == 0
    code, out, _ = bds(monkeypatch, capsys, "cache", "prune", "--cache-dir", str(tmp_path))
    assert code == 0 and "removed 0 file(s)" in out
    code, _, err = bds(monkeypatch, capsys, "cache", "info", str(tmp_path / "x.h5"))
    assert code == 2 and "x.h5" in err


def test_report_on_missing_run_dir(monkeypatch, capsys, tmp_path):
    code, _, err = bds(monkeypatch, capsys, "report", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err


def test_evaluate_two_folders(monkeypatch, capsys, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for side in ("p", "g"):
        (tmp_path / side).mkdir()
    for i in range(5):
        gt = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        Image.fromarray(gt).save(tmp_path / "g" / f"{i}.png")
        noisy = np.clip(gt + rng.normal(0, 40, gt.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(tmp_path / "p" / f"{i}.png")
    code, out, err = bds(
        monkeypatch, capsys, "evaluate", "--pred", str(tmp_path / "p"), "--gt",
        str(tmp_path / "g"), "--metrics", "PixCorr", "--metrics", "Incep", "--n-boot", "20",
    )  # fmt: skip
    assert code == 0, err
    assert "PixCorr" in out and "Incep: not computed" in out
    assert (tmp_path / "p_eval" / "metrics.json").is_file()
    code, out, err = bds(
        monkeypatch, capsys, "evaluate", "--pred", str(tmp_path / "p"), "--gt",
        str(tmp_path / "nope"),
    )  # fmt: skip
    assert code == 2 and "gt_dir" in err + out
