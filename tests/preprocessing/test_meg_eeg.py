"""M/EEG preprocessing against independent references (numpy, scipy, sklearn, mne by hand).

Recordings are mne ``RawArray`` objects generated here with a standard 10-20 montage and
written with mne's own writers to each format. CTF: mne ships no CTF recording (its CTF test
files come with the separate ``mne.datasets.testing`` download), so ``.ds`` folders go
through ``mne.io.read_raw_ctf`` untested here beyond the dispatch.
"""

from __future__ import annotations

import json
import logging

import mne
import numpy as np
import pytest

from braindecode_suite.preprocessing import (
    EpochStore,
    ICAConfig,
    PreprocessConfig,
    Recording,
    epochs_to_store,
    make_epochs,
    preprocess_raw,
    read_bids,
    read_raw,
    robust_scale,
    sensor_info,
)
from braindecode_suite.utils.validation import BadInputError

# mne 1.13 renamed standard_1020 to colin27_1020 (the old name warns)
MONTAGE = (
    "colin27_1020" if "colin27_1020" in mne.channels.get_builtin_montages() else ("standard_1020")
)
NAMES_32 = (
    "Fp1 Fp2 F7 F3 Fz F4 F8 FC5 FC1 FC2 FC6 T7 C3 Cz C4 T8 CP5 CP1 CP2 CP6 P7 P3 Pz P4 P8 "
    "PO3 PO4 O1 Oz O2 AF3 AF4"
).split()


def _raw(n_ch=16, sfreq=250.0, seconds=20.0, seed=0, montage=True):
    """Smooth-ish random EEG in volts (µV scale) with a standard_1020 montage."""
    rng = np.random.default_rng(seed)
    n = int(sfreq * seconds)
    t = np.arange(n) / sfreq
    src = np.stack([np.sin(2 * np.pi * f * t + p) for f, p in ((6, 0.1), (10, 1.0), (21, 2.0))])
    mix = rng.normal(size=(n_ch, 3))
    data = (mix @ src + 0.3 * rng.normal(size=(n_ch, n))) * 10e-6
    info = mne.create_info(list(NAMES_32[:n_ch]), sfreq, "eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    if montage:
        raw.set_montage(MONTAGE, verbose="error")
    return raw


def _amp(x, sfreq, f):
    """Amplitude of the f-Hz component (projection on a sine/cosine pair)."""
    t = np.arange(x.size) / sfreq
    c, s = np.cos(2 * np.pi * f * t), np.sin(2 * np.pi * f * t)
    return 2 * np.hypot(x @ c, x @ s) / x.size


NO_BAD = dict(detect_bad=False, baseline=None)


# ---------------------------------------------------------------------------- readers
@pytest.mark.parametrize(
    "fmt,suffix,rtol_of_range",
    [
        ("fif", ".fif", 1e-6),
        ("edf", ".edf", 2.0**-14),  # 16-bit
        ("bdf", ".bdf", 2.0**-22),  # 24-bit
        ("brainvision", ".vhdr", 1e-6),
        ("eeglab", ".set", 1e-6),
    ],
)
def test_read_raw_round_trip(tmp_path, fmt, suffix, rtol_of_range):
    raw = _raw(n_ch=8, seconds=4)
    path = tmp_path / f"rec{suffix}" if fmt != "fif" else tmp_path / "rec_raw.fif"
    if fmt == "fif":
        raw.save(path, verbose="error")
    else:
        mne.export.export_raw(path, raw, fmt=fmt, verbose="error")
    back = read_raw(path, preload=True)
    assert back.ch_names == raw.ch_names
    assert back.info["sfreq"] == raw.info["sfreq"]
    x, y = raw.get_data(), back.get_data()[:, : raw.n_times]
    assert back.n_times >= raw.n_times  # EDF pads to whole data records
    span = x.max() - x.min()
    np.testing.assert_allclose(y, x, atol=span * rtol_of_range + 1e-12)


def test_read_raw_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="path: .*does not exist"):
        read_raw(tmp_path / "missing.fif")
    bad = tmp_path / "rec.xyz"
    bad.write_text("x")
    with pytest.raises(BadInputError, match=r"suffix '.xyz'.*\.vhdr"):
        read_raw(bad)
    ds = tmp_path / "rec.ds"
    ds.write_text("x")
    with pytest.raises(BadInputError, match="CTF recording is a '.ds' folder"):
        read_raw(ds)
    broken = tmp_path / "broken.edf"
    broken.write_bytes(b"not an edf file at all")
    with pytest.raises(BadInputError, match="read_raw_edf could not read"):
        read_raw(broken)


