"""Issue #14's findings, one test (or one parametrised family) each: hostile and careless input.

The contract under test: every user error is one line on stderr (`pnpjax CMD: error: ...` or
`pnpjax: error: ...`), exit status 2 and nothing written; a pose that is returned is finite, a unit
quaternion with w >= 0 and in front of the camera. Checkpoints carry sha256 hashes of their
parameter files and sane statistics, both verified on load. Property-based versions of these
checks live in test_fuzz.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import oracles
from pnpjax import checkpoint, cli, layouts

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "blazeface6-seed"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def snapshot(root: Path) -> dict:
    """Every entry under root (hidden ones included), with type, size and mtime."""
    return {
        str(p.relative_to(root)): (p.is_dir(), p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def main_error(argv: list, root: Path, capfd, command: str | None = None, stdout_ok: bool = False) -> str:
    """Run cli.main in-process; assert one line on stderr, exit 2, no stdout, nothing written under root."""
    before = snapshot(root)
    capfd.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    prefix = f"pnpjax {command}: error: " if command else "pnpjax"
    assert lines[0].startswith(prefix), lines[0]
    assert stdout_ok or out == "", out
    assert snapshot(root) == before, set(snapshot(root)) ^ set(before)
    return lines[0]


def seed_landmarks(n: int, seed: int = 0) -> np.ndarray:
    uv, *_ = oracles.seed_reference_numpy(
        np.random.default_rng(seed), 400 * n, layouts.BLAZEFACE6.array.astype(np.float64), 1.0
    )
    return uv[:n].astype(np.float64)


GOOD = seed_landmarks(4)


def predict_argv(tmp_path: Path, inp: Path, *extra, ckpt: Path = SHIPPED, out: str = "out/poses.json") -> list:
    return [str(a) for a in ["predict", "--checkpoint", ckpt, "--input", inp, "--output", tmp_path / out, *extra]]


def check_poses(y: np.ndarray, opencv: bool) -> None:
    """Finite, unit quaternion with w >= 0, in front of the camera (z > 0 OpenCV, z < 0 seed/OpenGL)."""
    assert y.ndim == 2 and y.shape[1] == 7 and np.all(np.isfinite(y))
    np.testing.assert_allclose(np.linalg.norm(y[:, :4], axis=1), 1.0, atol=1e-4)
    assert np.all(y[:, 3] >= 0)
    assert np.all(y[:, 6] > 0) if opencv else np.all(y[:, 6] < 0)


def copy_checkpoint(dst: Path, src: Path = SHIPPED) -> Path:
    shutil.copytree(src, dst)
    return dst


def data_files(d: Path) -> list[Path]:
    return [p for p in sorted(d.rglob("*")) if p.is_file()]


# --- 1. strings that reach generated files are data ------------------------------------------------


HOSTILE_NAME = "x\nglobalThis.PWNED = 1; //</script><img src=x onerror=alert(1)> | `` ``` \u2028 */"


def test_f1_eval_table_and_markdown_keep_hostile_names_on_one_line_or_cell():
    """Names from a layout or a path appear in terminal tables, EVAL.md fences and Markdown tables:
    each row stays one line, each cell one cell, and a fence cannot be closed from inside."""
    from pnpjax import textsafe

    row = {"l1_3d": 1.0}
    table = cli.metrics_table({HOSTILE_NAME: row, "b": row})
    assert len(table.splitlines()) == 4
    cell = textsafe.md_cell(HOSTILE_NAME)
    assert "\n" not in cell and "\u2028" not in cell and "|" not in cell.replace("\\|", "")
    assert "<" not in cell  # HTML inside Markdown is inert
    text = "a\n```\nb ````"
    fenced = textsafe.md_fence(text)
    fence = fenced.splitlines()[0]
    assert set(fence) == {"`"} and fence not in text.splitlines() and fenced.endswith(fence)
    span = textsafe.md_code("python x.py --out `a``b`\n# c")  # a command line as one code span
    ticks = span[: len(span) - len(span.lstrip("`"))]
    assert len(ticks) == 3 and span.endswith(f" {ticks}") and "\n" not in span
    assert ticks not in span[len(ticks) : -len(ticks)]  # it cannot be closed early
    assert textsafe.md_code("python x.py") == "`python x.py`"


def test_f1_hostile_layout_strings_round_trip_through_model_json(tmp_path, smoke_workdir):
    """model.json and the SavedModel metadata are json.dumps output: hostile names round-trip exactly."""
    from pnpjax import export, tfjs

    s = checkpoint.load(smoke_workdir)
    lay = s.layout.to_dict()
    lay["name"], lay["units"] = HOSTILE_NAME, 'cm"\n//'
    lay["points"] = {HOSTILE_NAME + str(i): p for i, p in enumerate(lay["points"].values())}
    s.layout = layouts.Layout.from_dict(lay)
    out = export.export_solver(s, "tfjs", tmp_path / "m", quantize="float32", camera="seed")
    meta = tfjs.read_layers_model(out).metadata
    assert meta["layout"]["name"] == HOSTILE_NAME and meta["layout"]["units"] == 'cm"\n//'


# --- 2. corrupted checkpoints ----------------------------------------------------------------------


def test_f2_shipped_checkpoints_carry_params_hashes():
    for d in sorted((REPO / "checkpoints").iterdir()):
        if (d / checkpoint.META_FILE).is_file():
            meta = json.loads((d / checkpoint.META_FILE).read_text())
            files = {p.relative_to(d / "params").as_posix() for p in data_files(d / "params")}
            assert set(meta["params_sha256"]) == files, d.name


FLIPS = 300


def test_f2_single_byte_flip_anywhere_in_shipped_params_is_detected(tmp_path):
    """A byte flipped at FLIPS random positions of a shipped checkpoint's params/ files: every load refuses."""
    from pnpjax.errors import CheckpointError

    d = copy_checkpoint(tmp_path / "c")
    files = data_files(d / "params")
    sizes = np.array([p.stat().st_size for p in files])
    rng = np.random.default_rng(14)
    positions = rng.integers(0, sizes.sum(), FLIPS)
    detected = 0
    for pos in positions:
        i = int(np.searchsorted(np.cumsum(sizes), pos, side="right"))
        off = int(pos - (sizes[:i].sum()))
        f = files[i]
        orig = f.read_bytes()
        b = bytearray(orig)
        b[off] ^= 1 << int(rng.integers(0, 8))
        f.write_bytes(bytes(b))
        try:
            checkpoint.load(d)
        except CheckpointError as e:
            assert "sha256" in str(e) and "\n" not in str(e)
            detected += 1
        finally:
            f.write_bytes(orig)
    assert detected == FLIPS
    checkpoint.load(d)  # the restored copy loads


