"""Checksum-verified, resumable downloads of the files a dataset manifest declares.

:func:`fetch_dataset` resolves the ``files:`` entries of ``data_manifests/<name>.yaml`` (see
:mod:`~braindecode_suite.datasets.manifests`) for the requested subjects and downloads each
with :func:`pooch.retrieve` through :class:`ResumableDownloader`, which keeps
``<file>.part`` beside the target and continues it with an HTTP ``Range`` request after a cut
connection. The final name appears only after the size and checksum checks have passed, so a
partial or corrupt file is never mistaken for a whole one. :func:`verify_dataset` checks an
existing copy in place.

S3 locations (``s3://bucket/key``, OpenNeuro ids) are fetched from Amazon's public HTTPS
endpoints; no AWS account or client is needed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import itertools
import logging
import os
import re
import shutil
import string
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..utils.logging import logger, progress_disabled
from ..utils.validation import (
    BadInputError,
    check_option,
    check_path,
    check_positive_int,
    check_type,
)
from .manifests import get_manifest

__all__ = [
    "RemoteFile",
    "ResumableDownloader",
    "fetch_dataset",
    "resolve_files",
    "s3_to_https",
    "verify_dataset",
]

#: Seconds to wait before retry 1, 2, ... of an interrupted download (the last value repeats).
RETRY_WAIT_S = (0.0, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
_CHUNK = 2**20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
#: Statuses of :func:`verify_dataset` that count as present.
PRESENT = ("ok", "unverified", "unpacked")


@dataclass(frozen=True)
class RemoteFile:
    """One concrete file of a dataset, resolved from a manifest entry.

    Attributes
    ----------
    path : str
        Location relative to the dataset root (POSIX separators).
    url : str | None
        HTTPS URL, or None when the file must be downloaded by hand.
    size : int | None
        Size in bytes, when the manifest knows it.
    sha256, md5 : str | None
        Checksums, when the manifest knows them.
    required : bool
        Fetched by default (else only when a ``files`` pattern names it).
    subject : int | None
        The subject of a per-subject file.
    unpack : str | None
        Folder (relative to the root) into which a tar archive is unpacked.
    provides : tuple of str
        Unpacked files whose presence stands for the archive.
    """

    path: str
    url: str | None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    required: bool = True
    subject: int | None = None
    unpack: str | None = None
    provides: tuple[str, ...] = ()

    @property
    def known_hash(self) -> str | None:
        """The checksum in pooch's ``alg:hex`` form, or None."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.md5:
            return f"md5:{self.md5}"
        return None


def s3_to_https(s3_path: str) -> str:
    """The public HTTPS URL of an object in a public S3 bucket.

    ``s3://bucket/key`` becomes ``https://bucket.s3.amazonaws.com/key``; a bucket with dots in
    its name (``openneuro.org``) uses the path style ``https://s3.amazonaws.com/bucket/key``,
    because the virtual-host name would not match Amazon's TLS certificate.

    Parameters
    ----------
    s3_path : str
        ``s3://bucket/key``.

    Returns
    -------
    url : str
    """
    check_type("s3_path", s3_path, str)
    if not s3_path.startswith("s3://") or "/" not in s3_path[5:].strip("/"):
        raise BadInputError(f"s3_path must look like 's3://bucket/key', got {s3_path!r}.")
    bucket, key = s3_path[5:].split("/", 1)
    key = quote(key, safe="/")
    if "." in bucket:
        return f"https://s3.amazonaws.com/{bucket}/{key}"
    return f"https://{bucket}.s3.amazonaws.com/{key}"


def _fields(template: str) -> set[str]:
    return {f.split(".")[0] for _, f, _, _ in string.Formatter().parse(template) if f}


