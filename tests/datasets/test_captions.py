"""COCO caption files and NSD's stimulus info, on hand-written files with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from braindecode_suite.datasets import (
    NSDLayout,
    read_coco_captions,
    read_nsd_captions,
    read_nsd_stim_info,
)
from braindecode_suite.utils.validation import BadInputError


def _coco(path, annotations, images=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{"id": a, "image_id": i, "caption": c} for a, i, c in annotations]
    path.write_text(json.dumps({"images": [{"id": i} for i in images], "annotations": records}))
    return path


@pytest.fixture
def load_calls(monkeypatch):
    """Names of the files json.load parsed during the test."""
    calls = []
    real = json.load

    def counting(f, *args, **kwargs):
        calls.append(getattr(f, "name", None))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(json, "load", counting)
    return calls


# Two files; annotation ids out of order within and across files, padded captions.
ANN_A = [(7, 20, "  a dog on a sofa. "), (3, 10, "A red bus.\n"), (12, 20, "A sleeping dog.")]
ANN_B = [(5, 30, "Two cats."), (1, 20, "\tA brown dog"), (9, 10, "   ")]


@pytest.fixture
def coco_files(tmp_path):
    a = _coco(tmp_path / "captions_a.json", ANN_A, images=(10, 20))
    b = _coco(tmp_path / "captions_b.json", ANN_B, images=(30,))
    return a, b


def test_read_coco_captions_order_and_strip(coco_files, load_calls):
    a, b = coco_files
    got = read_coco_captions([a, b], [20, 10, 30, 20])
    # image 20: annotation ids 1, 7, 12 (across both files); image 10: id 9 is blank.
    assert got == [
        ["A brown dog", "a dog on a sofa.", "A sleeping dog."],
        ["A red bus."],
        ["Two cats."],
        ["A brown dog", "a dog on a sofa.", "A sleeping dog."],
    ]
    assert got[0] is not got[3]  # fresh lists, safe to mutate
    assert sorted(load_calls) == sorted([str(a), str(b)])  # each file parsed once
    load_calls.clear()
    assert read_coco_captions([a, str(a)], np.array([10])) == [["A red bus."]]
    assert load_calls == [str(a)]  # the same file given twice is read once
    assert read_coco_captions(a, []) == []


def test_read_coco_captions_missing_ids(coco_files):
    a, b = coco_files
    with pytest.raises(BadInputError, match=r"coco_ids: 2 id\(s\) \(30, 99\) have no caption"):
        read_coco_captions(a, [10, 99, 30])
    with pytest.raises(BadInputError, match=r"7 id\(s\) \(100, 101, 102, 103, 104, \.\.\.\)"):
        read_coco_captions([a, b], [10, *range(100, 107)])


def test_read_coco_captions_bad_input(tmp_path, coco_files):
    a, _ = coco_files
    with pytest.raises(BadInputError, match=r"annotation_files: .*nope\.json' does not exist"):
        read_coco_captions(tmp_path / "nope.json", [10])
    (tmp_path / "inst.json").write_text(json.dumps({"images": []}))
    with pytest.raises(BadInputError, match=r"not a COCO caption file"):
        read_coco_captions(tmp_path / "inst.json", [10])
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(BadInputError, match=r"Could not read .* as JSON"):
        read_coco_captions(tmp_path / "broken.json", [10])
    with pytest.raises(BadInputError, match=r"coco_ids must be integers"):
        read_coco_captions(a, [10.0])
    with pytest.raises(BadInputError, match=r"annotation_files is empty"):
        read_coco_captions([], [10])


# A hand-written NSD tree: 5 images (0-based nsdId 0..4), unequal to the 4 COCO ids used.
STIM_INFO = """\
,cocoId,cocoSplit,cropBox,loss,nsdId,flagged,BOLD5000,shared1000,subject1,subject1_rep0,subject1_rep1,subject1_rep2
0,532481,val2017,"(0, 0, 0.1671875, 0.1671875)",0.1,0,False,False,False,0,0,0,0
1,245,train2017,"(0.125, 0.125, 0, 0)",0.0,1,False,True,True,1,12,405,2999
2,77,train2017,"(0, 0, 0.2, 0.2)",0.0,2,False,False,False,1,3,0,0
3,139,val2017,"(0, 0, 0.1, 0.1)",0.3,3,True,False,True,0,0,0,0
4,245,train2017,"(0, 0, 0, 0)",0.0,4,False,False,False,0,0,0,0
"""
TRAIN = [(40, 245, "A man riding a horse."), (41, 77, "A plate of food."),
         (39, 245, "Someone on horseback. ")]  # fmt: skip
VAL = [(2, 532481, "A kite in the sky."), (8, 139, "A living room."), (4, 139, "A couch.")]


@pytest.fixture
def nsd_tree(tmp_path):
    root = tmp_path / "nsd"
    lay = NSDLayout(root, 1)
    lay.stim_info.parent.mkdir(parents=True)
    lay.stim_info.write_text(STIM_INFO)
    _coco(lay.annotations_dir / "captions_train2017.json", TRAIN)
    _coco(lay.annotations_dir / "captions_val2017.json", VAL)
    return root


def test_layout_paths(tmp_path):
    lay = NSDLayout(tmp_path, 3)
    assert lay.stim_info == tmp_path / "nsddata/experiments/nsd/nsd_stim_info_merged.csv"
    assert lay.annotations_dir == tmp_path / "nsddata_stimuli/stimuli/nsd/annotations"


def test_read_nsd_stim_info(nsd_tree):
    info = read_nsd_stim_info(NSDLayout(nsd_tree, 1).stim_info)
    assert info.index.name == "nsdId" and info.index.tolist() == [0, 1, 2, 3, 4]
    assert "nsdId" not in info.columns and not any(c.startswith("Unnamed") for c in info.columns)
    assert info["cocoId"].tolist() == [532481, 245, 77, 139, 245]
    assert info.loc[3, "cocoSplit"] == "val2017" and info.loc[2, "cocoSplit"] == "train2017"
    assert info["shared1000"].tolist() == [False, True, False, True, False]
    assert info.loc[1, ["subject1_rep0", "subject1_rep1", "subject1_rep2"]].tolist() == [
        12, 405, 2999,
    ]  # fmt: skip
    assert info.loc[0, "cropBox"] == "(0, 0, 0.1671875, 0.1671875)"


def test_read_nsd_stim_info_errors(tmp_path):
    with pytest.raises(BadInputError, match=r"stimulus info CSV not found.*Data Access form"):
        read_nsd_stim_info(tmp_path / "nsd_stim_info_merged.csv")
    bad = tmp_path / "a.csv"
    bad.write_text(",cocoId,nsdId\n0,5,0\n")
    with pytest.raises(BadInputError, match=r"lacks the column\(s\) \['cocoSplit'\]"):
        read_nsd_stim_info(bad)
    bad.write_text(",cocoId,cocoSplit,nsdId\n0,5,val2017,1\n1,6,val2017,0\n")
    with pytest.raises(BadInputError, match=r"nsdId column differs from the unnamed first"):
        read_nsd_stim_info(bad)
    bad.write_text("cocoId,cocoSplit\n5,val2017\n")
    with pytest.raises(BadInputError, match=r"neither an nsdId column"):
        read_nsd_stim_info(bad)
    bad.write_text(",cocoId,cocoSplit\n0,5,val2017\n1,,val2017\n")
    with pytest.raises(BadInputError, match=r"cocoId must be integers"):
        read_nsd_stim_info(bad)
    # No nsdId column: the unnamed first column is the index.
    bad.write_text(",cocoId,cocoSplit\n0,5,val2017\n1,6,train2017\n")
    assert read_nsd_stim_info(bad)["cocoId"].to_dict() == {0: 5, 1: 6}


def test_read_nsd_captions_maps_0based_ids(nsd_tree, load_calls):
    # nsdId 3 -> cocoId 139 (val: ann 4 then 8); 1 and 4 -> 245 (train: ann 39 then 40);
    # 0 -> 532481. Rows are 0-based: nsdId 1 is the second data row.
    got = read_nsd_captions(nsd_tree, [3, 1, 0, 4, 3])
    assert got == [
        ["A couch.", "A living room."],
        ["Someone on horseback.", "A man riding a horse."],
        ["A kite in the sky."],
        ["Someone on horseback.", "A man riding a horse."],
        ["A couch.", "A living room."],
    ]
    assert len(load_calls) == 2
    load_calls.clear()
    assert read_nsd_captions(nsd_tree, np.array([3, 0], dtype=np.uint16)) == [
        ["A couch.", "A living room."],
        ["A kite in the sky."],
    ]
    assert [p.rsplit("/", 1)[-1] for p in load_calls] == ["captions_val2017.json"]  # not train


def test_read_nsd_captions_annotation_sources(nsd_tree, tmp_path):
    lay = NSDLayout(nsd_tree, 1)
    val = lay.annotations_dir / "captions_val2017.json"
    assert read_nsd_captions(nsd_tree, [0], annotations=val) == [["A kite in the sky."]]
    assert read_nsd_captions(nsd_tree, [2], annotations=[str(val), lay.annotations_dir /
                             "captions_train2017.json"]) == [["A plate of food."]]  # fmt: skip
    other = tmp_path / "coco_annotations"
    _coco(other / "captions_mine.json", [(1, 77, "Pasta.")])  # split names not matching
    assert read_nsd_captions(nsd_tree, [2], annotations=other) == [["Pasta."]]


def test_read_nsd_captions_errors(nsd_tree, tmp_path):
    lay = NSDLayout(nsd_tree, 1)
    with pytest.raises(BadInputError, match=r"ids73k holds 2 id\(s\) not in .*\[5, -1\].*\[0, 4\]"):
        read_nsd_captions(nsd_tree, [0, 5, -1])
    with pytest.raises(BadInputError, match=r"ids73k must be a 1-D sequence of integers"):
        read_nsd_captions(nsd_tree, [0.5])
    with pytest.raises(
        BadInputError, match=r"caption folder .* does not exist.*captions_train2017"
    ):
        read_nsd_captions(nsd_tree, [0], annotations=tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match=r"no captions_\*\.json in"):
        read_nsd_captions(nsd_tree, [0], annotations=tmp_path / "empty")
    with pytest.raises(BadInputError, match=r"annotations: .* does not exist.*annotations="):
        read_nsd_captions(nsd_tree, [0], annotations=[tmp_path / "x.json"])
    val = lay.annotations_dir / "captions_val2017.json"
    with pytest.raises(
        BadInputError,
        match=r"ids73k: 2 id\(s\) \(1, 2\) have no caption \(COCO ids \[77, 245\], split\(s\) "
        r"\['train2017'\]\)",
    ):
        read_nsd_captions(nsd_tree, [0, 2, 1], annotations=[val])
    with pytest.raises(BadInputError, match=r"stimulus info CSV not found"):
        read_nsd_captions(tmp_path / "elsewhere", [0])