def _flip_in_latest_step(workdir: Path) -> None:
    steps = sorted((p for p in (workdir / "ckpt").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    data = [p for p in data_files(steps[-1]) if p.parent.name == "d"]
    f = max(data, key=lambda p: p.stat().st_size)
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0x40
    f.write_bytes(bytes(b))


def test_f2_training_checkpoint_byte_flip_is_detected_on_load_and_resume(tmp_path, smoke_workdir):
    from pnpjax import config, train
    from pnpjax.errors import CheckpointError

    d = tmp_path / "wd"
    shutil.copytree(smoke_workdir, d, ignore=shutil.ignore_patterns("model"))
    checkpoint.load(d)  # intact: loads
    _flip_in_latest_step(d)
    with pytest.raises(CheckpointError, match="sha256"):
        checkpoint.load(d)
    with pytest.raises(CheckpointError, match="sha256"):
        train.train_and_evaluate(config.get_config("smoke"), d, progress=False, print_fn=lambda *_: None)


def _edit_meta(d: Path, edit) -> Path:
    meta = json.loads((d / checkpoint.META_FILE).read_text())
    edit(meta)
    (d / checkpoint.META_FILE).write_text(json.dumps(meta))
    return d


def _set_stat(name, i, v):
    def edit(meta):
        meta["stats"][name][i] = v

    return edit


@pytest.mark.parametrize(
    "name,edit",
    [
        ("x_std_zero", _set_stat("x_std", 3, 0.0)),
        ("x_std_negative", _set_stat("x_std", 0, -1.0)),
        ("y_std_zero", _set_stat("y_std", 6, 0.0)),
        ("x_mean_huge", _set_stat("x_mean", 1, 1e300)),
        ("y_mean_short", lambda m: m["stats"]["y_mean"].pop()),
        ("x_std_long", lambda m: m["stats"]["x_std"].append(1.0)),
    ],
)
def test_f2_insane_stats_refused_by_predict_and_export(tmp_path, capfd, name, edit):
    d = _edit_meta(copy_checkpoint(tmp_path / "c"), edit)
    np.save(tmp_path / "x.npy", GOOD)
    msg = main_error(predict_argv(tmp_path, tmp_path / "x.npy", ckpt=d), tmp_path, capfd, "predict")
    assert "stats" in msg
    main_error(["export", "--checkpoint", d, "--format", "js", "--out", tmp_path / "js"], tmp_path, capfd, "export")


def test_f2_nan_stats_token_refused(tmp_path, capfd):
    d = copy_checkpoint(tmp_path / "c")
    f = d / checkpoint.META_FILE
    meta = json.loads(f.read_text())
    meta["stats"]["x_mean"][0] = float("nan")
    f.write_text(json.dumps(meta))  # json.dumps writes the NaN token
    np.save(tmp_path / "x.npy", GOOD)
    main_error(predict_argv(tmp_path, tmp_path / "x.npy", ckpt=d), tmp_path, capfd, "predict")
    main_error(["export", "--checkpoint", d, "--format", "js", "--out", tmp_path / "js"], tmp_path, capfd, "export")


def test_f2_nan_params_with_valid_hashes_refused_by_load_and_export(tmp_path, capfd):
    """Parameters that hash correctly but are NaN (e.g. saved by a broken run) fail the sanity check."""
    import jax

    from pnpjax import export
    from pnpjax.errors import CheckpointError

    s = checkpoint.load(SHIPPED)
    s.params = jax.tree_util.tree_map(lambda a: np.full(a.shape, np.nan, np.float32), s.params)
    with pytest.raises(export.ExportError, match="non-finite"):
        export.export_solver(s, "tfjs", tmp_path / "direct")
    with pytest.raises(CheckpointError, match="finite"):
        checkpoint.save(tmp_path / "bad", s)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "direct").exists()
    # Written around the guard (as a broken writer would), with correct hashes: load still refuses.
    d = copy_checkpoint(tmp_path / "c")
    shutil.rmtree(d / "params")
    ckptr = checkpoint._checkpointer()
    ckptr.save((d / "params").absolute(), jax.device_get(s.params))
    ckptr.wait_until_finished()
    from pnpjax import integrity

    _edit_meta(d, lambda m: m.__setitem__("params_sha256", integrity.hash_tree(d / "params")))
    with pytest.raises(CheckpointError, match="finite"):
        checkpoint.load(d)
    main_error(["export", "--checkpoint", d, "--format", "js", "--out", tmp_path / "js"], tmp_path, capfd, "export")


# --- 3. finite in, finite out ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,camera",
    [
        (1e39, None),
        (1e30, None),
        (-1.7e308, None),
        (1e10, None),
        (0.5, "1e-300,1e-300,0,0,1,1"),
        (0.5, "5e-324,5e-324,0,0,1,1"),
        (0.5, "-500,500,320,240,640,480"),
        (0.5, "1e300,1e300,0,0,1,1"),
    ],
)
def test_f3_no_nan_or_zero_quaternion_with_exit_0(tmp_path, capfd, value, camera):
    """Out-of-range coordinates or intrinsics: one line naming the row or field, exit 2."""
    x = GOOD.copy()
    x[2, 3, 0] = value
    np.save(tmp_path / "x.npy", x)
    extra = ["--camera", camera] if camera else []
    msg = main_error(predict_argv(tmp_path, tmp_path / "x.npy", *extra), tmp_path, capfd, "predict")
    assert ("row 2" in msg) if camera is None else any(f in msg for f in ("fx", "camera"))


