"""Layouts that name their detector (layouts.DetectorSource) and pnpjax.detectors: a detector's full
output (arrays, face-api.js JSON) -> the layout's points, in `pnpjax predict` and in the metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pnpjax import checkpoint, cli, detectors, export, layouts
from pnpjax.errors import InputError
from pnpjax.layouts import Layout, LayoutError

REPO = Path(__file__).resolve().parents[1]
FACEAPI10_CKPT = REPO / "checkpoints" / "faceapi10"

# iBUG-300W 68-point mirror pairs (the subject's left <-> right), independent of the layout.
_PAIRS = [(i, 16 - i) for i in range(8)] + [
    (17, 26),
    (18, 25),
    (19, 24),
    (20, 23),
    (21, 22),
    (31, 35),
    (32, 34),
    (36, 45),
    (37, 44),
    (38, 43),
    (39, 42),
    (40, 47),
    (41, 46),
    (48, 54),
    (49, 53),
    (50, 52),
    (55, 59),
    (56, 58),
    (60, 64),
    (61, 63),
    (65, 67),
]
IBUG_MIRROR = {i: i for i in range(68)} | {a: b for a, b in _PAIRS} | {b: a for a, b in _PAIRS}


def test_preset_detectors():
    d = layouts.FACEAPI10.detector
    assert (d.name, d.num_points, d.indices) == ("face-api.js/68", 68, (30, 33, 31, 35, 36, 39, 45, 42, 48, 54))
    b = layouts.BLAZEFACE6.detector
    assert (b.name, b.num_points, b.indices) == ("blazeface", 6, (0, 1, 2, 3, 4, 5))


def test_faceapi10_indices_respect_the_faces_mirror_symmetry():
    """Mirroring the layout (x -> -x) permutes its points exactly as iBUG-300W's left/right pairs
    permute the detector's indices: a swapped pair or a wrong index breaks this."""
    layout = layouts.FACEAPI10
    pts = np.asarray(layout.points)
    for k, idx in enumerate(layout.detector.indices):
        mirrored = np.flatnonzero(np.all(np.isclose(pts, pts[k] * [-1, 1, 1]), axis=1))
        assert len(mirrored) == 1
        assert IBUG_MIRROR[idx] == layout.detector.indices[mirrored[0]], (layout.point_names[k], idx)


def test_detector_round_trips_and_old_metadata_gets_the_presets():
    for preset in layouts.PRESETS.values():
        d = preset.to_dict()
        assert d["detector"] == {
            "name": preset.detector.name,
            "num_points": preset.detector.num_points,
            "indices": list(preset.detector.indices),
        }
        assert Layout.from_dict(json.loads(json.dumps(d))) == preset
        del d["detector"]  # metadata written before layouts named their detector
        assert Layout.from_dict(d).detector == preset.detector
        d["points"]["nose_tip"] = [0.0, 0.0, 1.0]  # a different object with the same name: no guess
        assert Layout.from_dict(d).detector is None
    explicit_none = layouts.FACEAPI10.to_dict() | {"detector": None}
    assert Layout.from_dict(explicit_none).detector is None


@pytest.mark.parametrize(
    "detector",
    [
        {"name": "x", "num_points": 68, "indices": [0, 1, 2]},  # wrong length
        {"name": "x", "num_points": 68, "indices": [0, 1, 2, 3, 4, 4]},  # repeated
        {"name": "x", "num_points": 5, "indices": [0, 1, 2, 3, 4, 5]},  # out of range
        {"name": "x", "num_points": 68, "indices": [0, 1, 2, 3, 4, -1]},  # negative
        {"name": "x", "num_points": 68, "indices": [0, 1, 2, 3, 4, 5.0]},  # not an int
        {"name": "x", "num_points": 68, "indices": [0, 1, 2, 3, 4, True]},  # a bool is not an index
        {"name": 3, "num_points": 68, "indices": [0, 1, 2, 3, 4, 5]},
        {"num_points": 68, "indices": [0, 1, 2, 3, 4, 5]},
        "face-api.js/68",
        [0, 1, 2, 3, 4, 5],
    ],
)
def test_bad_detector_metadata_is_a_layout_error(detector):
    d = layouts.BLAZEFACE6.to_dict() | {"detector": detector}
    with pytest.raises(LayoutError, match="detector"):
        Layout.from_dict(d)