def _parse_subjects(subjects, manifest: dict) -> list[int]:
    allowed = list(manifest.get("subjects") or [])
    if subjects is None:
        return allowed
    if isinstance(subjects, str):
        try:
            subjects = [int(s) for s in subjects.replace(" ", "").split(",") if s]
        except ValueError:
            raise BadInputError(
                f"subjects must be comma-separated integers such as '1,2', got {subjects!r}."
            ) from None
    elif isinstance(subjects, int) and not isinstance(subjects, bool):
        subjects = [subjects]
    check_type("subjects", subjects, (list, tuple, range))
    if not subjects:
        raise BadInputError("subjects is empty: give at least one subject, or None for all.")
    for s in subjects:
        check_option("subjects", s, allowed)
    return list(dict.fromkeys(subjects))


def _entry_url(entry: dict, manifest: dict, key: str, subject: int | None) -> str | None:
    if "url" in entry:
        url = entry["url"]
        if isinstance(url, dict):
            return url.get(subject)
        return url
    if "s3" in entry:
        return s3_to_https(entry["s3"])
    source = manifest.get("source")
    if not source:
        return None
    kind, base = next(iter(source.items()))
    if kind == "s3":
        return s3_to_https(f"{base.rstrip('/')}/{key}")
    if kind == "openneuro":
        return s3_to_https(f"s3://openneuro.org/{base}/{key}")
    return f"{base.rstrip('/')}/{quote(key, safe='/')}"