def test_f3_validate_rules_and_accepted_inputs_give_valid_poses(tmp_path, capfd):
    from pnpjax import validate
    from pnpjax.errors import InputError

    with pytest.raises(InputError, match="fx"):
        validate.intrinsics([0.0, 1.0, 0.5, 0.5])
    with pytest.raises(InputError, match="row 1"):
        validate.normalized_landmarks(np.array([[[0.1, 0.2]] * 6, [[0.1, 2e3]] * 6]))
    np.save(tmp_path / "x.npy", GOOD)
    assert cli.main(predict_argv(tmp_path, tmp_path / "x.npy")) == 0
    check_poses(np.asarray(json.loads((tmp_path / "out/poses.json").read_text())), opencv=False)


# --- 4. tracebacks that become one line --------------------------------------------------------------


def _npy_header_claiming(rows: int) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (rows, 6, 2)})
    return buf.getvalue() + b"\0" * 64


def _landmark_file(kind: str, d: Path) -> Path:
    if kind == "npy_zero_rows":
        np.save(d / "x.npy", np.zeros((0, 6, 2)))
        return d / "x.npy"
    if kind == "npz_named_npy":
        np.savez(d / "x.npz", GOOD)
        return (d / "x.npz").rename(d / "x.npy")
    if kind == "json_deep":
        (d / "x.json").write_text("[" * 100_000 + "]" * 100_000)
        return d / "x.json"
    if kind == "npy_header_1e12_rows":
        (d / "x.npy").write_bytes(_npy_header_claiming(10**12))
        return d / "x.npy"
    if kind == "json_numeric_strings":
        (d / "x.json").write_text(json.dumps([[str(v) for v in r] for r in GOOD[0].tolist()]))
        return d / "x.json"
    if kind == "json_booleans":
        (d / "x.json").write_text(json.dumps([[True, False]] * 6))
        return d / "x.json"
    if kind == "json_nan_token":
        (d / "x.json").write_text(json.dumps(GOOD[0].tolist()).replace("0.", "NaN, 0.", 1))
        return d / "x.json"
    if kind == "npy_header_nul":  # found by the fuzzer: numpy's header parser raises tokenize.TokenError
        header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 6, 2), \x00"
        (d / "x.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00" + header.ljust(117) + b"\n")
        return d / "x.npy"
    if kind == "fifo":
        os.mkfifo(d / "x.npy")
        return d / "x.npy"
    if kind == "directory":
        (d / "x.npy").mkdir()
        return d / "x.npy"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "npy_zero_rows",
        "npz_named_npy",
        "json_deep",
        "npy_header_1e12_rows",
        "json_numeric_strings",
        "json_booleans",
        "json_nan_token",
        "npy_header_nul",
        "fifo",
        "directory",
    ],
)
def test_f4_f7_landmark_files_refused_with_one_line(tmp_path, capfd, kind):
    inp = _landmark_file(kind, tmp_path)
    t0 = time.perf_counter()
    main_error(predict_argv(tmp_path, inp), tmp_path, capfd, "predict")
    assert time.perf_counter() - t0 < 30