def test_detector_travels_in_checkpoint_and_export_metadata(tmp_path):
    solver = checkpoint.load(FACEAPI10_CKPT)
    assert solver.layout.detector == layouts.FACEAPI10.detector
    meta = export.export_metadata(solver, None, "js", "uint8", "x")
    assert meta["layout"]["detector"]["indices"] == list(layouts.FACEAPI10.detector.indices)
    saved = checkpoint.save(tmp_path / "ckpt", solver)
    written = json.loads((saved / checkpoint.META_FILE).read_text())
    assert written["layout"]["detector"] == layouts.FACEAPI10.detector.to_dict()
    assert checkpoint.load(saved).layout.detector == layouts.FACEAPI10.detector


def _faceapi_result(lm68: np.ndarray, private: bool = True) -> dict:
    """What JSON.stringify makes of one face-api.js `detectAllFaces(...).withFaceLandmarks()` result."""
    key = ("_x", "_y") if private else ("x", "y")
    positions = [{key[0]: float(x), key[1]: float(y)} for x, y in lm68]
    box = {"_x": 1.0, "_y": 2.0, "_width": 30.0, "_height": 40.0}
    return {
        "detection": {
            "_imageDims": {"_width": 640, "_height": 480},
            "_score": 0.9,
            "_classScore": 0.9,
            "_className": "",
            "_box": box,
        },
        "landmarks": {
            "_imgDims": {"_width": 60, "_height": 60},
            "_shift": {"_x": 1.0, "_y": 2.0},
            "_positions": positions,
        },
        "unshiftedLandmarks": {
            "_imgDims": {"_width": 60, "_height": 60},
            "_shift": {"_x": 0, "_y": 0},
            "_positions": [{"_x": 0.0, "_y": 0.0}] * 68,
        },
        "alignedRect": {"_imageDims": {"_width": 640, "_height": 480}, "_score": 0.9, "_box": box},
    }


def test_from_json_reads_every_face_api_form():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 640, (3, 68, 2))
    want = lm[:, list(layouts.FACEAPI10.detector.indices)]
    results = [_faceapi_result(f) for f in lm]
    forms = {
        "results": results,
        "results, public x/y": [_faceapi_result(f, private=False) for f in lm],
        "detect_faces.mjs": {"detector": "face-api.js/68", "landmarks": lm.tolist()},
        "landmarks objects": [r["landmarks"] for r in results],
        "positions lists": [r["landmarks"]["_positions"] for r in results],
        "plain arrays": lm.tolist(),
    }
    for name, data in forms.items():
        x = detectors.select(
            np.asarray(detectors.from_json(json.loads(json.dumps(data))), np.float64), layouts.FACEAPI10
        )
        np.testing.assert_array_equal(x, want, err_msg=name)
    one = detectors.from_json(results[0])  # one result, one FaceLandmarks68, one positions list: (68, 2)
    np.testing.assert_array_equal(np.asarray(one), lm[0])
    np.testing.assert_array_equal(np.asarray(detectors.from_json(results[0]["landmarks"])), lm[0])
    np.testing.assert_array_equal(np.asarray(detectors.from_json(results[0]["landmarks"]["_positions"])), lm[0])


def test_select_leaves_other_shapes_alone():
    x10 = np.zeros((2, 10, 2))
    assert detectors.select(x10, layouts.FACEAPI10) is x10  # already the layout's points
    x6 = np.arange(24.0).reshape(2, 6, 2)
    np.testing.assert_array_equal(detectors.select(x6, layouts.BLAZEFACE6), x6)
    x5 = np.zeros((2, 5, 2))
    assert detectors.select(x5, layouts.FACEAPI10) is x5  # the caller reports the wrong shape
    custom = Layout.from_dict(
        {"name": "sq", "points": {"a": [0, 0, 0], "b": [1, 0, 0], "c": [1, 1, 0], "d": [0, 1, 1]}}
    )
    x68 = np.zeros((1, 68, 2))
    assert detectors.select(x68, custom) is x68