def test_read_bids_round_trip(tmp_path):
    import mne_bids

    raw = _raw(n_ch=8, seconds=6)
    raw.info["line_freq"] = 50
    events = np.array([[250, 0, 1], [500, 0, 2], [1000, 0, 1]])
    bp = mne_bids.BIDSPath(
        subject="01", session="a", task="view", run="1", datatype="eeg", root=tmp_path / "bids"
    )
    mne_bids.write_raw_bids(
        raw, bp, events=events, event_id={"face": 1, "house": 2}, format="BrainVision",
        allow_preload=True, verbose="error",
    )  # fmt: skip
    back = read_bids(tmp_path / "bids", "01", session="a", task="view", run=1)
    np.testing.assert_allclose(back.get_data(), raw.get_data(), atol=1e-9)
    assert list(back.annotations.description) == ["face", "house", "face"]
    data, _, meta = make_epochs(back, config=PreprocessConfig(tmin=0, tmax=0.1, **NO_BAD))
    assert meta["event"].tolist() == ["face", "house", "face"]
    assert meta["sample"].tolist() == [250, 500, 1000]
    with pytest.raises(BadInputError, match="no eeg recording.*subject='02'"):
        read_bids(tmp_path / "bids", "02")


# ---------------------------------------------------------------------------- filters
def test_bandpass_notch_resample_reference():
    sfreq = 500.0
    raw = _raw(n_ch=8, sfreq=sfreq, seconds=20)
    t = raw.times
    raw._data[:] = 1e-5 * (np.sin(2 * np.pi * 10 * t) + np.sin(2 * np.pi * 50 * t))
    raw._data[:] += 1e-6 * np.arange(8)[:, None]  # channel offsets for the reference check
    mid = slice(int(5 * sfreq), int(15 * sfreq))  # away from filter edges
    bp = preprocess_raw(raw, PreprocessConfig(l_freq=1.0, h_freq=30.0, **NO_BAD))
    x = bp.get_data()[0, mid]
    att_50 = 20 * np.log10(_amp(x, sfreq, 50) / 1e-5)
    gain_10 = 20 * np.log10(_amp(x, sfreq, 10) / 1e-5)
    assert att_50 < -30 and abs(gain_10) < 0.5, (att_50, gain_10)

    notched = preprocess_raw(raw, PreprocessConfig(notch=50.0, **NO_BAD)).get_data()[0, mid]
    assert 20 * np.log10(_amp(notched, sfreq, 50) / 1e-5) < -20
    assert abs(20 * np.log10(_amp(notched, sfreq, 10) / 1e-5)) < 0.5

    rs = preprocess_raw(raw, PreprocessConfig(sfreq=125.0, **NO_BAD))
    assert rs.info["sfreq"] == 125.0 and rs.n_times == raw.n_times * 125 // 500

    ref = preprocess_raw(raw, PreprocessConfig(reference="average", **NO_BAD)).get_data()
    np.testing.assert_allclose(ref.mean(axis=0), 0, atol=1e-18)
    cz = preprocess_raw(raw, PreprocessConfig(reference=("Fz",), **NO_BAD))
    np.testing.assert_allclose(cz.get_data(picks="Fz"), 0, atol=1e-18)
    np.testing.assert_allclose(raw.get_data()[1] - raw.get_data()[0], 1e-6, rtol=1e-9)

    with pytest.raises(BadInputError, match=r"h_freq=300.*Nyquist frequency 250"):
        preprocess_raw(raw, PreprocessConfig(h_freq=300.0, **NO_BAD))


