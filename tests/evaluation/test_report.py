"""Grid figure and HTML report."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from braindecode_suite.evaluation import make_grid, save_grid, write_report_html
from braindecode_suite.evaluation.report import LABEL_HEIGHT
from braindecode_suite.utils.io import TMP_MARKER
from braindecode_suite.utils.validation import BadInputError


@pytest.fixture
def pairs():
    rng = np.random.default_rng(0)
    gt = (rng.random((5, 20, 24, 3)) * 255).astype(np.uint8)
    recon = rng.random((5, 30, 30, 3)).astype(np.float32)
    return gt, recon


def test_grid_size_one_row(pairs):
    grid = make_grid(*pairs, tile=32)
    # 5 pairs fit in one row of 8: 5 tiles wide; stimulus + reconstruction, each with a label row.
    assert grid.size == (5 * 32, 2 * (32 + LABEL_HEIGHT))
    assert grid.mode == "RGB"


def test_grid_size_wraps_and_caps():
    rng = np.random.default_rng(1)
    x = rng.random((20, 9, 9, 3))
    grid = make_grid(x, x, tile=16, n_max=10)  # 10 pairs -> rows of 8 and 2
    assert grid.size == (8 * 16, 2 * 2 * (16 + LABEL_HEIGHT))
    assert make_grid(x, x, tile=16).size == (8 * 16, 2 * 2 * (16 + LABEL_HEIGHT))  # n_max=16


def test_grid_places_images():
    gt = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    gt[1] = 255
    recon = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    recon[..., 0] = 255
    arr = np.asarray(make_grid(gt, recon, tile=8))
    np.testing.assert_array_equal(arr[LABEL_HEIGHT : LABEL_HEIGHT + 8, 0:8], 0)  # stimulus 0
    np.testing.assert_array_equal(arr[LABEL_HEIGHT : LABEL_HEIGHT + 8, 8:16], 255)  # stimulus 1
    recon_rows = arr[2 * LABEL_HEIGHT + 8 : 2 * LABEL_HEIGHT + 16]
    np.testing.assert_array_equal(recon_rows[..., 0], 255)
    np.testing.assert_array_equal(recon_rows[..., 1:], 0)


def test_grid_bad_input(pairs):
    gt, recon = pairs
    with pytest.raises(BadInputError, match=r"same number of images, got 5 and 4"):
        make_grid(gt, recon[:4])
    with pytest.raises(BadInputError, match=r"labels must hold 2 strings"):
        make_grid(gt, recon, labels=("a",))


def test_save_grid_atomic(tmp_path, pairs):
    out = save_grid(tmp_path / "sub" / "grid.png", *pairs, tile=16)
    assert out == tmp_path / "sub" / "grid.png"
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == (5 * 16, 2 * (16 + LABEL_HEIGHT))
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]


def _report(tmp_path, pairs, **kw):
    png = save_grid(tmp_path / "grid.png", *pairs, tile=16)
    args = dict(
        title="Demo <run> & co",
        metrics={
            "pixcorr": {"mean": 0.3215, "ci": [0.30, 0.34], "chance": 0.0012},
            "two_way": {"effnet": {"mean": 0.91, "p_value": 1e-12}, "<b>alex</b>": 0.5},
            "n_images": 982,
        },
        images={"Stimuli vs <reconstructions>": png},
        provenance=["Brain responses are SIMULATED from a known forward model.", "x < y"],
        stages=[
            dict(
                name="fit",
                status="done",
                wall_time_s=1.234,
                peak_memory_mb=512.0,
                fingerprint="abc123",
            ),
            dict(name="eval", status="skipped"),
        ],
    )
    args.update(kw)
    return write_report_html(tmp_path / "report.html", **args), png


def test_report_html(tmp_path, pairs):
    path, png = _report(tmp_path, pairs, extra_html="<p id='extra'>raw</p>")
    text = path.read_text(encoding="utf-8")
    # escaped text, never raw
    assert "two_way/&lt;b&gt;alex&lt;/b&gt;" in text
    assert "<b>alex</b>" not in text
    assert "Demo &lt;run&gt; &amp; co" in text
    assert "x &lt; y" in text
    assert "<p id='extra'>raw</p>" in text  # extra_html is trusted
    # provenance first in the body, before the title heading and the metrics
    body = text[text.index("<body>") :]
    assert body.index("SIMULATED") < body.index("<h1>") < body.index("pixcorr")
    assert 'class="provenance"' in body[: body.index("<h1>")]
    # table cells: value, CI, chance, p-value; blanks where missing
    assert "<td>pixcorr</td>" in text and "0.3215" in text and "[0.3, 0.34]" in text
    assert "1e-12" in text
    assert "<td>n_images</td>" in text and ">982<" in text
    assert "<th>95% CI</th>" in text and "<th>p-value</th>" in text
    assert "abc123" in text and "1.234" in text
    # image embedded, identical bytes
    marker = "data:image/png;base64,"
    assert marker in text
    start = text.index(marker) + len(marker)
    b64 = text[start : text.index('"', start)]
    assert base64.b64decode(b64) == png.read_bytes()
    Image.open(io.BytesIO(base64.b64decode(b64))).verify()
    # atomic: no temporary leftovers
    assert not [p for p in tmp_path.iterdir() if TMP_MARKER in p.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "report.html"]


def test_report_rejects_non_png(tmp_path, pairs):
    bad = tmp_path / "fig.png"
    bad.write_bytes(b"JFIF not a png")
    with pytest.raises(BadInputError, match=r"is not a PNG or GIF file"):
        _report(tmp_path, pairs, images={"fig": bad})
    assert not (tmp_path / "report.html").exists()
    assert not [p for p in tmp_path.iterdir() if TMP_MARKER in p.name]


def test_report_provenance_must_be_list(tmp_path, pairs):
    with pytest.raises(TypeError, match=r"provenance must be a list"):
        _report(tmp_path, pairs, provenance="SIMULATED")