@pytest.mark.parametrize(
    "data, match",
    [
        ([{"_x": 1}], "x and y"),
        ({"detection": {}}, "unrecognised face"),
        ({"_x": 1.0, "_y": 2.0}, "single point"),
        ({"landmarks": [1.0, 2.0]}, "not of numbers"),
        ([{"landmarks": 3}], "list of landmarks"),
        (json.loads('{"landmarks": ' * 900 + "[]" + "}" * 900), "nested too deeply"),
    ],
)
def test_from_json_malformed(data, match):
    with pytest.raises(InputError, match=match):
        detectors.from_json(data)


@pytest.fixture(scope="module")
def faces68():
    """68 face-api.js-like points per face: the layout's 10 at its indices, the rest far away, so a
    wrong selection changes the pose."""
    rng = np.random.default_rng(1)
    lm = rng.uniform(0, 640, (4, 68, 2))
    idx = list(layouts.FACEAPI10.detector.indices)
    centre = rng.uniform(250, 390, (4, 1, 2))
    lm[:, idx] = (
        centre + 60 * np.asarray(layouts.FACEAPI10.points)[None, :, :2] * [1, -1] / 4.5 + rng.normal(0, 1, (4, 10, 2))
    )
    return lm


def _predict(tmp_path, name, content) -> np.ndarray:
    inp = tmp_path / name
    if name.endswith(".npy"):
        np.save(inp, content)
    else:
        inp.write_text(json.dumps(content))
    out = tmp_path / (name + ".out.npy")
    code = cli.main(
        [
            "predict",
            "--checkpoint",
            str(FACEAPI10_CKPT),
            "--input",
            str(inp),
            "--output",
            str(out),
            "--camera",
            "hfov=60,640x480",
        ]
    )
    assert code == 0
    return np.load(out)


def test_predict_reads_the_detectors_output(tmp_path, faces68, capsys):
    idx = list(layouts.FACEAPI10.detector.indices)
    want = _predict(tmp_path, "ten.npy", faces68[:, idx])
    assert want.shape == (4, 7) and np.all(np.isfinite(want))
    np.testing.assert_array_equal(_predict(tmp_path, "all68.npy", faces68), want)
    np.testing.assert_array_equal(_predict(tmp_path, "faceapi.json", [_faceapi_result(f) for f in faces68]), want)
    np.testing.assert_allclose(
        _predict(tmp_path, "one68.json", faces68[0].tolist()), want[:1], atol=1e-4
    )  # batch of 1: another XLA program
    swapped = [idx[i] for i in (0, 1, 3, 2, 6, 7, 4, 5, 9, 8)]
    assert not np.allclose(_predict(tmp_path, "swapped.npy", faces68[:, swapped]), want, atol=1e-3)


@pytest.mark.parametrize(
    "name, content",
    [
        ("bad.json", [{"landmarks": {"_positions": [{"_x": 1.0}] * 68}}]),
        ("short.json", [_faceapi_result(np.zeros((68, 2)))["landmarks"]["_positions"][:67]]),
        ("nan.npy", np.full((1, 68, 2), np.nan)),
        ("str.json", {"landmarks": "abc"}),
    ],
)
def test_predict_bad_detector_output_is_one_line(tmp_path, capfd, name, content):
    inp = tmp_path / name
    if name.endswith(".npy"):
        np.save(inp, content)
    else:
        inp.write_text(json.dumps(content))
    out = tmp_path / "out.npy"
    code = cli.main(
        [
            "predict",
            "--checkpoint",
            str(FACEAPI10_CKPT),
            "--input",
            str(inp),
            "--output",
            str(out),
            "--camera",
            "hfov=60,640x480",
        ]
    )
    err = capfd.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("pnpjax predict: error: "), err
    assert not out.exists()