def test_config_bad_values():
    with pytest.raises(BadInputError, match=r"l_freq \(40.0\) must be below h_freq"):
        PreprocessConfig(l_freq=40.0, h_freq=1.0)
    with pytest.raises(BadInputError, match="sfreq must be a positive number"):
        PreprocessConfig(sfreq=-1)
    with pytest.raises(BadInputError, match="tmin must be below tmax"):
        PreprocessConfig(tmin=1.0, tmax=0.5)
    with pytest.raises(BadInputError, match="reference must be 'average'"):
        PreprocessConfig(reference="avg")
    with pytest.raises(BadInputError, match="'ica.method'.*'fastica'.*got 'fastICA'"):
        ICAConfig(method="fastICA")
    with pytest.raises(TypeError, match="config must be an instance of PreprocessConfig"):
        preprocess_raw(_raw(n_ch=4, seconds=1), {"l_freq": 1})


def test_unknown_channel_names_in_picks_reference_montage():
    raw = _raw(n_ch=8, seconds=2, montage=False)
    with pytest.raises(BadInputError, match=r"picks: unknown channel names \['Fzz'\].*'Fz'"):
        preprocess_raw(raw, PreprocessConfig(picks=("Fz", "Fzz"), **NO_BAD))
    with pytest.raises(BadInputError, match=r"reference: unknown channel names \['M1'\]"):
        preprocess_raw(raw, PreprocessConfig(reference=("M1",), **NO_BAD))
    odd = raw.copy().rename_channels({"Fp1": "EEG001"})
    with pytest.raises(BadInputError, match=r"montage: unknown channel names \['EEG001'\]"):
        preprocess_raw(odd, PreprocessConfig(montage="standard_1020", **NO_BAD))
    with pytest.raises(BadInputError, match="'montage'.*biosemi64.*got 'standard_1021'"):
        preprocess_raw(raw, PreprocessConfig(montage="standard_1021", **NO_BAD))
    picked = preprocess_raw(raw, PreprocessConfig(picks=("Fz", "F3"), **NO_BAD))
    assert picked.ch_names == ["Fz", "F3"]


# ---------------------------------------------------------------------------- bad channels
def test_bad_channel_detection_flat_saturated_noisy(caplog):
    raw = _raw(n_ch=16, seconds=20, seed=1)
    raw._data[2] = 0.0  # flat
    lim = np.percentile(np.abs(raw._data[5]), 80)
    raw._data[5] = np.clip(raw._data[5], -lim, lim)  # clipped: ~20 % at the rails
    rng = np.random.default_rng(3)
    raw._data[9] += 30 * np.std(raw._data[9]) * rng.normal(size=raw.n_times)  # noisy
    with caplog.at_level(logging.WARNING, logger="braindecode_suite"):
        out, report = preprocess_raw(
            raw, PreprocessConfig(l_freq=1.0, h_freq=40.0), return_report=True
        )
    names = raw.ch_names
    assert report["flat"] == [names[2]]
    assert report["saturated"] == [names[5]]
    assert report["noisy"] == [names[9]]
    assert sorted(out.info["bads"]) == sorted([names[2], names[5], names[9]])
    text = caplog.text
    assert "(flat)" in text and names[2] in text and "(saturated)" in text and "(noisy)" in text
    # a clean recording: nothing marked
    _, clean = preprocess_raw(_raw(seed=2), PreprocessConfig(l_freq=1.0), return_report=True)
    assert clean["flat"] == clean["saturated"] == clean["noisy"] == []


