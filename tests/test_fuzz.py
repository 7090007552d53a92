"""Property-based fuzzers (hypothesis) of the readers, the checkpoint loader, the CLI and the config.

The contract every generated case must meet: either a one-line `PnpjaxError` (the CLI: one line on
stderr, exit 2, nothing written), or a valid result (finite landmarks within limits; a sane solver;
finite unit-quaternion poses with w >= 0 in front of the camera). Anything else (a traceback, a
hang, a NaN with exit 0) fails the test and hypothesis shrinks it to a minimal case.

Seeded (`derandomize=True`: the same cases every run) and bounded: `max_examples` per test (the
numbers below, 1,080 cases in all; `pytest --hypothesis-show-statistics tests/test_fuzz.py` counts them;
PNPJAX_FUZZ_SCALE=10 runs ten times as many), in-process
calls (`cli.main(argv)`), with the heavy steps (training, evaluation draws) stubbed where the case
is about argument and config validation only.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import oracles
from pnpjax import checkpoint, cli, integrity, layouts, readers, validate
from pnpjax.errors import PnpjaxError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "blazeface6-seed"

SCALE = int(os.environ.get("PNPJAX_FUZZ_SCALE", "1"))  # e.g. 10 for a deeper (10x) run outside the suite
FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

GOOD = oracles.seed_reference_numpy(np.random.default_rng(0), 2000, layouts.BLAZEFACE6.array.astype(np.float64), 1.0)[
    0
][:3]

# Hostile values: the edges of float64 and float32, subnormals, NaN/Inf, huge integers, non-numbers.
HOSTILE_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            1e-300,
            1e-38,
            3.4e38,
            3.5e38,
            1e39,
            1e30,
            1e10,
            1e8,
            1e8 + 1,
            -1.7e308,
            1.7976931348623157e308,
            65504.0,
            65520.0,
            0.5,
            -0.5,
            1.0,
            1e3,
            1e3 + 1e-9,
        ]
    ),
)
HOSTILE_SCALARS = st.one_of(
    HOSTILE_FLOATS,
    st.integers(-(10**30), 10**30),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["0.5", "1e3", "NaN", "\n", "-", "1,2"]),
)
JSON_VALUES = st.recursive(
    HOSTILE_SCALARS,
    lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=40,
)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="pnpjax-fuzz-") as d:
        yield Path(d)


def _one_line_error(e: BaseException) -> None:
    assert isinstance(e, PnpjaxError), repr(e)
    msg = str(e)
    assert msg and "\n" not in msg and "\r" not in msg, msg


def _check_landmarks(x: np.ndarray) -> None:
    assert x.dtype == np.float64 and x.ndim == 3 and x.shape[1:] == (6, 2) and x.shape[0] >= 1
    assert np.all(np.isfinite(x)) and np.all(np.abs(x) <= validate.MAX_ABS)


def _read(path: Path):
    try:
        _check_landmarks(readers.read_landmarks(path, 6))
    except PnpjaxError as e:
        _one_line_error(e)


# --- readers ----------------------------------------------------------------------------------------


def _perturbed_rows(draw) -> list:
    rows = GOOD[: draw(st.integers(1, 3))].tolist()
    for _ in range(draw(st.integers(0, 3))):
        r, k, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 5)), draw(st.integers(0, 1))
        rows[r][k][c] = draw(HOSTILE_SCALARS)
    return rows if draw(st.booleans()) else rows[0]


@st.composite
def landmark_json_text(draw) -> bytes:
    kind = draw(st.sampled_from(["perturbed", "random", "bytes", "deep"]))
    if kind == "perturbed":
        text = json.dumps(_perturbed_rows(draw))
    elif kind == "random":
        text = json.dumps(draw(JSON_VALUES))
    elif kind == "deep":
        n = draw(st.integers(1, 5000))
        text = "[" * n + draw(st.sampled_from(["", "1", "0.5, 0.5"])) + "]" * draw(st.integers(0, n))
    else:
        return draw(st.binary(max_size=200))
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text.encode("utf-8")


@settings(FUZZ, max_examples=200 * SCALE)
@given(data=landmark_json_text())
def test_fuzz_json_landmarks(scratch, data):
    f = scratch / "x.json"
    f.write_bytes(data)
    _read(f)


NPY_DESCRS = [
    "<f8",
    ">f8",
    "<f4",
    ">f4",
    "<f2",
    "<i4",
    ">i8",
    "|u1",
    "|b1",
    "<c16",
    "|O",
    "<U3",
    "|V8",
    "<M8[s]",
    "bogus",
]


@st.composite
def npy_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["array", "header", "mutate", "npz"]))
    buf = io.BytesIO()
    if kind == "array":
        dtype = draw(st.sampled_from(["<f8", ">f8", "<f4", ">f4", "<f2", "<i4", ">i2", "|u1", "|b1", "<c8"]))
        n = draw(st.integers(0, 3))
        shape = draw(st.sampled_from([(n, 6, 2), (6, 2), (n, 5, 2), (n, 6, 3), (n * 12,), ()]))
        vals = draw(st.lists(HOSTILE_FLOATS, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        with np.errstate(all="ignore"):
            a = np.asarray(vals, np.float64).reshape(shape).astype(dtype)
        np.save(buf, a)
        return buf.getvalue()
    if kind == "npz":
        np.savez(buf, GOOD)
        return buf.getvalue()
    np.save(buf, GOOD)
    data = bytearray(buf.getvalue())
    if kind == "header":
        shape = draw(st.tuples(st.integers(0, 10**13), st.integers(0, 7), st.integers(0, 3)))
        header = {"descr": draw(st.sampled_from(NPY_DESCRS)), "fortran_order": draw(st.booleans()), "shape": shape}
        out = io.BytesIO()
        try:
            np.lib.format.write_array_header_1_0(out, header) if header["descr"] != "bogus" else out.write(
                b"\x93NUMPY\x01\x00v\x00{'descr': 'bogus', 'fortran_order': False, 'shape': (3, 6, 2), }"
                + b" " * 50
                + b"\n"
            )
        except (ValueError, TypeError):
            assume(False)
        return out.getvalue() + bytes(data[128 : 128 + draw(st.integers(0, 400))])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(FUZZ, max_examples=200 * SCALE)
@given(data=npy_bytes())
def test_fuzz_npy_landmarks(scratch, data):
    f = scratch / "x.npy"
    f.write_bytes(data)
    _read(f)


@st.composite
def layout_files(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["json", "json-random", "csv"]))
    names = list(layouts.BLAZEFACE6.point_names)
    pts = [list(p) for p in layouts.BLAZEFACE6.points]
    if kind == "csv":
        rows = [["name", "x", "y", "z"]] + [[n, *map(str, p)] for n, p in zip(names, pts)]
        for _ in range(draw(st.integers(0, 3))):
            r, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 3))
            rows[r][c] = draw(st.one_of(st.text(max_size=6), HOSTILE_FLOATS.map(repr)))
        text = "\n".join(",".join(r) for r in rows)
        return "csv", (("\ufeff" if draw(st.booleans()) else "") + text).encode("utf-8", "surrogatepass")
    if kind == "json-random":
        return "json", json.dumps(draw(JSON_VALUES)).encode()
    d = {
        "name": draw(st.one_of(st.just("face"), st.text(max_size=8), HOSTILE_SCALARS)),
        "units": draw(st.one_of(st.just("cm"), st.text(max_size=8))),
        "points": dict(zip(names, pts)),
    }
    for _ in range(draw(st.integers(0, 3))):
        r, c = draw(st.sampled_from(names)), draw(st.integers(0, 2))
        d["points"][r][c] = draw(HOSTILE_SCALARS)
    if draw(st.booleans()):
        d["up"], d["facing"] = (
            draw(st.sampled_from(["+y", "-x", "+z", "y", ""])),
            draw(st.sampled_from(["+z", "+y", "-z", 3])),
        )
    if draw(st.booleans()):  # move the origin away from the points, or blow the layout up
        off, scale = draw(HOSTILE_FLOATS), draw(st.sampled_from([1.0, 1e3, 1e-9, 1e7]))
        d["points"] = {n: [v * scale + off if isinstance(v, float) else v for v in p] for n, p in d["points"].items()}
    return "json", json.dumps(d).encode()


@settings(FUZZ, max_examples=150 * SCALE)
@given(case=layout_files())
def test_fuzz_layout_files(scratch, case):
    suffix, data = case
    f = scratch / f"layout.{suffix}"
    f.write_bytes(data)
    try:
        lay = layouts.load_layout_file(f)
    except PnpjaxError as e:
        _one_line_error(e)
        return
    pts = lay.array.astype(np.float64)
    assert 4 <= lay.num_points <= validate.MAX_POINTS and np.all(np.isfinite(pts))
    validate.layout_points(pts, lay.name)


# --- checkpoints ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpt_copy(scratch) -> Path:
    d = scratch / "ckpt"
    shutil.copytree(SHIPPED, d)
    return d


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


META = json.loads((SHIPPED / checkpoint.META_FILE).read_text())
META_PATHS = [p for p in _paths(META) if p]


@st.composite
def meta_mutations(draw):
    meta = json.loads(json.dumps(META))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(META_PATHS))
        node = meta
        try:
            for k in path[:-1]:
                node = node[k]
            op = draw(st.sampled_from(["set", "set", "delete", "scale"]))
            if op == "delete":
                node.pop(path[-1]) if isinstance(node, dict) else node.pop(path[-1])
            elif op == "scale" and isinstance(node[path[-1]], (int, float)) and not isinstance(node[path[-1]], bool):
                node[path[-1]] = node[path[-1]] * draw(st.sampled_from([-1, 0, 1e-30, 1e30, 2]))
            else:
                node[path[-1]] = draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            pass
    return meta


@settings(FUZZ, max_examples=80 * SCALE)
@given(meta=meta_mutations(), flip=st.one_of(st.none(), st.integers(0, 10**9)))
def test_fuzz_checkpoint_metadata_and_bytes(ckpt_copy, meta, flip):
    """A shipped checkpoint with mutated pnpjax.json (and maybe one flipped params byte): refused in one
    line, or loaded sane and giving finite valid poses."""
    import jax.numpy as jnp

    f = ckpt_copy / checkpoint.META_FILE
    f.write_text(json.dumps(meta))
    files = [p for p in sorted((ckpt_copy / "params").rglob("*")) if p.is_file()]
    target, orig = None, None
    if flip is not None:
        target = files[flip % len(files)]
        orig = target.read_bytes()
        b = bytearray(orig)
        b[flip % len(b)] ^= 1 << (flip % 8)
        target.write_bytes(bytes(b))
    try:
        s = checkpoint.load(ckpt_copy)
    except PnpjaxError as e:
        _one_line_error(e)
        return
    finally:
        if target is not None:
            target.write_bytes(orig)
    assert flip is None, "a flipped byte was not detected"
    integrity.check_solver(s)
    xy = validate.to_normalized(np.stack([GOOD[..., 0], 1 - GOOD[..., 1]], -1), (1.0, 1.0, 0.5, 0.5))
    p = s(jnp.asarray(xy, jnp.float32))
    assert np.all(np.isfinite(np.asarray(p.t))) and np.all(np.isfinite(np.asarray(p.q)))


# --- the CLI ----------------------------------------------------------------------------------------


def _snapshot(root: Path) -> set:
    return {(str(p.relative_to(root)), p.is_dir()) for p in root.rglob("*")}


def _run_cli(argv: list[str], root: Path, capfd) -> tuple[int, str, str]:
    before = _snapshot(root)
    capfd.readouterr()
    code = cli.main(argv)
    out, err = capfd.readouterr()
    assert code in (0, 2), (code, err)
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("pnpjax"), err
        assert _snapshot(root) == before, _snapshot(root) ^ before
    return code, out, err


@pytest.fixture(scope="module")
def shipped_solver():
    return checkpoint.load(SHIPPED)


CAMERAS = st.one_of(
    st.just(None),
    st.just("seed"),
    st.tuples(*[HOSTILE_FLOATS] * 4, st.sampled_from([1.0, 640.0, -1.0, 0.0]), st.sampled_from([1.0, 480.0])).map(
        lambda v: ",".join(repr(x) for x in v)
    ),
    st.tuples(st.sampled_from([1.0, 1e-300, 5e-324, -1.0, 1e300]), st.sampled_from([0.5, 1e30, -1e30])).map(
        lambda v: f"{v[0]!r},{v[0]!r},{v[1]!r},{v[1]!r},1,1"
    ),
    st.text(max_size=12),
)


@settings(FUZZ, max_examples=150 * SCALE)
@given(
    values=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5), st.integers(0, 1), HOSTILE_FLOATS), max_size=3),
    cam=CAMERAS,
    refine=st.sampled_from([0, 0, 3]),
)
def test_fuzz_predict(scratch, capfd, monkeypatch, shipped_solver, values, cam, refine):
    """Hostile landmark values and cameras through `pnpjax predict` on a shipped checkpoint (loaded once:
    loading is fuzzed above)."""
    monkeypatch.setattr(cli, "_load_solvers", lambda paths: [shipped_solver])
    x = GOOD.copy()
    if cam not in (None, "seed"):
        x = x * 640.0  # roughly pixels of a 640-wide camera
    for r, k, c, v in values:
        x[r, k, c] = v
    d = scratch / "predict"
    d.mkdir(exist_ok=True)
    np.save(d / "x.npy", x)
    out = d / "y.json"
    out.unlink(missing_ok=True)
    argv = [
        "predict",
        "--checkpoint",
        str(SHIPPED),
        "--input",
        str(d / "x.npy"),
        "--output",
        str(out),
        "--refine",
        str(refine),
    ]
    if cam is not None:
        argv += ["--camera=" + cam]
    code, _, err = _run_cli(argv, d, capfd)
    if code == 0:
        y = np.asarray(json.loads(out.read_text()))
        assert y.shape == (3, 7) and np.all(np.isfinite(y))
        np.testing.assert_allclose(np.linalg.norm(y[:, :4], axis=1), 1.0, atol=1e-4)
        assert np.all(y[:, 3] >= 0)
        assert np.all(y[:, 6] < 0) if cam in (None, "seed") else np.all(y[:, 6] > 0)
    else:
        assert not out.exists()


class Reached(Exception):
    """The CLI got past argument and config validation (the heavy part is stubbed)."""


OPTION_VALUES = st.one_of(
    st.sampled_from(
        [
            "0",
            "1",
            "-1",
            "-5",
            "5",
            "nan",
            "inf",
            "-inf",
            "1e300",
            "99999999999999999999",
            "4294967296",
            "",
            " ",
            "\n",
            "1\n2",
            "0x10",
            "1_000",
            "true",
            "seed",
            "l1_3d",
            "realistic",
            "uint8",
            "js",
        ]
    ),
    st.integers(-(10**25), 10**25).map(str),
    HOSTILE_FLOATS.map(repr),
    st.text(max_size=8),
)
TRAIN_OPTIONS = [
    "--seconds",
    "--steps",
    "--seed",
    "--lr",
    "--batch-size",
    "--warmup-steps",
    "--grad-clip",
    "--end-lr-fraction",
    "--seed-train.oversample",
    "--seed-train.scale",
    "--seed-test.noise-cm",
    "--realistic.aspects",
    "--realistic.depth-cm",
    "--realistic.hfov-deg",
    "--realistic.noise-2d",
    "--model.widths",
    "--model.rotation",
    "--loss",
    "--protocol",
    "--eval-size",
    "--stats-samples",
    "--layout",
    "--bogus",
]
EVAL_OPTIONS = ["--n", "--seed", "--refine", "--protocol", "--refine-cost", "--noise-3d", "--noise-2d", "--bogus"]
PREDICT_OPTIONS = ["--refine", "--refine-cost", "--noise-3d", "--noise-2d", "--camera", "--bogus"]
EXPORT_OPTIONS = ["--format", "--quantize", "--camera", "--bogus"]


@st.composite
def argv_cases(draw):
    command = draw(st.sampled_from(["train", "eval", "predict", "export", "bogus", ""]))
    opts = {"train": TRAIN_OPTIONS, "eval": EVAL_OPTIONS, "predict": PREDICT_OPTIONS, "export": EXPORT_OPTIONS}.get(
        command, ["--x"]
    )
    argv = [command] if command else []
    for _ in range(draw(st.integers(0, 4))):
        opt = draw(st.sampled_from(opts))
        vals = draw(st.lists(OPTION_VALUES, min_size=0, max_size=3))
        argv += [opt, *vals] if draw(st.booleans()) else [f"{opt}={vals[0] if vals else ''}", *vals[1:]]
    return argv


@settings(FUZZ, max_examples=300 * SCALE)
@given(argv=argv_cases())
def test_fuzz_cli_arguments(scratch, capfd, monkeypatch, argv):
    """Random option/value sequences: one line and exit 2, or validated values reach the (stubbed) work."""
    from pnpjax import export, train

    d = scratch / "cli"
    d.mkdir(exist_ok=True)
    reached = {}

    def fake_train(cfg, workdir, **kw):
        cfg = cfg.validate()  # what train_and_evaluate does first
        layouts.get_layout(cfg.layout)
        validate.config_numbers(cfg)
        reached["train"] = cfg
        return {"step": 0, "wall_seconds": 0.0, "finished": True}

    def fake_load(paths):
        reached["load"] = paths
        raise Reached

    def fake_export(*a, **k):
        reached["export"] = (a, k)
        raise Reached

    monkeypatch.setattr(train, "train_and_evaluate", fake_train)
    monkeypatch.setattr(cli, "_load_solvers", fake_load)
    monkeypatch.setattr(export, "export_checkpoint", fake_export)
    full = list(argv)
    if argv[:1] == ["train"]:
        full += ["--config", "smoke", "--workdir", str(d / "wd"), "--no-progress"]
    elif argv[:1] in (["eval"], ["predict"], ["export"]):
        full += ["--checkpoint", str(SHIPPED)]
        if argv[0] == "predict":
            full += ["--input", str(d / "x.npy"), "--output", str(d / "y.npy")]
        if argv[0] == "export":
            full += ["--out", str(d / "out"), "--format", "js"] if "--format" not in argv else ["--out", str(d / "out")]
    before = _snapshot(d)
    capfd.readouterr()
    try:
        code = cli.main(full)
    except Reached:
        code = None
    out, err = capfd.readouterr()
    assert _snapshot(d) == before
    if code is None or (code == 0 and reached):
        return
    assert code in (0, 2), (code, err)
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("pnpjax"), err
    else:
        assert "--help" in " ".join(full) or "-h" in full, (full, out, err)