def _matches(path: str, patterns: Sequence[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def resolve_files(
    name: str,
    *,
    subjects: int | str | Iterable[int] | None = None,
    files: str | Sequence[str] | None = None,
    manifest: dict | None = None,
) -> list[RemoteFile]:
    """The concrete files of dataset ``name`` for the given subjects.

    Parameters
    ----------
    name : str
        Dataset name (``bds datasets list``).
    subjects : int | str | list of int | None
        Subjects (``"1,2"`` is accepted); None for all of the manifest's subjects. Shared files
        are always included.
    files : str | list of str | None
        Glob patterns matched against each file's relative path or its base name; a match
        selects optional files too. None selects the required files.
    manifest : dict | None
        Use this manifest instead of looking ``name`` up.

    Returns
    -------
    files : list of RemoteFile
    """
    manifest = get_manifest(name) if manifest is None else manifest
    subject_list = _parse_subjects(subjects, manifest)
    if isinstance(files, str):
        files = [files]
    if files is not None:
        check_type("files", files, (list, tuple))
        for p in files:
            check_type("files[...]", p, str)
    out: list[RemoteFile] = []
    for entry in manifest.get("files") or []:
        per_subject = entry.get("subjects", "shared") == "per_subject"
        values = dict(entry.get("values") or {})
        for subject in subject_list if per_subject else [None]:
            names = list(values)
            combos = itertools.product(*(values[n] for n in names)) if names else [()]
            for combo in combos:
                fmt = dict(zip(names, combo, strict=True))
                if per_subject:
                    fmt["subject"] = subject
                if per_subject and "session" in _fields(entry["path"]):
                    sessions = entry.get("sessions") or range(
                        1, int(manifest["sessions_per_subject"][subject]) + 1
                    )
                else:
                    sessions = [None]
                for session in sessions:
                    if session is not None:
                        fmt["session"] = session
                    path = entry["path"].format(**fmt)
                    if not (
                        entry.get("required", True) if files is None else _matches(path, files)
                    ):
                        continue
                    key = entry["key"].format(**fmt) if "key" in entry else path
                    url = _entry_url(entry, manifest, key, subject)
                    out.append(
                        RemoteFile(
                            path=path,
                            url=url.format(**fmt) if isinstance(url, str) else None,
                            size=entry.get("size"),
                            sha256=entry.get("sha256"),
                            md5=entry.get("md5"),
                            required=entry.get("required", True),
                            subject=subject,
                            unpack=entry.get("unpack"),
                            provides=tuple(p.format(**fmt) for p in entry.get("provides") or ()),
                        )
                    )
    if files is not None and not out:
        if list(files) == ["*"]:  # the manifest lists no files at all
            raise BadInputError(
                f"the manifest of {name!r} lists no downloadable files; see "
                f"`bds datasets info {name}` for how to obtain the data."
            )
        every = [
            f.path for f in resolve_files(name, subjects=subjects, files=["*"], manifest=manifest)
        ]
        shown = ", ".join(every[:8]) + (", ..." if len(every) > 8 else "")
        raise BadInputError(
            f"files: the pattern(s) {list(files)} match none of the files of {name!r} "
            f"({len(every)} file(s): {shown})."
        )
    return out


def _hash_file(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _file_status(f: RemoteFile, root: Path) -> tuple[str, str]:
    """(status, detail) of ``f`` below ``root``; status in PRESENT or missing/bad_*."""
    target = root / f.path
    if not target.is_file():
        if f.provides and all((root / p).is_file() for p in f.provides):
            return "unpacked", f"archive absent, its files present in {f.unpack}/"
        return "missing", ""
    size = target.stat().st_size
    if f.size is not None and size != f.size:
        return "bad_size", f"{size} bytes, expected {f.size}"
    for alg in ("sha256", "md5"):
        expected = getattr(f, alg)
        if expected:
            actual = _hash_file(target, alg)
            if actual != expected:
                return "bad_checksum", f"{alg} {actual}, expected {expected}"
            return "ok", f"{alg} verified"
    return "unverified", "size checked" if f.size is not None else "no size or checksum known"


class ResumableDownloader:
    """A pooch downloader that resumes interrupted downloads.

    Called by pooch as ``downloader(url, output_file, pooch)``. Bytes go to ``part`` (normally
    ``<target>.part``); when a ``.part`` exists the request carries
    ``Range: bytes=<size>-``: a ``206`` answer is appended, a ``200`` answer restarts the file.
    Only a complete file (the size the server announced, and ``size`` when given) is moved
    to ``output_file``, where pooch checks its hash and renames it to the final name.

    Parameters
    ----------
    part : path-like
        The partial file kept between attempts and between runs.
    size : int | None
        Expected size in bytes.
    progressbar : bool
        Show a tqdm bar (also hidden when the package logs above INFO).
    retries : int
        Resumed attempts after a broken connection or a server error (5xx).
    access_how : str
        How to get access, quoted when the server answers 401/403.
    timeout : float
        Seconds to wait for the server to connect or to send more data.
    desc : str | None
        Label of the progress bar.

    Attributes
    ----------
    hexdigests : dict
        ``{"sha256": ..., "md5": ...}`` of the completed file.
    n_requests : int
        HTTP requests made by the last call.
    """

    def __init__(
        self,
        part: str | os.PathLike,
        *,
        size: int | None = None,
        progressbar: bool = True,
        retries: int = 3,
        access_how: str = "",
        timeout: float = 60.0,
        desc: str | None = None,
    ):
        self.part = Path(part)
        self.size = size
        self.progressbar = progressbar
        self.retries = check_positive_int("retries", retries, minimum=0)
        self.access_how = access_how
        self.timeout = timeout
        self.desc = desc or self.part.name.removesuffix(".part")
        self.hexdigests: dict[str, str] = {}
        self.n_requests = 0
        self._hashers: dict | None = None
        self._hashed = -1

    # -- hashing as we go, so a mismatch can name the actual checksum -------------------------
    def _rehash(self, offset: int) -> None:
        self._hashers = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
        if offset:
            with open(self.part, "rb") as f:
                for block in iter(lambda: f.read(_CHUNK), b""):
                    for h in self._hashers.values():
                        h.update(block)
        self._hashed = offset

    def _check_status(self, resp, url: str, offset: int) -> tuple[str, int | None]:
        """('append'|'restart'|'complete'|'retry', total size or None); raise on refusals."""
        code = resp.status_code
        if code in (401, 403):
            raise BadInputError(
                f"{url}: the server refused the download (HTTP {code}). This file needs a login "
                f"or a data-access agreement: {self.access_how.strip()} (S3 also answers 403 "
                "for a file that does not exist, so the manifest may be outdated.)"
            )
        if code == 404:
            raise BadInputError(
                f"{url}: not found (HTTP 404). The dataset manifest may be outdated: check the "
                "dataset's site and set this file's 'url' in the manifest."
            )
        if code == 416:  # range not satisfiable: the .part is already whole, or too long
            if self.size is not None and offset == self.size:
                return "complete", self.size
            return "restart_empty", None
        if code == 206:
            m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != offset:
                return "restart_empty", None
            return "append", None if m.group(3) == "*" else int(m.group(3))
        if code == 200:
            length = resp.headers.get("Content-Length")
            return "restart", int(length) if length and length.isdigit() else None
        if code >= 500:
            return "retry", None
        raise BadInputError(f"{url}: the server answered HTTP {code} ({resp.reason}).")

    def __call__(self, url: str, output_file, pooch=None, check_only: bool = False):
        import requests
        import urllib3
        from tqdm.auto import tqdm

        if check_only:
            resp = requests.head(url, allow_redirects=True, timeout=self.timeout)
            return resp.status_code == 200
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self.n_requests = 0
        attempt = 0
        while True:
            offset = self.part.stat().st_size if self.part.exists() else 0
            if self.size is not None and offset > self.size:
                self.part.unlink()
                offset = 0
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            problem = None
            try:
                self.n_requests += 1
                with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as resp:
                    action, total = self._check_status(resp, url, offset)
                    if action == "complete":
                        if self._hashed != offset:
                            self._rehash(offset)
                        break
                    if action == "restart_empty":
                        self.part.unlink(missing_ok=True)
                        if offset:  # start again from byte 0 at once; not a failed attempt
                            logger.info("%s: the server cannot continue it; restarting", url)
                            continue
                        problem = "the server answered a range request that was not sent"
                    elif action == "retry":
                        problem = f"HTTP {resp.status_code}"
                    else:
                        if action == "restart":
                            if offset:
                                logger.info("%s: the server ignored the Range; restarting", url)
                            offset = 0
                        if self._hashed != offset:
                            self._rehash(offset)
                        with (
                            open(self.part, "ab" if offset else "wb") as out,
                            tqdm(
                                total=total, initial=offset, unit="B", unit_scale=True,
                                unit_divisor=1024, desc=self.desc, leave=False,
                                disable=not self.progressbar or progress_disabled(),
                            ) as bar,
                        ):  # fmt: skip
                            for chunk in _raw_chunks(resp.raw):
                                out.write(chunk)
                                for h in self._hashers.values():
                                    h.update(chunk)
                                self._hashed += len(chunk)
                                bar.update(len(chunk))
                        got = self.part.stat().st_size
                        if total is not None and got < total:
                            problem = f"connection closed after {got} of {total} bytes"
                    if problem is None:
                        break
            except (requests.RequestException, urllib3.exceptions.HTTPError) as err:
                problem = f"{type(err).__name__}: {err}"
            attempt += 1
            have = self.part.stat().st_size if self.part.exists() else 0
            if attempt > self.retries:
                raise BadInputError(
                    f"{url}: the download failed after {attempt} attempt(s) ({problem}). "
                    f"{have} bytes are kept in {self.part}: run the same command again to "
                    "resume."
                )
            wait = RETRY_WAIT_S[min(attempt - 1, len(RETRY_WAIT_S) - 1)]
            logger.warning(
                "%s: %s; resuming from byte %d (attempt %d of %d)",
                self.desc, problem, have, attempt + 1, self.retries + 1,
            )  # fmt: skip
            time.sleep(wait)
        got = self.part.stat().st_size
        if self.size is not None and got != self.size:
            self.part.unlink()
            raise BadInputError(
                f"{url}: downloaded {got} bytes but the manifest expects {self.size}; the "
                "download was deleted. The manifest may be outdated."
            )
        self.hexdigests = {k: h.hexdigest() for k, h in self._hashers.items()}
        os.replace(self.part, output_file)


def _raw_chunks(raw):
    """The body's bytes as sent (no decompression), keeping what came before a cut."""
    read1 = getattr(raw, "read1", None)  # urllib3 >= 2: returns what has arrived
    if read1 is None:
        yield from raw.stream(_CHUNK, decode_content=False)
        return
    while chunk := read1(_CHUNK, decode_content=False):
        yield chunk


@contextlib.contextmanager
def _quiet_pooch():
    """Pooch logs each download and advises on hashes at INFO: we log our own messages."""
    import pooch

    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        pooch_logger.setLevel(level)


def _download(f: RemoteFile, root: Path, *, access_how: str, progress: bool, retries: int):
    import pooch

    target = root / f.path
    downloader = ResumableDownloader(
        target.with_name(target.name + ".part"),
        size=f.size,
        progressbar=progress,
        retries=retries,
        access_how=access_how,
        desc=f.path,
    )
    logger.info("downloading %s from %s", f.path, f.url)
    try:
        with _quiet_pooch():
            pooch.retrieve(
                f.url,
                known_hash=f.known_hash,
                fname=target.name,
                path=target.parent,
                downloader=downloader,
                progressbar=False,
            )
    except BadInputError:
        raise
    except ValueError as err:  # pooch: hash mismatch (it deleted the download)
        if f.known_hash is None or "hash" not in str(err):
            raise
        alg, expected = f.known_hash.split(":")
        actual = downloader.hexdigests.get(alg) or "unknown"
        raise BadInputError(
            f"{f.path}: checksum mismatch: expected {alg} {expected}, got {actual} from "
            f"{f.url}. The bad download was deleted; the file may have changed upstream (the "
            "manifest would then be outdated) or the transfer was corrupted."
        ) from None
    if f.known_hash is None:
        logger.warning(
            "%s is unverified: the manifest has no checksum for it%s (its sha256 is %s)",
            f.path,
            f"; its size ({f.size} bytes) matches" if f.size is not None else "",
            downloader.hexdigests.get("sha256"),
        )
    else:
        logger.info("%s: %s verified", f.path, f.known_hash.split(":")[0])
    return target


def _unpack(archive: Path, out_dir: Path) -> None:
    """Unpack a tar archive into ``out_dir``; each top-level member appears whole or not."""
    out_dir.mkdir(parents=True, exist_ok=True)
    logger.info("unpacking %s into %s", archive.name, out_dir)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".unpack-") as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        for child in Path(tmp).iterdir():
            final = out_dir / child.name
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            elif final.exists():
                final.unlink()
            os.replace(child, final)


def fetch_dataset(
    name: str,
    dest: str | os.PathLike,
    *,
    subjects: int | str | Iterable[int] | None = None,
    files: str | Sequence[str] | None = None,
    progress: bool = True,
    retries: int = 3,
) -> list[Path]:
    """Download a dataset's files into ``dest``, verified and resumable.

    Files already in ``dest`` with the right checksum (or, without one, the right size) are
    not downloaded again, so ``dest`` may be an existing copy. A file with no checksum in the
    manifest is reported as unverified, never trusted silently. Files the manifest gives no URL
    for (downloads behind a browser form) are named in a warning together with the manifest's
    access terms.

    Parameters
    ----------
    name : str
        Dataset name (``bds datasets list``).
    dest : path-like
        Dataset root; created when absent. Files keep their manifest paths below it.
    subjects : int | str | list of int | None
        Subjects to fetch (``"1,2"`` is accepted); None for all. Shared files always come.
    files : str | list of str | None
        Glob patterns on the relative path or base name (``"*nsdgeneral*"``); they also select
        optional files. None fetches the required files.
    progress : bool
        Show progress bars.
    retries : int
        Resumed attempts per file after a broken connection.

    Returns
    -------
    paths : list of Path
        The files now present (downloaded or already there; for an unpacked archive whose
        archive was removed, its provided files).
    """
    check_type("dest", dest, (str, os.PathLike))
    manifest = get_manifest(name)
    root = Path(dest).expanduser()
    if root.exists() and not root.is_dir():
        raise BadInputError(f"dest: {str(root)!r} exists and is not a directory.")
    if not manifest.get("files"):
        raise BadInputError(
            f"Dataset {name!r} declares no files to download: {manifest['access']['how']}"
        )
    retries = check_positive_int("retries", retries, minimum=0)
    wanted = resolve_files(name, subjects=subjects, files=files, manifest=manifest)
    root.mkdir(parents=True, exist_ok=True)
    access_how = str(manifest["access"]["how"])
    present: list[Path] = []
    manual: list[RemoteFile] = []
    unverified = 0
    for f in wanted:
        status, detail = _file_status(f, root)
        if status in PRESENT:
            logger.info("%s already present (%s): not downloaded again", f.path, detail)
            unverified += status != "ok"
            if status == "unpacked":
                present.extend(root / p for p in f.provides)
                continue
        elif f.url is None:
            manual.append(f)
            if status != "missing":
                logger.warning("%s is damaged (%s) and has no download URL", f.path, detail)
            continue
        else:
            if status != "missing":
                logger.warning("%s is damaged (%s): downloading it again", f.path, detail)
                (root / f.path).unlink()
            _download(f, root, access_how=access_how, progress=progress, retries=retries)
        if f.unpack and (
            status not in PRESENT or not all((root / p).is_file() for p in f.provides)
        ):
            _unpack(root / f.path, root / f.unpack)
        present.append(root / f.path)
    if unverified:
        logger.warning(
            "%d file(s) already in %s were kept unverified (no checksum in the manifest); "
            "`bds datasets verify` lists them",
            unverified, root,
        )  # fmt: skip
    if manual:
        shown = "\n  ".join(m.path for m in manual[:20]) + ("\n  ..." if len(manual) > 20 else "")
        logger.warning(
            "%d file(s) of %r have no download URL and must be fetched by hand into %s:\n  %s\n%s",
            len(manual), name, root, shown, access_how.strip(),
        )  # fmt: skip
    return present


def verify_dataset(
    name: str,
    data_dir: str | os.PathLike,
    subjects: int | str | Iterable[int] | None = None,
    *,
    files: str | Sequence[str] | None = None,
) -> dict:
    """Check an existing copy of a dataset against its manifest, in place.

    Parameters
    ----------
    name : str
        Dataset name.
    data_dir : path-like
        The dataset root.
    subjects : int | str | list of int | None
        Subjects to check; None for all.
    files : str | list of str | None
        Glob patterns (see :func:`fetch_dataset`); None checks the required files.

    Returns
    -------
    report : dict
        ``files``: {relative path: {"status", "required", "detail"}} with status one of
        ``ok`` (checksum verified), ``unverified`` (present; size checked when known),
        ``unpacked`` (archive gone, its files present), ``missing``, ``bad_size``,
        ``bad_checksum``; ``counts`` per status; ``complete``: every required file present and
        not bad; ``dataset`` and ``data_dir``.
    """
    root = check_path("data_dir", data_dir, kind="dir")
    manifest = get_manifest(name)
    report: dict[str, dict] = {}
    for f in resolve_files(name, subjects=subjects, files=files, manifest=manifest):
        status, detail = _file_status(f, root)
        report[f.path] = {"status": status, "required": f.required, "detail": detail}
    counts = Counter(r["status"] for r in report.values())
    complete = all(r["status"] in PRESENT for r in report.values() if r["required"])
    return {
        "dataset": name,
        "data_dir": str(root),
        "files": report,
        "counts": dict(counts),
        "complete": complete,
    }