def test_f4_big_endian_npy_is_read_as_its_values(tmp_path):
    from pnpjax import readers

    np.save(tmp_path / "be.npy", GOOD.astype(">f8"))
    np.save(tmp_path / "le.npy", GOOD.astype("<f4"))
    be = readers.read_landmarks(tmp_path / "be.npy", 6)
    np.testing.assert_array_equal(be, GOOD)
    assert cli.main(predict_argv(tmp_path, tmp_path / "be.npy", out="a.npy")) == 0
    assert cli.main(predict_argv(tmp_path, tmp_path / "le.npy", out="b.npy")) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), atol=1e-5)


def _meta_cases() -> dict:
    def set_path(path, value):
        def edit(m):
            *head, last = path
            for k in head:
                m = m[k]
            m[last] = value

        return edit

    return {
        "meta_is_a_list": lambda m: m.clear() or m.update({"__replace__": [1, 2]}),
        "config_is_a_string": set_path(["config"], "blazeface6-seed"),
        "config_unknown_field": set_path(["config", "model", "depth"], 3),
        "widths_is_a_string": set_path(["config", "model", "widths"], "64"),
        "widths_negative": set_path(["config", "model", "widths"], [-64, 64]),
        "rotation_unknown": set_path(["config", "model", "rotation"], "euler"),
        "seed_train_is_a_list": set_path(["config", "seed_train"], [1, 2]),
        "layout_is_a_list": set_path(["layout"], [1, 2]),
        "layout_points_a_number": set_path(["layout", "points"], 5),
        "layout_point_2d": set_path(["layout", "points", "nose_tip"], [0, 0]),
        "layout_point_string": set_path(["layout", "points", "nose_tip"], ["0", "0", "1"]),
        "stats_missing": lambda m: m.pop("stats"),
        "stats_is_a_string": set_path(["stats"], "x"),
        "stats_x_std_string": set_path(["stats", "x_std"], "1"),
        "stats_nested": set_path(["stats", "x_mean"], [[0.0] * 12]),
        "hashes_is_a_list": set_path(["params_sha256"], ["abc"]),
        "hash_not_hex": lambda m: m["params_sha256"].update({k: "zz" for k in m["params_sha256"]}),
        "unknown_hashed_file": lambda m: m["params_sha256"].update({"../../etc/passwd": "0" * 64}),
    }


