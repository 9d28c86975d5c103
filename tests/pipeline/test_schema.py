import pytest

from braindecode_suite.pipeline import load_pipeline, validate_pipeline
from braindecode_suite.utils import BadInputError

from . import toy_stages  # noqa: F401  (registers toy stages)


def test_unknown_key_reports_file_and_key_path():
    raw = {"name": "t", "stages": {"make": {"kind": "toy_make", "nn": 3}}}
    with pytest.raises(BadInputError, match=r"^p.yaml: stages\.make\.nn: unknown key$"):
        validate_pipeline(raw, "p.yaml")


def test_wrong_type_reports_expected_and_got():
    raw = {"name": "t", "stages": {"make": {"kind": "toy_make", "n": "many"}}}
    with pytest.raises(
        BadInputError,
        match=r"p.yaml: stages\.make\.n: Input should be a valid "
        r"integer.*\(got 'many'\)",
    ):
        validate_pipeline(raw, "p.yaml")


def test_constraint_violation():
    raw = {"name": "t", "stages": {"make": {"kind": "toy_make", "n": 0}}}
    with pytest.raises(
        BadInputError,
        match=r"stages\.make\.n: Input should be greater than or "
        r"equal to 1",
    ):
        validate_pipeline(raw, "p.yaml")


def test_unknown_stage_kind_suggests():
    raw = {"name": "t", "stages": {"make": {"kind": "toy_mkae"}}}
    with pytest.raises(
        BadInputError,
        match=r"stages\.make\.kind: Unknown stage kind.*Did you "
        r"mean 'toy_make'\?",
    ):
        validate_pipeline(raw, "p.yaml")


def test_top_level_typo_and_missing_stages():
    with pytest.raises(BadInputError, match=r"p.yaml: devcie: unknown key"):
        validate_pipeline(
            {"name": "t", "devcie": "cpu", "stages": {"a": {"kind": "toy_make"}}}, "p.yaml"
        )
    with pytest.raises(BadInputError, match=r"p.yaml: stages: Field required"):
        validate_pipeline({"name": "t"}, "p.yaml")
    with pytest.raises(BadInputError, match=r"device: String should match pattern"):
        validate_pipeline(
            {"name": "t", "device": "gpu", "stages": {"a": {"kind": "toy_make"}}}, "p.yaml"
        )


def test_all_problems_reported_at_once():
    raw = {
        "name": "t",
        "stages": {"a": {"kind": "toy_make", "n": "x"}, "b": {"kind": "toy_sum", "scael": 2}},
    }
    with pytest.raises(BadInputError) as info:
        validate_pipeline(raw, "p.yaml")
    msg = str(info.value)
    assert "stages.a.n" in msg and "stages.b.scael: unknown key" in msg


def test_load_pipeline_file_errors(tmp_path):
    with pytest.raises(BadInputError, match="does not exist.*pipelines/"):
        load_pipeline(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(BadInputError, match="bad.yaml: not valid YAML"):
        load_pipeline(bad)
    good = tmp_path / "good.yaml"
    good.write_text("name: g\nstages:\n  make: {kind: toy_make, n: 2}\n")
    config, stages = load_pipeline(good)
    assert config.name == "g" and stages[0].config.n == 2


def test_shipped_pipelines_validate():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "pipelines"
    files = sorted(folder.glob("*.yaml"))
    assert files, "no pipelines shipped"
    from braindecode_suite.pipeline import plan_dependencies

    for f in files:
        _, stages = load_pipeline(f)
        plan_dependencies(stages)  # every read (and every `inputs:` pick) is satisfiable
