"""pnpjax.layouts: presets as published, user files (JSON and CSV), validation with one-line errors."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import SEED_MD
from pnpjax import layouts
from pnpjax.layouts import Layout, LayoutError

# Transcribed from SEED.md ("Keypoint layouts"), in its order; cm, x right, y up, z towards the viewer.
SEED_BLAZEFACE6 = [
    [-3.23597, 3.23021, -3.33562],
    [3.23597, 3.23021, -3.33562],
    [0, 0.003874, 0.290468],
    [0, -3.53483, -2.08927],
    [-8.04888, 2.22486, -12.6444],
    [8.04888, 2.22486, -12.6444],
]
SEED_FACEAPI10 = [
    [0, 0.003874, 0.290468],
    [0, -1.26207, -1.14108],
    [-0.85877, -1.05017, -1.53035],
    [0.85877, -1.05017, -1.53035],
    [-4.49893, 3.21601, -4.22082],
    [-1.9326, 3.14086, -3.78216],
    [4.49893, 3.21601, -4.22082],
    [1.9326, 3.14086, -3.78216],
    [-2.17298, -3.62696, -3.15651],
    [2.17298, -3.62696, -3.15651],
]

SQUARE = {"tl": [-5, 5, 0], "tr": [5, 5, 0], "br": [5, -5, 0], "bl": [-5, -5, 0]}  # a planar marker


@pytest.mark.parametrize(
    "layout, expected, first_names",
    [
        (
            layouts.BLAZEFACE6,
            SEED_BLAZEFACE6,
            ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear"),
        ),
        (
            layouts.FACEAPI10,
            SEED_FACEAPI10,
            ("nose_tip", "bottom_nose", "left_nostril", "right_nostril", "left_eye_outer"),
        ),
    ],
)
def test_presets_match_seed_md(layout, expected, first_names):
    np.testing.assert_array_equal(np.asarray(layout.points), np.asarray(expected, float))
    assert layout.point_names[: len(first_names)] == first_names
    assert layout.units == "cm" and layout.num_points == len(expected)
    assert layout.array.dtype == np.float32 and layout.array.shape == (len(expected), 3)
    assert layouts.get_layout(layout.name) is layout


def test_transcription_matches_seed_md_file():
    """The numbers above are the ones in SEED.md itself (when the shared folder is present)."""
    if not SEED_MD.is_file():
        pytest.skip("SEED.md not found")
    text = SEED_MD.read_text()
    for name, expected in (("blazeface6", SEED_BLAZEFACE6), ("faceapi10", SEED_FACEAPI10)):
        block = text.split(f"`{name}` (")[1].split("```")[1]  # the first code block after its name
        found = [[float(v) for v in m.split(",")] for m in re.findall(r"\[([^\]]+)\]", block)]
        np.testing.assert_array_equal(found, expected)


def test_face_presets_frontal_rotation():
    for layout in layouts.PRESETS.values():
        np.testing.assert_array_equal(layout.frontal_rotation, np.diag([1.0, -1.0, -1.0]))


@pytest.mark.parametrize("up, facing", [(u, f) for u, f in itertools.product(layouts._AXES, repeat=2) if u[1] != f[1]])
def test_frontal_rotation_is_a_rotation_that_faces_the_camera(up, facing):
    lay = Layout("m", tuple(SQUARE), tuple(tuple(map(float, p)) for p in SQUARE.values()), up=up, facing=facing)
    R = lay.frontal_rotation
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=0)
    assert np.linalg.det(R) == pytest.approx(1.0)
    # In the OpenCV camera (y down, z forward) `facing` points back at the camera and `up` up.
    np.testing.assert_array_equal(R @ layouts._AXES[facing], [0, 0, -1])
    np.testing.assert_array_equal(R @ layouts._AXES[up], [0, -1, 0])


def write(tmp_path: Path, name: str, content) -> Path:
    p = tmp_path / name
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


def test_json_object_form(tmp_path):
    p = write(tmp_path, "marker.json", {"name": "marker", "units": "mm", "points": SQUARE, "up": "+y", "facing": "+z"})
    lay = layouts.load_layout_file(p)
    assert lay.name == "marker" and lay.units == "mm" and lay.point_names == ("tl", "tr", "br", "bl")
    np.testing.assert_array_equal(lay.array, np.array(list(SQUARE.values()), np.float32))
    assert layouts.get_layout(str(p)) == lay


def test_json_list_form_and_defaults(tmp_path):
    pts = [{"name": n, "xyz": xyz} for n, xyz in SQUARE.items()]
    lay = layouts.load_layout_file(write(tmp_path, "board.json", {"points": pts, "facing": "-z", "up": "+x"}))
    assert lay.name == "board" and lay.units == "cm" and (lay.up, lay.facing) == ("+x", "-z")
    assert lay.point_names == tuple(SQUARE)
    np.testing.assert_array_equal(lay.points, [tuple(map(float, v)) for v in SQUARE.values()])
    # Unnamed list entries get p0, p1, ...
    lay2 = layouts.load_layout_file(write(tmp_path, "anon.json", {"points": [{"xyz": v} for v in SQUARE.values()]}))
    assert lay2.point_names == ("p0", "p1", "p2", "p3")


def test_csv_file(tmp_path):
    rows = "\n".join(f"{n}, {x}, {y}, {z}" for n, (x, y, z) in SQUARE.items())
    lay = layouts.load_layout_file(write(tmp_path, "square.CSV", f"Name,X,Y,Z\n{rows}\n\n"))
    assert lay.name == "square" and lay.point_names == tuple(SQUARE)
    np.testing.assert_array_equal(lay.array, np.array(list(SQUARE.values()), np.float32))


def test_dict_round_trip_and_presets_through_files(tmp_path):
    for preset in layouts.PRESETS.values():
        assert Layout.from_dict(preset.to_dict()) == preset
        p = write(tmp_path, f"{preset.name}.json", preset.to_dict())
        assert layouts.load_layout_file(p) == preset
        csv_text = "name,x,y,z\n" + "\n".join(
            f"{n},{x!r},{y!r},{z!r}" for n, (x, y, z) in zip(preset.point_names, preset.points)
        )
        assert layouts.load_layout_file(write(tmp_path, f"{preset.name}.csv", csv_text)) == preset


BAD_FILES = {
    "bad_json.json": '{"points": {"a": [0, 0, 0],, }',
    "not_object.json": [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]],
    "no_points.json": {"name": "x"},
    "points_string.json": {"points": "abc"},
    "three_points.json": {"points": {"a": [0, 0, 0], "b": [1, 0, 0], "c": [0, 1, 0]}},
    "nan.json": '{"points": {"a": [0, 0, 0], "b": [1, 0, 0], "c": [0, 1, 0], "d": [NaN, 0, 1]}}',
    "inf.json": '{"points": {"a": [0, 0, 0], "b": [1, 0, 0], "c": [0, 1, 0], "d": [Infinity, 0, 1]}}',
    "null.json": {"points": {"a": [0, 0, 0], "b": [1, 0, 0], "c": [0, 1, 0], "d": [None, 0, 1]}},
    "text_coord.json": {"points": {"a": [0, 0, 0], "b": [1, 0, 0], "c": [0, 1, 0], "d": ["x", 0, 1]}},
    "collinear.json": {"points": {"a": [0, 0, 0], "b": [1, 1, 1], "c": [2, 2, 2], "d": [3, 3, 3]}},
    "nearly_collinear.json": {"points": {"a": [0, 0, 0], "b": [1, 0, 0], "c": [2, 1e-6, 0], "d": [3, 0, 0]}},
    "coincident.json": {"points": {"a": [1, 2, 3], "b": [1, 2, 3], "c": [1, 2, 3], "d": [1, 2, 3]}},
    "two_coords.json": {"points": {"a": [0, 0], "b": [1, 0], "c": [0, 1], "d": [1, 1]}},
    "four_coords.json": {"points": {"a": [0, 0, 0, 0], "b": [1, 0, 0, 0], "c": [0, 1, 0, 0], "d": [1, 1, 0, 0]}},
    "ragged.json": {"points": {"a": [0, 0, 0], "b": [1, 0], "c": [0, 1, 0], "d": [1, 1, 0]}},
    "scalar_points.json": {"points": {"a": 1, "b": 2, "c": 3, "d": 4}},
    "list_no_xyz.json": {"points": [{"name": "a", "pos": [0, 0, 0]}] * 4},
    "list_of_lists.json": {"points": [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]},
    "dup_names_list.json": {"points": [{"name": "a", "xyz": v} for v in SQUARE.values()]},
    "dup_names_object.json": '{"points": {"a": [0, 0, 0], "b": [1, 0, 0], "c": [0, 1, 0], "d": [0, 0, 1], "a": [1, 1, 1]}}',
    "bad_up.json": {"points": SQUARE, "up": "y"},
    "bad_facing.json": {"points": SQUARE, "facing": "+w"},
    "parallel_axes.json": {"points": SQUARE, "up": "+z", "facing": "-z"},
    "same_axes.json": {"points": SQUARE, "up": "+y", "facing": "+y"},
    "empty.csv": "",
    "no_header.csv": "a,0,0,0\nb,1,0,0\nc,0,1,0\nd,0,0,1\n",
    "wrong_header.csv": "name,x,y\na,0,0\nb,1,0\nc,0,1\nd,1,1\n",
    "wrong_columns.csv": "name,x,y,z\na,0,0,0\nb,1,0\nc,0,1,0\nd,0,0,1\n",
    "extra_column.csv": "name,x,y,z\na,0,0,0,9\nb,1,0,0\nc,0,1,0\nd,0,0,1\n",
    "header_only.csv": "name,x,y,z\n",
    "three_points.csv": "name,x,y,z\na,0,0,0\nb,1,0,0\nc,0,1,0\n",
    "nan.csv": "name,x,y,z\na,0,0,0\nb,1,0,0\nc,0,1,0\nd,nan,0,1\n",
    "text.csv": "name,x,y,z\na,0,0,0\nb,1,0,0\nc,0,1,0\nd,one,0,1\n",
    "collinear.csv": "name,x,y,z\na,0,0,0\nb,1,0,0\nc,2,0,0\nd,3,0,0\n",
    "dup_names.csv": "name,x,y,z\na,0,0,0\nb,1,0,0\nc,0,1,0\na,0,0,1\nd,1,1,1\n",
    "layout.txt": "name,x,y,z\na,0,0,0\nb,1,0,0\nc,0,1,0\nd,0,0,1\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_malformed_files_raise_one_line_layout_error(tmp_path, name):
    p = write(tmp_path, name, BAD_FILES[name])
    for load in (layouts.load_layout_file, lambda p: layouts.get_layout(str(p))):
        with pytest.raises(LayoutError) as e:
            load(p)
        msg = str(e.value)
        assert msg and "\n" not in msg, msg


def test_binary_file_raises_layout_error(tmp_path):
    p = tmp_path / "garbage.json"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(LayoutError) as e:
        layouts.load_layout_file(p)
    assert "\n" not in str(e.value)


def test_missing_file_and_unknown_name(tmp_path):
    for spec in (tmp_path / "nope.json", tmp_path / "nope.csv", tmp_path):
        with pytest.raises(LayoutError, match="not found"):
            layouts.load_layout_file(spec)
    with pytest.raises(LayoutError, match="not found"):
        layouts.get_layout(str(tmp_path / "nope.json"))
    with pytest.raises(LayoutError, match="unknown layout"):
        layouts.get_layout("blazeface7")


def test_planar_layout_is_accepted():
    """Four coplanar points (a square marker) determine a pose; only collinear ones do not."""
    lay = Layout.from_dict({"points": SQUARE})
    assert lay.num_points == 4
    assert layouts.layout_radius(lay) == pytest.approx(np.sqrt(50))


def test_layout_constructor_validates():
    pts = tuple(tuple(map(float, p)) for p in SQUARE.values())
    with pytest.raises(LayoutError):
        Layout("m", ("a", "b", "c"), pts)  # names and points differ in number
    with pytest.raises(LayoutError):
        Layout("m", ("a", "b", "c", "d"), pts, up="+x", facing="-x")