META_CASES = _meta_cases()


@pytest.mark.parametrize(
    "name", list(META_CASES) + ["meta_is_a_directory", "meta_is_a_fifo", "meta_deep", "meta_not_utf8", "meta_huge"]
)
def test_f4_malformed_pnpjax_json_one_line(tmp_path, capfd, name):
    d = copy_checkpoint(tmp_path / "c")
    f = d / checkpoint.META_FILE
    if name in META_CASES:
        meta = json.loads(f.read_text())
        META_CASES[name](meta)
        f.write_text(json.dumps(meta.get("__replace__", meta)))
    else:
        f.unlink()
        if name == "meta_is_a_directory":
            f.mkdir()
        elif name == "meta_is_a_fifo":
            os.mkfifo(f)
        elif name == "meta_deep":
            f.write_text("[" * 100_000 + "]" * 100_000)
        elif name == "meta_not_utf8":
            f.write_bytes(b'{"config": "\xff\xfe"}')
        else:
            with open(f, "wb") as fh:  # sparse: 2 GB without writing them
                fh.truncate(2 << 30)
    np.save(tmp_path / "x.npy", GOOD)
    main_error(predict_argv(tmp_path, tmp_path / "x.npy", ckpt=d), tmp_path, capfd, "predict")


def _train_argv(tmp_path: Path, *extra) -> list:
    return ["train", "--config", "smoke", "--workdir", tmp_path / "wd", "--no-progress", *extra]