def test_interpolation_restores_smooth_channel():
    raw = _raw(n_ch=32, seconds=4, seed=4)
    pos = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    pos = (pos - pos.mean(0)) / pos.std()
    t = raw.times
    tc = np.stack([np.sin(2 * np.pi * 7 * t), np.cos(2 * np.pi * 3 * t), np.sin(2 * np.pi * t)])
    raw._data[:] = 1e-5 * (pos @ tc)  # a spatially smooth (linear) field
    truth = raw.get_data(picks="C3")[0].copy()
    raw._data[raw.ch_names.index("C3")] = 1e-4 * np.random.default_rng(0).normal(size=t.size)
    raw.info["bads"] = ["C3"]
    out, report = preprocess_raw(
        raw, PreprocessConfig(interpolate_bads=True, detect_bad=False), return_report=True
    )
    assert report["interpolated"] == ["C3"] and out.info["bads"] == []
    got = out.get_data(picks="C3")[0]
    assert np.corrcoef(got, truth)[0, 1] > 0.95
    assert np.linalg.norm(got - truth) < 0.35 * np.linalg.norm(truth)

    no_pos = _raw(n_ch=8, seconds=2, montage=False)
    no_pos.info["bads"] = ["Fz"]
    with pytest.raises(BadInputError, match=r"cannot interpolate the bad channels \['Fz'\].*"
                       r"no positions.*montage='standard_1020'"):  # fmt: skip
        preprocess_raw(no_pos, PreprocessConfig(interpolate_bads=True, detect_bad=False))


# ---------------------------------------------------------------------------- ICA
def test_ica_removes_eog_artifact():
    sfreq, n = 250.0, 7500
    rng = np.random.default_rng(5)
    t = np.arange(n) / sfreq
    blink = np.zeros(n)
    for onset in rng.choice(n - 100, 25, replace=False):
        blink[onset : onset + 60] += np.hanning(60)
    brain = np.stack([np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (5, 9, 13, 17)])
    brain = np.vstack([brain, rng.laplace(size=(4, n))])
    names = list(NAMES_32[:12])
    mix = rng.normal(size=(12, 8))
    weight = np.array([1.0 if c.startswith(("Fp", "AF", "F")) else 0.1 for c in names])
    eeg = (mix @ brain + 8 * weight[:, None] * blink) * 1e-6
    data = np.vstack([eeg, blink[None] * 1e-4])
    info = mne.create_info(names + ["EOG"], sfreq, ["eeg"] * 12 + ["eog"])
    raw = mne.io.RawArray(data, info, verbose="error")
    cfg = PreprocessConfig(ica=ICAConfig(n_components=8, method="fastica"), detect_bad=False)
    out, report = preprocess_raw(raw, cfg, return_report=True)
    assert report["ica_excluded"], "the blink component should be removed"
    before = abs(np.corrcoef(raw.get_data(picks="Fp1")[0], blink)[0, 1])
    after = abs(np.corrcoef(out.get_data(picks="Fp1")[0], blink)[0, 1])
    assert before > 0.5 and after < 0.2, (before, after)


@pytest.mark.usefixtures("one_torch_thread")
def test_ica_iclabel_on_real_eeg(shared_data):
    pytest.importorskip("mne_icalabel")
    raw = _emotiv(shared_data)
    base = dict(montage="standard_1020", l_freq=1.0, reference="average", detect_bad=False)
    ica = ICAConfig(n_components=6, method="infomax", iclabel=True, threshold=0.7)
    out, report = preprocess_raw(raw, PreprocessConfig(**base, ica=ica), return_report=True)
    labels = report["ica_labels"]
    assert len(labels) == 6 and all(0 <= p <= 1 for _, p in labels)
    expected = [i for i, (lab, p) in enumerate(labels) if lab not in ("brain", "other") and p > 0.7]
    assert report["ica_excluded"] == expected and expected  # this recording has artifacts
    clean = preprocess_raw(raw, PreprocessConfig(**base)).get_data()
    # removing components removes variance: the cleaned signal has less power overall
    assert np.sum(out.get_data() ** 2) < np.sum(clean**2)


