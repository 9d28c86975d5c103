"""Clear errors for model weights that cannot be loaded (not downloaded, offline).

``from_pretrained`` raises a bare ``OSError`` when a Hub id is neither in the
Hugging Face cache nor downloadable (e.g. ``HF_HUB_OFFLINE=1`` or no network).
:func:`explain_missing_weights` turns it into a :class:`BadInputError` that says
how to download the weights or which local folder to pass instead.
"""

from __future__ import annotations

import contextlib

from .validation import BadInputError

__all__ = ["explain_missing_weights", "missing_weights_error"]


def missing_weights_error(
    what: str, name, err: Exception, *, subfolder: str | None = None, hint: str = ""
) -> BadInputError:
    """The error for weights ``name`` that could not be loaded.

    Parameters
    ----------
    what : str
        What was being loaded, e.g. ``"Stable unCLIP pipeline"``.
    name : str or path
        The Hub id or folder that was given.
    err : Exception
        The loader's error; its message (whitespace collapsed) is quoted.
    subfolder : str, optional
        Only this subfolder of the repository is needed: named in the message and
        in the download command (``--include '<subfolder>/*'``).
    hint : str
        Extra advice appended to the message (e.g. ``"; 'tiny' gives ..."``).

    Returns
    -------
    BadInputError
        To be raised ``from err``.
    """
    where = f" (subfolder {subfolder!r})" if subfolder else ""
    include = f" --include '{subfolder}/*'" if subfolder else ""
    reason = " ".join(str(err).split()).rstrip(".")
    return BadInputError(
        f"Could not load the {what} {str(name)!r}{where}: {reason}. Download it first while "
        f"online (e.g. `huggingface-cli download {name}{include}`, or run once without "
        "HF_HUB_OFFLINE=1), or pass the path of a local folder saved with "
        f"`save_pretrained(...)`{hint}."
    )


@contextlib.contextmanager
def explain_missing_weights(
    what: str,
    name,
    *,
    subfolder: str | None = None,
    hint: str = "",
    errors: tuple[type[BaseException], ...] = (OSError,),
):
    """Context manager: ``errors`` raised inside become :func:`missing_weights_error`.

    Examples
    --------
    >>> with explain_missing_weights("Stable unCLIP pipeline", name):  # doctest: +SKIP
    ...     pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(name)
    """
    try:
        yield
    except errors as err:
        raise missing_weights_error(what, name, err, subfolder=subfolder, hint=hint) from err