@pytest.mark.parametrize(
    "extra,field",
    [
        (["--seed", "99999999999999999999"], "seed"),
        (["--seed", "-1"], "seed"),
        (["--seed-train.oversample", "0"], "oversample"),
        (["--protocol", "realistic", "--realistic.aspects"], "aspects"),
        (["--protocol", "realistic", "--realistic.depth-cm", "-5", "10"], "depth_cm"),
        (["--realistic.hfov-deg", "0", "200"], "hfov_deg"),
        (["--warmup-steps", "-1"], "warmup_steps"),
        (["--grad-clip", "-1"], "grad_clip"),
        (["--grad-clip", "nan"], "grad_clip"),
        (["--end-lr-fraction", "-0.5"], "end_lr_fraction"),
        (["--lr", "inf"], "lr"),
        (["--seed-test.noise-cm", "-1"], "noise_cm"),
        (["--seconds", "-5"], "--seconds"),
        (["--seconds", "nan"], "--seconds"),
        (["--steps", "0"], "--steps"),
    ],
)
def test_f4_f7_bad_numbers_refused_before_training(tmp_path, capfd, extra, field):
    t0 = time.perf_counter()
    msg = main_error(_train_argv(tmp_path, *extra), tmp_path, capfd, "train")
    assert field in msg, msg
    assert time.perf_counter() - t0 < 20


@pytest.mark.parametrize(
    "extra,field",
    [
        (["--refine", "-5"], "--refine"),
        (["--refine", "100000000"], "--refine"),
        (["--n", "0"], "--n"),
        (["--seed", "99999999999999999999"], "--seed"),
    ],
)
def test_f7_bad_eval_numbers(tmp_path, capfd, extra, field):
    msg = main_error(["eval", "--checkpoint", SHIPPED, "--n", "100", *extra], tmp_path, capfd, "eval")
    assert field in msg


def test_f7_bad_predict_refine(tmp_path, capfd):
    np.save(tmp_path / "x.npy", GOOD)
    main_error(predict_argv(tmp_path, tmp_path / "x.npy", "--refine", "-5"), tmp_path, capfd, "predict")


def test_f4_workdir_that_is_a_file(tmp_path, capfd):
    (tmp_path / "wd").write_text("x")
    assert "workdir" in main_error(_train_argv(tmp_path), tmp_path, capfd, "train")
    (tmp_path / "f").write_text("x")
    main_error(
        ["train", "--config", "smoke", "--workdir", tmp_path / "f" / "wd", "--no-progress"], tmp_path, capfd, "train"
    )


@pytest.mark.skipif(IS_ROOT, reason="root ignores directory permissions")
def test_f4_read_only_workdir_and_export_dir(tmp_path, capfd):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        main_error(["train", "--config", "smoke", "--workdir", ro / "wd", "--no-progress"], tmp_path, capfd, "train")
        main_error(
            ["export", "--checkpoint", SHIPPED, "--format", "tfjs", "--out", ro / "m"], tmp_path, capfd, "export"
        )
    finally:
        ro.chmod(0o755)


def test_f4_export_out_under_a_file(tmp_path, capfd):
    (tmp_path / "f").write_text("x")
    main_error(
        ["export", "--checkpoint", SHIPPED, "--format", "tfjs", "--out", tmp_path / "f" / "m"],
        tmp_path,
        capfd,
        "export",
    )


def _layout_file(d: Path, offset=(0.0, 0.0, 0.0), k: int = 6) -> Path:
    pts = layouts.BLAZEFACE6.array.astype(float)
    if k > 6:
        rng = np.random.default_rng(0)
        pts = rng.normal(size=(k, 3)) * 5
    pts = pts + np.asarray(offset)
    f = d / "lay.json"
    f.write_text(json.dumps({"name": "far", "points": {f"p{i}": p.tolist() for i, p in enumerate(pts)}}))
    return f


def test_f4_layout_far_from_its_origin_refused_clearly(tmp_path, capfd):
    lay = _layout_file(tmp_path, offset=(1000.0, 0.0, 0.0))
    msg = main_error(_train_argv(tmp_path, "--layout", lay), tmp_path, capfd, "train")
    assert "origin" in msg


# --- 5. limits --------------------------------------------------------------------------------------


def test_f5_huge_layout_refused_before_allocating(tmp_path, capfd):
    lay = _layout_file(tmp_path, k=20_000)
    t0 = time.perf_counter()
    msg = main_error(_train_argv(tmp_path, "--layout", lay), tmp_path, capfd, "train")
    assert "points" in msg and time.perf_counter() - t0 < 10