# ---------------------------------------------------------------------------- epochs
def test_epochs_and_baseline_match_numpy():
    raw = _raw(n_ch=6, sfreq=200.0, seconds=10, seed=7)
    events = np.array([[100, 0, 1], [450, 0, 2], [1200, 0, 1], [1990, 0, 2]])  # last too late
    cfg = PreprocessConfig(tmin=-0.1, tmax=0.25, baseline=(None, 0.0), detect_bad=False)
    data, times, meta = make_epochs(raw, events, cfg)
    x = raw.get_data()
    ref = []
    for s in events[:3, 0]:
        seg = x[:, s - 20 : s + 51]
        ref.append(seg - seg[:, :21].mean(axis=1, keepdims=True))
    np.testing.assert_allclose(data, np.array(ref), rtol=1e-5, atol=1e-12)
    assert data.dtype == np.float32 and data.shape == (3, 6, 71)
    np.testing.assert_allclose(times, np.arange(-20, 51) / 200.0)
    assert meta["event_index"].tolist() == [0, 1, 2]
    assert meta["event"].tolist() == ["1", "2", "1"]
    np.testing.assert_allclose(meta["onset"], [0.5, 2.25, 6.0])

    sel, _, m2 = make_epochs(raw, events[:3], cfg, event_id={"house": 2})
    assert m2["event"].tolist() == ["house"] and m2["event_index"].tolist() == [1]
    np.testing.assert_allclose(sel[0], ref[1], rtol=1e-5, atol=1e-12)


def test_epochs_bad_events():
    raw = _raw(n_ch=4, sfreq=100.0, seconds=5)
    cfg = PreprocessConfig(tmin=0.0, tmax=0.1, detect_bad=False)
    with pytest.raises(BadInputError, match=r"outside the recording: first at sample 900, but.*"
                       r"samples 0 to 499 \(500 samples"):  # fmt: skip
        make_epochs(raw, np.array([[100, 0, 1], [900, 0, 1]]), cfg)
    with pytest.raises(BadInputError, match="No events were found in the recording"):
        make_epochs(raw, None, cfg)
    with pytest.raises(BadInputError, match=r"at least one event, got shape \(0, 3\)"):
        make_epochs(raw, np.empty((0, 3), int), cfg)
    with pytest.raises(BadInputError, match=r"codes \{'x': 7\} never occur"):
        make_epochs(raw, np.array([[100, 0, 1]]), cfg, event_id={"x": 7})


