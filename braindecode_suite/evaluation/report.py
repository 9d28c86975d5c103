"""Figures and a self-contained HTML report of a reconstruction run.

The HTML page embeds its images as base64, so it can be mailed or archived as one file. Its
first element is a highlighted box of provenance statements (what is simulated, which weights
are untrained), so that nobody reads a number without its caveats.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.io import atomic_path
from ..utils.validation import BadInputError, check_path, check_positive_int, check_type
from .metrics import _as_float_images, resize_images

__all__ = ["make_grid", "save_grid", "write_report_html"]

#: Height in pixels of the text row above each tile.
LABEL_HEIGHT = 12
#: Pairs per row of the grid.
PAIRS_PER_ROW = 8

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _fit_text(draw, text: str, width: int, font) -> str:
    """Shorten ``text`` with an ellipsis until it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…" if text else ""


def make_grid(
    gt,
    recon,
    *,
    n_max: int = 16,
    tile: int = 128,
    labels: tuple[str, str] = ("stimulus", "reconstruction"),
):
    """Build a grid image of stimulus / reconstruction pairs.

    Each pair is one column: a label row, the stimulus, a label row, the reconstruction.
    Pairs are laid out left to right, ``PAIRS_PER_ROW`` (8) to a row. The image is
    ``min(n, 8) * tile`` pixels wide and ``n_rows * 2 * (tile + LABEL_HEIGHT)`` high, with
    ``n = min(len(gt), n_max)`` and ``n_rows = ceil(n / 8)``.

    Parameters
    ----------
    gt, recon : ndarray of shape (n_images, height, width, 3)
        Stimuli and reconstructions in the same order (uint8 or float in [0, 1]); resized to
        ``tile x tile``.
    n_max : int
        Show at most this many pairs (the first ones).
    tile : int
        Side of each image in pixels.
    labels : (str, str)
        Text above the stimulus and above the reconstruction (shortened to fit the tile).

    Returns
    -------
    grid : PIL.Image.Image
        RGB image.
    """
    from PIL import Image, ImageDraw, ImageFont

    n_max = check_positive_int("n_max", n_max)
    tile = check_positive_int("tile", tile)
    check_type("labels", labels, (tuple, list))
    if len(labels) != 2:
        raise BadInputError(
            f"labels must hold 2 strings (stimulus, reconstruction), got {len(labels)}."
        )
    gt = _as_float_images("gt", gt)
    recon = _as_float_images("recon", recon)
    if len(gt) != len(recon):
        raise BadInputError(
            f"gt and recon must hold the same number of images, got {len(gt)} and {len(recon)}."
        )
    n = min(len(gt), n_max)
    gt_u8 = np.round(resize_images(gt[:n], tile) * 255).astype(np.uint8)
    recon_u8 = np.round(resize_images(recon[:n], tile) * 255).astype(np.uint8)

    n_cols = min(n, PAIRS_PER_ROW)
    n_rows = math.ceil(n / PAIRS_PER_ROW)
    block_h = 2 * (tile + LABEL_HEIGHT)
    grid = Image.new("RGB", (n_cols * tile, n_rows * block_h), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    texts = [_fit_text(draw, str(label), tile - 2, font) for label in labels]
    for k in range(n):
        x = (k % PAIRS_PER_ROW) * tile
        y = (k // PAIRS_PER_ROW) * block_h
        for part, (img, text) in enumerate(zip((gt_u8[k], recon_u8[k]), texts, strict=True)):
            y0 = y + part * (tile + LABEL_HEIGHT)
            draw.text((x + 1, y0), text, fill="black", font=font)
            grid.paste(Image.fromarray(img, mode="RGB"), (x, y0 + LABEL_HEIGHT))
    return grid


def save_grid(path: str | os.PathLike, gt, recon, **kw) -> Path:
    """Build :func:`make_grid` and write it as a PNG, atomically.

    Parameters
    ----------
    path : str | PathLike
        Destination ``.png`` file; parent folders are created.
    gt, recon : ndarray of shape (n_images, height, width, 3)
    **kw
        Passed to :func:`make_grid`.

    Returns
    -------
    path : Path
    """
    check_type("path", path, (str, os.PathLike))
    grid = make_grid(gt, recon, **kw)
    path = Path(path)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path


# --------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
.provenance { background: #fff4ce; border: 2px solid #e0a800; border-radius: 6px;
  padding: 0.8em 1.2em; margin-bottom: 1.5em; }
.provenance h2 { margin-top: 0; font-size: 1.1em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.9em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; image-rendering: pixelated; }
"""

#: Keys of a metric entry; a dict with none of them is a group of metrics.
_VALUE_KEYS = ("mean", "value")
_CI_KEYS = ("ci", "ci95")
_CHANCE_KEYS = ("chance",)
_P_KEYS = ("p_value", "pvalue", "p")
_ENTRY_KEYS = _VALUE_KEYS + _CI_KEYS + _CHANCE_KEYS + _P_KEYS


def _fmt(value: Any) -> str:
    """Format one table cell (already escaped); blank for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return html.escape(str(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 else f"{value:.4g}"
    return html.escape(str(value))


def _first(entry: Mapping, keys: Sequence[str]) -> Any:
    for key in keys:
        if key in entry:
            return entry[key]
    return None


def _flatten_metrics(metrics: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": {"mean": 1}}}`` -> ``[("a/b", {"mean": 1})]``; scalars stay as they are."""
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not any(k in value for k in _ENTRY_KEYS):
            rows.extend(_flatten_metrics(value, prefix=f"{name}/"))
        else:
            rows.append((name, value))
    return rows


def _metric_row(name: str, entry: Any) -> str:
    if isinstance(entry, Mapping):
        value = _first(entry, _VALUE_KEYS)
        ci = _first(entry, _CI_KEYS)
        chance = _first(entry, _CHANCE_KEYS)
        pvalue = _first(entry, _P_KEYS)
    else:
        value, ci, chance, pvalue = entry, None, None, None
    if ci is None:
        ci_text = ""
    elif isinstance(ci, (list, tuple, np.ndarray)) and len(ci) == 2:
        ci_text = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"
    else:
        ci_text = _fmt(ci)
    cells = [f"<td>{html.escape(name)}</td>"]
    cells += [f'<td class="num">{text}</td>' for text in (_fmt(value), ci_text, _fmt(chance))]
    cells.append(f'<td class="num">{_fmt(pvalue)}</td>')
    return "<tr>" + "".join(cells) + "</tr>"


def _metrics_table(metrics: Mapping) -> str:
    rows = [_metric_row(name, entry) for name, entry in _flatten_metrics(metrics)]
    if not rows:
        return "<p>No metrics were computed.</p>"
    head = "<tr><th>metric</th><th>value</th><th>95% CI</th><th>chance</th><th>p-value</th></tr>"
    return '<table class="metrics">\n' + head + "\n" + "\n".join(rows) + "\n</table>"


def _stages_table(stages: Sequence[Mapping]) -> str:
    if not stages:
        return "<p>No stage records were given.</p>"
    head = (
        "<tr><th>stage</th><th>status</th><th>wall time (s)</th><th>peak memory (MB)</th>"
        "<th>fingerprint</th></tr>"
    )
    rows = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, Mapping):
            raise TypeError(f"stages[{i}] must be a dict, got {type(stage).__name__} instead.")
        fp = stage.get("fingerprint")
        fp_cell = f"<code>{html.escape(str(fp))}</code>" if fp is not None else ""
        rows.append(
            f"<tr><td>{_fmt(stage.get('name'))}</td><td>{_fmt(stage.get('status'))}</td>"
            f'<td class="num">{_fmt(stage.get("wall_time_s"))}</td>'
            f'<td class="num">{_fmt(stage.get("peak_memory_mb"))}</td><td>{fp_cell}</td></tr>'
        )
    return '<table class="stages">\n' + head + "\n" + "\n".join(rows) + "\n</table>"


def _figures(images: Mapping[str, str | os.PathLike]) -> str:
    parts = []
    for caption, png in images.items():
        png = check_path(f"images[{caption!r}]", png, kind="file")
        data = png.read_bytes()
        if data.startswith(_PNG_SIGNATURE):
            mime = "image/png"
        elif data[:6] in (b"GIF87a", b"GIF89a"):
            mime = "image/gif"  # turntables of 3D reconstructions
        else:
            raise BadInputError(
                f"images[{caption!r}]: {str(png)!r} is not a PNG or GIF file; save figures "
                "as PNG (e.g. with save_grid)."
            )
        b64 = base64.b64encode(data).decode("ascii")
        parts.append(
            f'<figure><img src="data:{mime};base64,{b64}" alt="{html.escape(str(caption))}">'
            f"<figcaption>{html.escape(str(caption))}</figcaption></figure>"
        )
    return "\n".join(parts)


def write_report_html(
    path: str | os.PathLike,
    *,
    title: str,
    metrics: Mapping[str, Any],
    images: Mapping[str, str | os.PathLike],
    provenance: Sequence[str],
    stages: Sequence[Mapping[str, Any]],
    extra_html: str = "",
) -> Path:
    """Write a self-contained HTML report, atomically.

    Parameters
    ----------
    path : str | PathLike
        Destination ``.html`` file; parent folders are created.
    title : str
        Page title and heading.
    metrics : dict
        ``{name: entry}``. An entry is a number, or a dict with any of ``mean`` (or
        ``value``), ``ci`` (``[low, high]``), ``chance`` and ``p_value``. A dict with none of
        these keys is a group whose entries are listed as ``group/name``. Rendered as a table
        metric | value | 95% CI | chance | p-value, blank where missing.
    images : dict of str to path
        Caption to PNG file; each is embedded as ``data:image/png;base64``.
    provenance : list of str
        Plain-language statements ("Brain responses are SIMULATED ..."), shown first, in a
        highlighted box.
    stages : list of dict
        One per stage, with ``name``, ``status``, ``wall_time_s``, ``peak_memory_mb`` and
        ``fingerprint`` (missing keys are left blank).
    extra_html : str
        Trusted HTML appended at the end of the body, unescaped.

    Returns
    -------
    path : Path

    Notes
    -----
    Every piece of text from the arguments except ``extra_html`` is escaped with
    :func:`html.escape`.
    """
    from .. import __version__

    check_type("path", path, (str, os.PathLike))
    check_type("title", title, str)
    check_type("metrics", metrics, Mapping)
    check_type("images", images, Mapping)
    check_type("extra_html", extra_html, str)
    if isinstance(provenance, str):
        raise TypeError("provenance must be a list of statements, got a single str instead.")
    check_type("provenance", provenance, (list, tuple))
    check_type("stages", stages, (list, tuple))

    if provenance:
        items = "\n".join(f"<li>{html.escape(str(s))}</li>" for s in provenance)
        prov = f"<ul>\n{items}\n</ul>"
    else:
        prov = "<p>No provenance statements were recorded for this run.</p>"

    esc_title = html.escape(title)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc_title}</title>
<style>{_CSS}</style>
</head>
<body>
<div class="provenance" role="note">
<h2>Provenance: read this first</h2>
{prov}
</div>
<h1>{esc_title}</h1>
<h2>Metrics</h2>
{_metrics_table(metrics)}
<h2>Figures</h2>
{_figures(images) or "<p>No figures.</p>"}
<h2>Stages</h2>
{_stages_table(stages)}
{extra_html}
<footer><p>Written by braindecode_suite {html.escape(__version__)}.</p></footer>
</body>
</html>
"""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
