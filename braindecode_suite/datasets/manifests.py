"""Dataset manifests: ``data_manifests/<name>.yaml`` declares a public dataset.

Searched in ``$BDS_MANIFEST_DIR``, the source tree's ``data_manifests/`` and the
installed copy under ``<prefix>/share/braindecode_suite/data_manifests``.

A manifest may declare its files for :func:`~braindecode_suite.datasets.fetch.fetch_dataset`
under ``files:``, a list of entries with the keys

``path`` (required)
    Location relative to the dataset root; may hold ``{subject}``/``{subject:02d}``,
    ``{session:02d}`` (expanded over ``sessions_per_subject`` or the entry's ``sessions``)
    and names listed in the entry's ``values:`` mapping.
``url`` | ``s3`` | ``key``
    Where to download it: a full HTTPS URL (or a mapping subject -> URL), a full
    ``s3://bucket/key`` path, or a key below the manifest's ``source:``
    (``{s3: s3://bucket/prefix/}``, ``{openneuro: dsNNNNNN}`` or ``{url: https://base/}``).
    Without any of them the file lies below ``source`` at ``path``; ``url: null``, or no
    ``source``, means the file must be downloaded by hand (see ``access.how``).
``size``, ``sha256``, ``md5``
    Size in bytes and checksums, or null when unknown (never invented).
``subjects``
    ``per_subject`` or ``shared`` (default).
``required``
    Fetched by default (true, the default) or only when a ``--files`` pattern names it.
``unpack``, ``provides``
    Unpack a ``.tar.gz`` into this folder (relative to the root) after the download;
    ``provides`` lists unpacked files whose presence stands for the archive.
"""

from __future__ import annotations

import os
import re
import string
import sys
from pathlib import Path

import yaml

from ..utils.validation import BadInputError, check_option

__all__ = ["manifest_dirs", "list_manifests", "get_manifest"]

_REQUIRED = ("name", "title", "modality", "citation", "licence", "access", "layout")
_ENTRY_KEYS = {
    "path", "url", "s3", "key", "size", "sha256", "md5", "subjects", "required", "sessions",
    "values", "unpack", "provides", "note",
}  # fmt: skip
_SOURCE_KEYS = ("s3", "openneuro", "url")
_HEX = re.compile(r"[0-9a-f]+")


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
    if not isinstance(data["access"], dict) or "how" not in data["access"]:
        raise BadInputError(f"{path}: 'access' must be a mapping with a 'how' text.")
    _check_source(path, data.get("source"))
    _check_files(path, data)
    return data


def _check_source(path: Path, source) -> None:
    if source is None:
        return
    if not isinstance(source, dict) or len(source) != 1 or next(iter(source)) not in _SOURCE_KEYS:
        raise BadInputError(
            f"{path}: 'source' must be a mapping with one of the keys {list(_SOURCE_KEYS)}, "
            f"got {source!r}."
        )
    kind, value = next(iter(source.items()))
    if kind == "s3" and not str(value).startswith("s3://"):
        raise BadInputError(f"{path}: source.s3 must start with 's3://', got {value!r}.")
    if kind == "url" and not str(value).startswith(("https://", "http://")):
        raise BadInputError(f"{path}: source.url must be an http(s) URL, got {value!r}.")
    if kind == "openneuro" and not re.fullmatch(r"ds\d{6}", str(value)):
        raise BadInputError(f"{path}: source.openneuro must look like 'ds001499', got {value!r}.")


def _placeholders(template: str) -> set[str]:
    return {field.split(".")[0] for _, field, _, _ in string.Formatter().parse(template) if field}


def _check_files(path: Path, data: dict) -> None:
    """Validate the optional ``files:`` list (see the module docstring)."""
    files = data.get("files")
    if files is None:
        return
    if not isinstance(files, list):
        raise BadInputError(
            f"{path}: 'files' must be a list of entries, got {type(files).__name__}."
        )
    for i, entry in enumerate(files):
        where = f"{path}: files[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise BadInputError(f"{where} must be a mapping with a 'path' string, got {entry!r}.")
        where = f"{path}: files[{i}] ({entry['path']})"
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise BadInputError(
                f"{where} has unknown key(s) {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}."
            )
        if entry["path"].startswith("/") or ".." in Path(entry["path"]).parts:
            raise BadInputError(f"{where}: 'path' must be relative and stay inside the root.")
        if sum(k in entry for k in ("url", "s3", "key")) > 1:
            raise BadInputError(f"{where}: give at most one of 'url', 's3' and 'key'.")
        if "s3" in entry and not str(entry["s3"]).startswith("s3://"):
            raise BadInputError(f"{where}: 's3' must start with 's3://', got {entry['s3']!r}.")
        for key, n in (("sha256", 64), ("md5", 32)):
            value = entry.get(key)
            if value is not None and not (
                isinstance(value, str) and len(value) == n and _HEX.fullmatch(value)
            ):
                raise BadInputError(
                    f"{where}: {key!r} must be {n} lower-case hex digits or null, got {value!r}."
                )
        size = entry.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise BadInputError(f"{where}: 'size' must be a byte count or null, got {size!r}.")
        check_option(f"{where}: subjects", entry.get("subjects", "shared"),
                     ("per_subject", "shared"))  # fmt: skip
        if not isinstance(entry.get("required", True), bool):
            raise BadInputError(f"{where}: 'required' must be true or false.")
        names = _placeholders(entry["path"]) | _placeholders(str(entry.get("key", "")))
        url = entry.get("url")
        if isinstance(url, dict):
            if entry.get("subjects", "shared") != "per_subject" or not all(
                isinstance(v, str) for v in url.values()
            ):
                raise BadInputError(
                    f"{where}: a 'url' mapping (subject -> URL) needs 'subjects: per_subject' "
                    "and string URLs."
                )
        elif url is not None and not isinstance(url, str):
            raise BadInputError(f"{where}: 'url' must be a URL, a mapping or null, got {url!r}.")
        names |= _placeholders(url if isinstance(url, str) else "")
        names |= _placeholders(str(entry.get("s3", "")))
        allowed = set(entry.get("values") or {})
        if entry.get("subjects", "shared") == "per_subject":
            allowed |= {"subject", "session"}
        if names - allowed:
            raise BadInputError(
                f"{where}: placeholder(s) {sorted(names - allowed)} have no values (a shared "
                "file cannot use {subject}/{session}; other names go in 'values:')."
            )
        if "session" in names and not (entry.get("sessions") or data.get("sessions_per_subject")):
            raise BadInputError(
                f"{where}: uses {{session}} but neither the entry's 'sessions' nor the "
                "manifest's 'sessions_per_subject' is given."
            )


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