def test_robust_scale_matches_sklearn():
    from sklearn.preprocessing import RobustScaler

    rng = np.random.default_rng(8)
    data = rng.standard_t(3, size=(5, 4, 60)) * [[1], [10], [0.1], [3]] + [[0], [5], [-2], [1]]
    data[:, 2] = 7.0  # constant channel: IQR 0, sklearn scales by 1
    flat = data.transpose(0, 2, 1).reshape(-1, 4)  # (samples, channels)
    ref = RobustScaler().fit_transform(flat).reshape(5, 60, 4).transpose(0, 2, 1)
    np.testing.assert_allclose(robust_scale(data, clamp=None), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(robust_scale(data, clamp=2.0), np.clip(ref, -2, 2), atol=1e-6)
    two_d = rng.normal(size=(3, 50))
    ref2 = RobustScaler().fit_transform(two_d.T).T
    np.testing.assert_allclose(robust_scale(two_d, clamp=None), ref2, rtol=1e-5, atol=1e-6)
    with pytest.raises(BadInputError, match=r"data must be \(n_channels, n_times\).*\(50,\)"):
        robust_scale(np.zeros(50))
    with pytest.raises(BadInputError, match="clamp must be a positive number"):
        robust_scale(two_d, clamp=-1)


def test_epochs_robust_scale_fitted_on_recording_vs_sklearn():
    from sklearn.preprocessing import RobustScaler

    raw = _raw(n_ch=5, sfreq=100.0, seconds=20, seed=9)
    raw._data[1] *= 50  # big channel
    events = np.array([[s, 0, 3] for s in range(50, 1900, 150)])
    cfg = PreprocessConfig(
        tmin=-0.2, tmax=0.5, baseline=(None, 0.0), robust_scale=True, clamp=3.0, detect_bad=False
    )
    data, _, _ = make_epochs(raw, events, cfg)
    scaler = RobustScaler().fit(raw.get_data().T)  # fitted on the whole recording
    x = raw.get_data()
    ref = []
    for s in events[:, 0]:
        seg = scaler.transform(x[:, s - 20 : s + 51].T).T
        ref.append(np.clip(seg - seg[:, :21].mean(axis=1, keepdims=True), -3, 3))
    np.testing.assert_allclose(data, np.array(ref), rtol=1e-4, atol=1e-5)
    assert np.abs(data).max() <= 3.0


# ---------------------------------------------------------------------------- sensors
def test_sensor_info_is_json_and_matches_montage():
    raw = _raw(n_ch=8, seconds=1)
    raw.info["device_info"] = {"type": "EEG", "model": "Emotiv EPOC", "serial": "123"}
    raw.info["bads"] = ["Fz"]
    info = sensor_info(raw.info)
    json.dumps(info)
    assert info["ch_names"] == raw.ch_names and info["ch_types"] == ["eeg"] * 8
    for name, p in zip(info["ch_names"], info["positions"], strict=True):
        assert p is not None
        # both in head coordinates after set_montage
        head = raw.info["chs"][raw.ch_names.index(name)]["loc"][:3]
        np.testing.assert_allclose(p, head)
        assert 0.05 < np.linalg.norm(p) < 0.15  # on a head, in metres
    assert info["orientations"] == [None] * 8 and info["coord_frames"] == ["head"] * 8
    assert info["device"]["model"] == "Emotiv EPOC" and info["bads"] == ["Fz"]
    assert info["sfreq"] == 250.0

    meg = mne.create_info(["MEG 001", "MEG 002"], 1000.0, ["mag", "grad"])
    with meg._unlock():
        meg["chs"][0]["loc"][:12] = np.r_[[0.01, 0.02, 0.03], np.eye(3).ravel()]
    out = sensor_info(meg)
    assert out["positions"][0] == [0.01, 0.02, 0.03]
    assert out["orientations"][0] == np.eye(3).ravel().tolist()
    assert out["ch_types"] == ["mag", "grad"] and out["positions"][1] is None
    with pytest.raises(TypeError, match="info must be an instance of Info"):
        sensor_info({"ch_names": []})


# ---------------------------------------------------------------------------- store
def _counting(raw, calls, key):
    def load():
        calls[key] = calls.get(key, 0) + 1
        return raw.copy()

    return load


def test_store_round_trip_and_resume(tmp_path):
    cfg = PreprocessConfig(l_freq=1.0, h_freq=30.0, sfreq=100.0, reference="average",
                           tmin=-0.1, tmax=0.3, robust_scale=True)  # fmt: skip
    raws = {k: _raw(n_ch=8, sfreq=250.0, seconds=12, seed=i) for i, k in enumerate("abc")}
    events = np.array([[s, 0, 1 + (s // 250) % 2] for s in range(250, 2750, 250)])
    calls: dict = {}

    def recs(keys):
        return [
            Recording(k, _counting(raws[k], calls, k), events=events, subject="01", run=str(i),
                      stimulus_ids=np.arange(len(events)) + 100 * i)
            for i, k in enumerate(keys)
        ]  # fmt: skip

    path = tmp_path / "epochs.h5"
    assert epochs_to_store(path, recs("ab"), cfg) == path
    assert calls == {"a": 1, "b": 1} and not (tmp_path / "epochs.h5.partial").exists()
    store = EpochStore(path)
    assert store.keys == ["a", "b"] and store.sfreq == 100.0 and len(store.times) == 41
    X, meta = store.read("b")
    # reference: the same steps called directly, events moved to 100 Hz by hand
    pre = preprocess_raw(raws["b"], cfg)
    ev100 = events.copy()
    ev100[:, 0] = events[:, 0] * 100 // 250
    ref, _, ref_meta = make_epochs(pre, ev100, cfg)
    np.testing.assert_allclose(X, ref, atol=1e-6)
    assert meta["stimulus_id"].tolist() == (np.arange(len(events)) + 100).tolist()
    assert (meta["subject"] == "01").all() and (meta["run"] == "1").all()
    assert meta["sample"].tolist() == ref_meta["sample"].tolist()
    assert store.sensor_info["ch_names"] == raws["a"].ch_names
    info = store.recording_info("a")
    assert info["report"]["sfreq_in"] == 250.0 and info["report"]["sfreq_out"] == 100.0

    # resume: a second call with one new recording reads only the new one
    epochs_to_store(path, recs("abc"), cfg)
    assert calls == {"a": 1, "b": 1, "c": 1}
    assert EpochStore(path).keys == ["a", "b", "c"]

    # another config is refused, and the store is left in place
    with pytest.raises(BadInputError, match="made with another PreprocessConfig"):
        epochs_to_store(path, recs("a"), PreprocessConfig(l_freq=2.0))
    assert EpochStore(path).keys == ["a", "b", "c"]


def test_store_crash_leaves_partial_and_resumes(tmp_path):
    cfg = PreprocessConfig(tmin=0.0, tmax=0.2, detect_bad=False)
    raw = _raw(n_ch=4, sfreq=100.0, seconds=5)
    ev = np.array([[100, 0, 1], [300, 0, 1]])
    calls: dict = {}

    def broken():
        raise RuntimeError("disk gone")

    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError, match="disk gone"):
        epochs_to_store(
            path, [Recording("a", _counting(raw, calls, "a"), events=ev),
                   Recording("b", broken, events=ev)], cfg,
        )  # fmt: skip
    assert not path.exists() and (tmp_path / "s.h5.partial").exists()
    with pytest.raises(BadInputError, match="partial file exists"):
        EpochStore(path)
    epochs_to_store(
        path, [Recording("a", _counting(raw, calls, "a"), events=ev),
               Recording("b", _counting(raw, calls, "b"), events=ev)], cfg,
    )  # fmt: skip
    assert calls == {"a": 1, "b": 1}
    assert EpochStore(path).n_epochs == {"a": 2, "b": 2}


def test_store_bad_input(tmp_path):
    cfg = PreprocessConfig(tmin=0.0, tmax=0.2, detect_bad=False)
    ev = np.array([[100, 0, 1]])
    r100 = _raw(n_ch=4, sfreq=100.0, seconds=3)
    r200 = _raw(n_ch=4, sfreq=200.0, seconds=3)
    with pytest.raises(BadInputError, match=r"'y' is sampled at 200.0 Hz but.*100.0 Hz.*sfreq="):
        epochs_to_store(
            tmp_path / "a.h5", [Recording("x", r100, events=ev), Recording("y", r200, events=ev)],
            cfg,
        )  # fmt: skip
    ok = PreprocessConfig(tmin=0.0, tmax=0.2, detect_bad=False, sfreq=100.0)
    epochs_to_store(
        tmp_path / "b.h5", [Recording("x", r100, events=ev), Recording("y", r200, events=ev)], ok
    )
    assert EpochStore(tmp_path / "b.h5").n_epochs == {"x": 1, "y": 1}
    with pytest.raises(BadInputError, match=r"recording 'z'.*first at sample 5000"):
        epochs_to_store(tmp_path / "c.h5", [Recording("z", r100, events=[[5000, 0, 1]])], cfg)
    with pytest.raises(BadInputError, match="duplicated keys"):
        epochs_to_store(tmp_path / "d.h5", [Recording("x", r100), Recording("x", r100)], cfg)
    with pytest.raises(BadInputError, match="key must be non-empty without '/'"):
        Recording("a/b", r100)
    other = _raw(n_ch=5, sfreq=100.0, seconds=3)
    with pytest.raises(BadInputError, match=r"other channels.*extra \['Fz'\].*picks="):
        epochs_to_store(
            tmp_path / "e.h5", [Recording("x", r100, events=ev), Recording("y", other, events=ev)],
            cfg,
        )  # fmt: skip


def test_store_from_files(tmp_path):
    raw = _raw(n_ch=4, sfreq=100.0, seconds=4)
    raw.set_annotations(mne.Annotations([1.0, 2.0], [0, 0], ["face", "house"]))
    raw.save(tmp_path / "sub1_raw.fif", verbose="error")
    path = epochs_to_store(
        tmp_path / "s.h5", [tmp_path / "sub1_raw.fif"],
        PreprocessConfig(tmin=0.0, tmax=0.5, detect_bad=False),
    )  # fmt: skip
    X, meta = EpochStore(path).read("sub1_raw")
    assert X.shape == (2, 4, 51) and meta["event"].tolist() == ["face", "house"]


# ---------------------------------------------------------------------------- real EEG
def _emotiv(shared_data):
    """The real 14-channel Emotiv EEG (published in µV) as a RawArray in volts."""
    npz = np.load(shared_data / "eeg_emotiv_16s" / "eeg_emotiv_16s.npz")
    info = mne.create_info([str(c) for c in npz["ch_names"]], float(npz["sfreq"]), "eeg")
    return mne.io.RawArray(npz["raw"].astype(np.float64) * 1e-6, info, verbose="error")


def test_real_emotiv_eeg_pipeline(shared_data):
    npz = np.load(shared_data / "eeg_emotiv_16s" / "eeg_emotiv_16s.npz")
    names = [str(c) for c in npz["ch_names"]]
    raw = _emotiv(shared_data)
    cfg = PreprocessConfig(montage="standard_1020", l_freq=0.5, detect_bad=True)
    out, report = preprocess_raw(raw, cfg, return_report=True)
    assert out.ch_names == names and out.info["sfreq"] == 128.0
    assert all(p is not None for p in sensor_info(out.info)["positions"])
    hp = out.get_data() * 1e6
    ref = npz["highpass_0p5hz"].astype(np.float64)
    # the published array is a causal 5th-order Butterworth high-pass (scipy lfilter): the
    # same filter through filter_kwargs reproduces it ...
    causal = dict(method="iir", iir_params=dict(order=5, ftype="butter"), phase="forward")
    same = preprocess_raw(raw, PreprocessConfig(l_freq=0.5, filter_kwargs=causal, **NO_BAD))
    mid = slice(256, None)  # after the first 2 s, where the initial states differ
    r = [np.corrcoef(same.get_data()[i, mid] * 1e6, ref[i, mid])[0, 1] for i in range(14)]
    assert min(r) > 0.99, r
    # ... and the default zero-phase FIR has the same magnitude response: equal power above
    # 2 Hz (16 s are too short to compare the power below 0.5 Hz; the drift check follows)
    from scipy.signal import welch

    f, p_ours = welch(hp, fs=128, nperseg=1024)
    _, p_ref = welch(ref, fs=128, nperseg=1024)
    band = (f >= 2) & (f <= 40)
    ratio_db = 10 * np.log10(p_ours[:, band].sum(1) / p_ref[:, band].sum(1))
    assert np.all(np.abs(ratio_db) < 1.0), ratio_db
    # the drift is gone: the slow trend of each channel is much smaller than in the raw
    raw_drift = np.abs(np.polyfit(np.arange(2048), npz["raw"].T, 1)[0]).mean()
    hp_drift = np.abs(np.polyfit(np.arange(2048), hp.T, 1)[0]).mean()
    ref_drift = np.abs(np.polyfit(np.arange(2048), ref.T, 1)[0]).mean()
    assert hp_drift < 0.25 * raw_drift and ref_drift < 0.25 * raw_drift, (
        hp_drift,
        ref_drift,
        raw_drift,
    )
    events = np.array([[s, 0, 1] for s in range(128, 1900, 128)])
    data, _, _ = make_epochs(out, events, PreprocessConfig(tmin=0.0, tmax=0.5, robust_scale=True))
    assert data.shape == (len(events), 14, 65) and np.abs(data).max() <= 20
    assert isinstance(report["bads"], list)