def test_f5_tfjs_shard_size_checked_before_reading(tmp_path, monkeypatch):
    from pnpjax import export, tfjs

    d = tmp_path / "m"
    # a plain-recipe checkpoint: its tfjs export is a layers model (the shipped recipe's is a graph model)
    export.export_checkpoint(REPO / "tests" / "data" / "legacy-blazeface6-seed", "tfjs", d, quantize="float32")
    with open(d / tfjs.SHARD_NAME, "r+b") as fh:
        fh.truncate(4 << 30)  # sparse 4 GB shard

    def no_read(*a, **k):
        raise AssertionError("read before the size check")

    monkeypatch.setattr(Path, "read_bytes", no_read)
    with pytest.raises(tfjs.ModelFormatError, match="bytes"):
        tfjs.read_layers_model(d)


def test_f5_eval_draws_are_sampled_in_bounded_chunks(monkeypatch):
    """`eval --n` in the millions: the sampler is called on at most EVAL_SAMPLE_CHUNK draws at a time
    (it held ~oversample x 100 floats per draw at once: 5.2 GB for 2M); small n keeps its draws."""
    import jax

    from pnpjax import protocols, train

    calls = []
    real = protocols.sample_jit
    monkeypatch.setattr(protocols, "sample_jit", lambda p, k, lay, n: calls.append(n) or real(p, k, lay, n))
    monkeypatch.setattr(train, "EVAL_SAMPLE_CHUNK", 512)
    key = jax.random.key(3)
    b = train.eval_batch(protocols.SEED_TEST, layouts.BLAZEFACE6, key, 1300)
    assert calls == [512, 512, 512] and b.xy.shape == (1300, 6, 2) and b.valid.shape == (1300,)
    again = train.eval_batch(protocols.SEED_TEST, layouts.BLAZEFACE6, key, 1300)
    np.testing.assert_array_equal(np.asarray(b.xy), np.asarray(again.xy))
    assert len({np.asarray(b.xy)[i * 512, 0, 0] for i in range(3)}) == 3  # chunks are different draws
    small = train.eval_batch(protocols.SEED_TEST, layouts.BLAZEFACE6, key, 512)  # n <= chunk: one call, as before
    np.testing.assert_array_equal(
        np.asarray(small.xy), np.asarray(real(protocols.SEED_TEST, key, layouts.BLAZEFACE6, 512).xy)
    )


# --- 6. export --force next to its source ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["itself", "inside", "parent"])
def test_f6_export_force_refuses_out_related_to_the_checkpoint(tmp_path, capfd, where):
    d = copy_checkpoint(tmp_path / "root" / "c")
    out = {"itself": d, "inside": d / "params", "parent": tmp_path / "root"}[where]
    main_error(["export", "--checkpoint", d, "--format", "tfjs", "--out", out, "--force"], tmp_path, capfd, "export")
    checkpoint.load(d)


# --- 7. minor ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["train"],
        ["train", "--config", "smoke"],
        ["eval", "--protocol", "x", "--checkpoint", "c"],
        ["predict", "--checkpoint", "c", "--input", "i.npy", "--output", "o.npy", "--bogus"],
        ["frobnicate"],
        ["eval", "--checkpoint", "c", "--n", "ten"],
    ],
)
def test_f7_argparse_errors_are_one_line(tmp_path, capfd, argv):
    main_error(argv, tmp_path, capfd)


NAN_LOSS = (
    "--lr",
    "1e12",
    "--warmup-steps",
    "0",
    "--grad-clip",
    "1e12",
    "--stats-samples",
    "1024",
    "--eval-size",
    "64",
)


def test_f7_nan_loss_leaves_no_workdir(tmp_path, capfd):
    msg = main_error(_train_argv(tmp_path, *NAN_LOSS), tmp_path, capfd, "train", stdout_ok=True)
    assert "non-finite loss" in msg


