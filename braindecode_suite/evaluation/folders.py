"""Pair two folders of images for evaluation: ours, or any other method's outputs.

Reconstructions and ground truth are matched by file name (the stem, so
``0001.png`` pairs with ``0001.jpg``), or by a CSV with columns ``pred`` and
``gt`` (paths relative to the two folders). Images are read as RGB uint8;
pairs of different sizes are fine (the metrics resize them per protocol), but
within one side all images must share a size so they stack.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils.io import atomic_path, write_json_atomic
from ..utils.validation import BadInputError, check_path

__all__ = ["IMAGE_SUFFIXES", "ImagePairs", "evaluate_folders", "load_image_pairs"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class ImagePairs:
    """Matched reconstructions and ground truth.

    Attributes
    ----------
    names : list of str
        One name per pair (the shared stem, or the CSV's ``pred`` entry).
    pred, gt : ndarray of shape (n, H, W, 3), uint8
    pred_files, gt_files : list of Path
    """

    names: list[str]
    pred: np.ndarray
    gt: np.ndarray
    pred_files: list[Path]
    gt_files: list[Path]

    def __len__(self) -> int:
        return len(self.names)


def _images_in(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            if p.stem in out:
                raise BadInputError(
                    f"{str(folder)!r} holds two images named {p.stem!r} ({out[p.stem].name}, "
                    f"{p.name}); pair them with a CSV (--pairs) instead."
                )
            out[p.stem] = p
    return out


def _read_stack(files: list[Path], side: str) -> np.ndarray:
    from PIL import Image

    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert("RGB")))
        except OSError as err:
            raise BadInputError(f"{side}: cannot read {str(f)!r} as an image: {err}") from None
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        raise BadInputError(
            f"{side}: the images have different sizes {shapes[:3]}; resize them to one size "
            "first (the metrics then resize per protocol)."
        )
    return np.stack(arrays)


def load_image_pairs(pred_dir, gt_dir, *, pairs=None) -> ImagePairs:
    """Read matched reconstruction / ground-truth images from two folders.

    Parameters
    ----------
    pred_dir, gt_dir : path
        Folders of images (png, jpg, bmp, tif, webp).
    pairs : path, optional
        A CSV with a header row holding ``pred`` and ``gt`` columns: file names
        relative to ``pred_dir`` and ``gt_dir``. Without it, files pair by stem and
        every stem must be on both sides.

    Returns
    -------
    ImagePairs
        In CSV order, or sorted by stem.
    """
    pred_dir = check_path("pred_dir", pred_dir, kind="dir")
    gt_dir = check_path("gt_dir", gt_dir, kind="dir")
    if pairs is not None:
        pairs = check_path("pairs", pairs, kind="file")
        with open(pairs, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"pred", "gt"} <= set(rows[0]):
            raise BadInputError(
                f"pairs: {str(pairs)!r} must be a CSV with a header holding 'pred' and 'gt' "
                f"columns, got columns {sorted(rows[0]) if rows else []}."
            )
        names = [r["pred"] for r in rows]
        pred_files = [pred_dir / r["pred"] for r in rows]
        gt_files = [gt_dir / r["gt"] for r in rows]
        missing = [str(p) for p in pred_files + gt_files if not p.is_file()]
        if missing:
            raise BadInputError(
                f"pairs: {len(missing)} listed file(s) do not exist, e.g. {missing[:3]}."
            )
    else:
        pred, gt = _images_in(pred_dir), _images_in(gt_dir)
        if not pred:
            raise BadInputError(f"pred_dir: no images in {str(pred_dir)!r} ({IMAGE_SUFFIXES}).")
        only_pred, only_gt = sorted(set(pred) - set(gt)), sorted(set(gt) - set(pred))
        if only_pred or only_gt:
            raise BadInputError(
                "pred_dir and gt_dir must hold the same image names (stems): "
                f"{len(only_pred)} only in pred_dir (e.g. {only_pred[:3]}), "
                f"{len(only_gt)} only in gt_dir (e.g. {only_gt[:3]}). "
                "Pair them with a CSV (pairs=) if the names differ."
            )
        names = sorted(pred)
        pred_files = [pred[n] for n in names]
        gt_files = [gt[n] for n in names]
    if len(names) < 2:
        raise BadInputError(
            f"need at least 2 image pairs to evaluate (identification compares pairs), "
            f"got {len(names)}."
        )
    return ImagePairs(
        names=names,
        pred=_read_stack(pred_files, "pred_dir"),
        gt=_read_stack(gt_files, "gt_dir"),
        pred_files=pred_files,
        gt_files=gt_files,
    )


def evaluate_folders(
    pred_dir,
    gt_dir,
    out_dir,
    *,
    protocol: str = "mindeye2",
    metrics=None,
    pairs=None,
    device: str = "auto",
    batch_size: int = 32,
    n_boot: int = 1000,
    random_state: int = 0,
    weights=None,
    networks=None,
) -> dict:
    """Score a folder of reconstructions against a folder of stimuli with a paper's protocol.

    Writes into ``out_dir`` (each file atomically): ``metrics.json`` (values, 95 % CIs, n,
    protocol, weights used; metrics whose network weights are absent are listed as
    missing with the reason), ``table.md`` (our row beside the published rows, laid out like
    the papers' tables), one ``best_median_worst_<metric>.png`` per metric and ``report.html``.

    Parameters
    ----------
    pred_dir, gt_dir, pairs
        As for :func:`load_image_pairs`.
    out_dir : path
        Created if needed.
    protocol, metrics, device, batch_size, n_boot, random_state, weights, networks
        As for :func:`~braindecode_suite.evaluation.protocols.evaluate_protocol`.

    Returns
    -------
    results : dict
        What ``metrics.json`` holds.
    """
    import html

    from .protocols import evaluate_protocol, format_paper_table, paper_table
    from .report import save_grid, write_report_html

    data = load_image_pairs(pred_dir, gt_dir, pairs=pairs)
    results = evaluate_protocol(
        data.pred,
        data.gt,
        protocol=protocol,
        metrics=metrics,
        device=device,
        batch_size=batch_size,
        n_boot=n_boot,
        random_state=random_state,
        weights=weights,
        networks=networks,
        per_item=True,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {}
    for name, entry in results.items():
        values = entry.get("values") if isinstance(entry, dict) else None
        if not values:
            continue
        v = np.asarray(values, dtype=float)
        order = np.argsort(-v if entry.get("direction", "higher") == "higher" else v, kind="stable")
        picks = [int(order[0]), int(order[len(order) // 2]), int(order[-1])]
        path = out_dir / f"best_median_worst_{name.replace('/', '_')}.png"
        save_grid(path, data.gt[picks], data.pred[picks], labels=("stimulus", name))
        images[
            f"{name}: best, median, worst reconstruction "
            f"({', '.join(data.names[i] for i in picks)})"
        ] = path
    results["_meta"] = {
        **results.get("_meta", {}),
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
        "pairs": [[p.name, g.name] for p, g in zip(data.pred_files, data.gt_files, strict=True)],
    }
    write_json_atomic(out_dir / "metrics.json", results)
    table = format_paper_table(paper_table(results, label=f"{Path(pred_dir).name} (ours)"))
    with atomic_path(out_dir / "table.md") as tmp:
        tmp.write_text(table + "\n")
    shown = {
        k: {kk: vv for kk, vv in v.items() if kk != "values"} if isinstance(v, dict) else v
        for k, v in results.items()
        if not k.startswith("_")
    }
    write_report_html(
        out_dir / "report.html",
        title=f"Evaluation of {pred_dir} ({protocol} protocol)",
        metrics=shown,
        images=images,
        provenance=[
            f"{len(data)} reconstruction/stimulus pairs from {pred_dir} and {gt_dir}, "
            f"scored with the {protocol!r} protocol (docs/evaluation.md)."
        ],
        stages=[],
        extra_html="<h2>Beside the published rows</h2>\n<pre>" + html.escape(table) + "</pre>",
    )
    return results
