"""Input checks shared by every user-facing function.

Messages name the parameter, what was received and what was expected, in the
manner of MNE-Python's ``_check_option`` / ``_validate_type``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "BadInputError",
    "BadTypeError",
    "check_option",
    "check_type",
    "check_path",
    "check_positive_int",
    "check_array",
    "check_mesh",
]


class BadInputError(ValueError):
    """Raised for input a user can fix (bad value, missing file, bad config).

    The CLI turns it into exit code 2 with one message and no traceback.
    """


class BadTypeError(BadInputError, TypeError):
    """A wrong type given by the user: both a ``TypeError`` and a :class:`BadInputError`."""


def _did_you_mean(value: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_option(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``allowed``; return it."""
    allowed = list(allowed)
    if value in allowed:
        return value
    listed = ", ".join(repr(a) for a in allowed)
    raise BadInputError(
        f"Invalid value for the {name!r} parameter. Allowed values are {listed}, "
        f"but got {value!r} instead.{_did_you_mean(value, allowed)}"
    )


def check_type(name: str, value: Any, types: type | tuple[type, ...]) -> Any:
    """Check ``isinstance(value, types)``; raise ``TypeError`` naming ``name``."""
    if isinstance(value, types):
        return value
    if isinstance(types, tuple):
        expected = " or ".join(t.__name__ for t in types)
    else:
        expected = types.__name__
    raise BadTypeError(
        f"{name} must be an instance of {expected}, got {type(value).__name__} instead."
    )


def check_path(
    name: str,
    value: str | os.PathLike,
    *,
    must_exist: bool = True,
    kind: str = "any",
    hint: str = "",
) -> Path:
    """Return ``value`` as a :class:`~pathlib.Path`, checking it exists.

    Parameters
    ----------
    name : str
        Parameter name, used in the message.
    value : str | PathLike
        The path.
    must_exist : bool
        Raise when the path does not exist.
    kind : 'any' | 'file' | 'dir'
        What the path must be.
    hint : str
        Appended to the message: what the user should do.
    """
    check_type(name, value, (str, os.PathLike))
    check_option("kind", kind, ("any", "file", "dir"))
    path = Path(value).expanduser()
    extra = f" {hint}" if hint else ""
    if must_exist and not path.exists():
        raise BadInputError(f"{name}: {str(path)!r} does not exist.{extra}")
    if must_exist and kind == "file" and not path.is_file():
        raise BadInputError(f"{name}: {str(path)!r} is not a file.{extra}")
    if must_exist and kind == "dir" and not path.is_dir():
        raise BadInputError(f"{name}: {str(path)!r} is not a directory.{extra}")
    return path


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Check that ``value`` is an integer >= ``minimum``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int,))
        and not (hasattr(value, "__index__"))
    ):
        raise BadTypeError(
            f"{name} must be an int, got {type(value).__name__} ({value!r}) instead."
        )
    value = int(value)
    if value < minimum:
        raise BadInputError(f"{name} must be >= {minimum}, got {value} instead.")
    return value


def check_array(name: str, value: Any, *, ndim: int | None = None, finite: bool = True):
    """Return ``value`` as a NumPy array, checking dimensionality and finiteness."""
    import numpy as np

    arr = np.asarray(value)
    if ndim is not None and arr.ndim != ndim:
        raise BadInputError(
            f"{name} must be a {ndim}-D array, got shape {arr.shape} ({arr.ndim}-D) instead."
        )
    if finite and arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise BadInputError(f"{name} contains {n_bad} non-finite values (NaN or inf).")
    return arr


def check_mesh(vertices, faces) -> tuple:
    """Validate a triangle mesh: ``(n_vertices, 3)`` finite numbers, ``(n_faces, 3)`` indices.

    Returns
    -------
    vertices : ndarray of float64
    faces : ndarray of int64
    """
    import numpy as np

    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or v.dtype.kind not in "iuf":
        raise BadInputError(
            f"vertices must be a numeric array of shape (n_vertices >= 1, 3), got shape "
            f"{v.shape} and dtype {v.dtype}."
        )
    if not np.isfinite(v).all():
        raise BadInputError("vertices holds NaN or infinite values.")
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.dtype.kind not in "iu":
        raise BadInputError(
            f"faces must be integer vertex indices of shape (n_faces >= 1, 3), got shape "
            f"{f.shape} and dtype {f.dtype}."
        )
    if f.min() < 0 or f.max() >= len(v):
        raise BadInputError(
            f"faces must index vertices 0..{len(v) - 1}, got indices {f.min()}..{f.max()}."
        )
    return v.astype(np.float64), f.astype(np.int64)