def test_f7_nan_loss_in_an_existing_workdir_removes_only_what_it_created(tmp_path, capfd):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "notes.txt").write_text("mine")
    assert cli.main([str(a) for a in _train_argv(tmp_path, *NAN_LOSS)]) == 2
    assert "non-finite loss" in capfd.readouterr().err
    assert [p.name for p in wd.iterdir()] == ["notes.txt"] and (wd / "notes.txt").read_text() == "mine"


def test_f7_stale_temp_entries_are_cleaned(tmp_path):
    """A temp entry of a killed writer (dead pid) is removed by the next write of the same target; a live
    writer's is kept."""
    from pnpjax import export

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".m.tmp-{dead.pid}-abc"
    stale.mkdir()
    (stale / "model.json").write_text("{}")
    live = tmp_path / f".m.tmp-{os.getpid()}-def"
    live.mkdir()
    export.export_checkpoint(SHIPPED, "tfjs", tmp_path / "m")
    assert not stale.exists() and live.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"m", live.name}


def test_f7_stale_training_temp_entries_are_cleaned_on_resume(tmp_path, smoke_workdir):
    """kill -9 during a save leaves orbax's `<step>.orbax-checkpoint-tmp-*` and our `.model.tmp-<pid>-*`:
    the next run of the same command removes both."""
    from pnpjax import config, train

    wd = tmp_path / "wd"
    shutil.copytree(smoke_workdir, wd)
    orbax_tmp = wd / "ckpt" / "40.orbax-checkpoint-tmp-1700000000"
    orbax_tmp.mkdir()
    (orbax_tmp / "junk").write_text("x")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ours = wd / f".model.tmp-{dead.pid}-abc"
    ours.mkdir()
    train.train_and_evaluate(config.get_config("smoke"), wd, progress=False, print_fn=lambda *_: None)
    assert not orbax_tmp.exists() and not ours.exists()
    checkpoint.load(wd)


def test_f7_error_messages_are_one_line_whatever_the_user_text(tmp_path):
    """Found by the fuzzer: a layout named "\\n" made LayoutError's message two lines (and an option value
    with \\x1e, a record separator, two lines of `pnpjax train` output)."""
    from pnpjax.errors import LayoutError, PnpjaxError

    f = tmp_path / "l.json"
    pts = {"p": [0, 0, 0], "q": [1, 1, 1], "r": [2, 2, 2], "s": [3, 3, 3]}
    f.write_text(json.dumps({"name": "a\nb\x1ec\u2028", "points": pts}))
    with pytest.raises(LayoutError) as e:
        layouts.load_layout_file(f)
    assert len(str(e.value).splitlines()) == 1 and "collinear" in str(e.value)
    assert len(str(PnpjaxError("x\ry\x85z")).splitlines()) == 1


def test_f7_csv_layout_with_utf8_bom_is_accepted(tmp_path):
    rows = "\n".join(
        f"{n},{x},{y},{z}" for n, (x, y, z) in zip(layouts.BLAZEFACE6.point_names, layouts.BLAZEFACE6.points)
    )
    f = tmp_path / "face.csv"
    f.write_bytes(("\ufeffname,x,y,z\n" + rows + "\n").encode("utf-8"))
    lay = layouts.load_layout_file(f)
    assert lay.point_names == layouts.BLAZEFACE6.point_names
    np.testing.assert_array_equal(lay.array, layouts.BLAZEFACE6.array)


def test_f7_help_overrides_shows_the_chosen_configs_defaults(capfd):
    assert cli.main(["train", "--config", "blazeface6-seed-large", "--workdir", "x", "--help-overrides"]) == 0
    out = capfd.readouterr().out
    assert "128 128 128" in out and "blazeface6-seed-large" in out
    assert cli.main(["train", "--config", "smoke", "--workdir", "x", "--help-overrides"]) == 0
    out = capfd.readouterr().out
    assert "16 16" in out and "128 128 128" not in out
