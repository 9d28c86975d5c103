"""Dataset manifests: ``data_manifests/<name>.yaml`` declares a public dataset.

Searched in ``$BDS_MANIFEST_DIR``, the source tree's ``data_manifests/`` and the
installed copy under ``<prefix>/share/braindecode_suite/data_manifests``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from ..utils.validation import BadInputError, check_option

__all__ = ["manifest_dirs", "list_manifests", "get_manifest"]

_REQUIRED = ("name", "title", "modality", "citation", "licence", "access", "layout")


def manifest_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("BDS_MANIFEST_DIR"):
        dirs.append(Path(os.environ["BDS_MANIFEST_DIR"]))
    dirs.append(Path(__file__).resolve().parents[2] / "data_manifests")
    dirs.append(Path(sys.prefix) / "share" / "braindecode_suite" / "data_manifests")
    return [d for d in dirs if d.is_dir()]


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise BadInputError(f"{path}: not valid YAML: {err}") from None
    missing = [k for k in _REQUIRED if not isinstance(data, dict) or k not in data]
    if missing:
        raise BadInputError(f"{path}: manifest lacks the key(s) {missing}.")
    return data


def list_manifests() -> list[dict]:
    """All manifests, the first directory winning when a name appears twice."""
    seen: dict[str, dict] = {}
    for d in manifest_dirs():
        for path in sorted(d.glob("*.yaml")):
            m = _read(path)
            seen.setdefault(m["name"], m)
    return [seen[k] for k in sorted(seen)]


def get_manifest(name: str) -> dict:
    """The manifest of dataset ``name``."""
    manifests = {m["name"]: m for m in list_manifests()}
    check_option("name", name, manifests)
    return manifests[name]
