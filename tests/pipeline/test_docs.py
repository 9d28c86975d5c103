"""The YAML reference documents every stage kind and every key of every stage."""

from pathlib import Path

from braindecode_suite.pipeline import STAGES

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"


def test_every_stage_and_key_is_documented():
    text = DOC.read_text()
    missing = []
    for kind, cls in STAGES.items():
        if kind.startswith("toy_"):
            continue
        if f"`{kind}`" not in text:
            missing.append(kind)
        for key in cls.Config.model_fields:
            if f"`{key}`" not in text:
                missing.append(f"{kind}.{key}")
    assert not missing, f"undocumented in docs/pipelines.md: {missing}"
