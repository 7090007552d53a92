"""The command line, as a user runs it (`python -m pnpjax` and the `pnpjax` console script).

Bad inputs: exactly one line on stderr, exit status 2, no traceback, nothing written. Happy paths:
`predict --camera seed` takes and returns what the original web app used (so a seed user swaps
models with no other change), `eval` prints a table and a JSON line.

Each subprocess costs ~1.5 s of CPU (imports), so the error cases run concurrently in one fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple
from collections.abc import Callable

import numpy as np
import pytest

import oracles
from pnpjax import camera, checkpoint, cli, layouts, seed_import, tfjs

PYTHON_M = [sys.executable, "-m", "pnpjax"]
SCRIPT = shutil.which("pnpjax", path=str(Path(sys.executable).parent)) or "pnpjax"
ENTRY_POINTS = {"python -m pnpjax": PYTHON_M, "pnpjax script": [SCRIPT]}
METRIC_KEYS = {
    "n",
    "l1_3d",
    "rot_mean_deg",
    "rot_median_deg",
    "rot_p99_deg",
    "trans_mean",
    "trans_median",
    "reproj_rmse_median",
    "failures",
}


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    before: dict
    after: dict


def snapshot(root: Path) -> dict:
    """Every file and directory under root, with size and modification time."""
    return {
        str(p.relative_to(root)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
    }


def run(entry: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        entry + args, cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": ""}
    )


def seed_landmarks(n: int = 6, seed: int = 0) -> np.ndarray:
    """(n, 6, 2) blazeface6 landmarks in the original's image coords, drawn by the literal seed recipe."""
    uv, *_ = oracles.seed_reference_numpy(
        np.random.default_rng(seed), 400 * n, layouts.BLAZEFACE6.array.astype(np.float64), 1.0
    )
    assert len(uv) >= n
    return uv[:n].astype(np.float32)


# --- error cases -------------------------------------------------------------------------------------


def _copy_model(smoke: Path, case: Path) -> Path:
    d = case / "model"
    shutil.copytree(smoke / "model", d)
    return d


def _files(d: Path, pattern: str = "**/*") -> list[Path]:
    return [p for p in sorted(d.glob(pattern)) if p.is_file()]


def _garble_middle(p: Path, n: int = 16) -> None:
    b = bytearray(p.read_bytes())
    mid = len(b) // 2
    b[mid : mid + n] = bytes((x + 101) % 256 for x in b[mid : mid + n])
    p.write_bytes(bytes(b))


def corrupt_meta(smoke, case):
    d = _copy_model(smoke, case)
    (d / "pnpjax.json").write_text("{ this is not json")
    return d


def corrupt_params_truncated(smoke, case):
    d = _copy_model(smoke, case)
    for p in _files(d / "params"):
        p.write_bytes(b"")
    return d


def corrupt_params_data(smoke, case):
    """Garble the bytes of the array data only (metadata intact: the failure is in tensorstore's reads)."""
    d = _copy_model(smoke, case)
    data = [p for p in _files(d / "params") if p.parent.name == "d"]
    assert data
    for p in data:
        _garble_middle(p)
    return d


def params_config_mismatch(smoke, case):
    """pnpjax.json says another model size than the saved arrays."""
    d = _copy_model(smoke, case)
    meta = json.loads((d / "pnpjax.json").read_text())
    meta["config"]["model"]["widths"] = [32, 32]
    (d / "pnpjax.json").write_text(json.dumps(meta))
    return d


def corrupt_workdir_ckpt(smoke, case):
    """An unfinished training workdir (no model/): the latest orbax step is read, and it is corrupt."""
    d = case / "workdir"
    shutil.copytree(smoke, d, ignore=shutil.ignore_patterns("model"))
    steps = sorted((p for p in (d / "ckpt").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for p in _files(steps[-1]):
        if p.parent.name == "d":
            _garble_middle(p)
    return d


def _write(case: Path, name: str, content) -> Path:
    p = case / name
    if isinstance(content, np.ndarray):
        np.save(p, content)
    else:
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


class Case(NamedTuple):
    command: str
    make_args: Callable[[Path, Path, Path], list[str]]  # (case dir, smoke workdir, original model dir) -> argv


GOOD = seed_landmarks(5)
NAN = GOOD.copy()
NAN[2, 3, 1] = np.nan


def predict(input_name, content, checkpoint=None, camera=None, output="out/poses.npy"):
    def make(case, smoke, original):
        inp = _write(case, input_name, content)
        ckpt = checkpoint(smoke, case) if callable(checkpoint) else (checkpoint or original)
        extra = ["--camera", camera] if camera else []
        return ["predict", "--checkpoint", str(ckpt), "--input", str(inp), "--output", str(case / output), *extra]

    return Case("predict", make)


def train(*extra, layout_file=None):
    def make(case, smoke, original):
        more = []
        if layout_file is not None:
            more = ["--layout", str(_write(case, layout_file[0], layout_file[1]))]
        return ["train", "--config", extra[0], "--workdir", str(case / "workdir"), "--no-progress", *extra[1:], *more]

    return Case("train", make)


ERROR_CASES: dict[str, Case] = {
    "nan_landmarks": predict("x.npy", NAN),
    "wrong_k": predict("x.json", GOOD[:, :5].tolist()),
    "wrong_shape": predict("x.npy", np.zeros((5, 6, 3), np.float32)),
    "unreadable_json": predict("x.json", "[[0.1, 0.2], [0.3"),
    "missing_checkpoint": predict("x.npy", GOOD, checkpoint=lambda smoke, case: case / "no-such-dir"),
    "corrupt_meta": predict("x.npy", GOOD, checkpoint=corrupt_meta),
    "corrupt_params_truncated": predict("x.npy", GOOD, checkpoint=corrupt_params_truncated),
    "corrupt_params_data": predict("x.npy", GOOD, checkpoint=corrupt_params_data),
    "corrupt_workdir_ckpt": predict("x.json", GOOD.tolist(), checkpoint=corrupt_workdir_ckpt, output="out/poses.json"),
    "bad_camera": predict("x.npy", GOOD, camera="1,2,3"),
    "unknown_config": train("blazeface7"),
    "bad_override_value": train("smoke", "--model.widths", "abc"),
    "bad_layout_file": train(
        "smoke", layout_file=("bad.json", {"points": {"a": [0, 0, 0], "b": [1, 1, 1], "c": [2, 2, 2], "d": [3, 3, 3]}})
    ),
}

# The same checks in-process (cli.main), cheaper than a subprocess each.
IN_PROCESS_ERROR_CASES: dict[str, Case] = {
    "missing_input": Case(
        "predict",
        lambda case, smoke, original: [
            "predict",
            "--checkpoint",
            str(original),
            "--input",
            str(case / "nope.npy"),
            "--output",
            str(case / "out.npy"),
        ],
    ),
    "params_config_mismatch": predict("x.npy", GOOD, checkpoint=params_config_mismatch),
    "bad_camera_hfov0": predict("x.npy", GOOD, camera="hfov=0,640x480"),
    "bad_override_choice": train("smoke", "--loss", "l3_3d"),
    "eval_missing_checkpoint": Case(
        "eval",
        lambda case, smoke, original: [
            "eval",
            "--checkpoint",
            str(case / "nope"),
            "--n",
            "100",
            "--json",
            str(case / "out.json"),
        ],
    ),
    "eval_negative_noise": Case(
        "eval",
        lambda case, smoke, original: [
            "eval",
            "--checkpoint",
            str(original),
            "--n",
            "100",
            "--refine",
            "2",
            "--refine-cost",
            "ml",
            "--noise-3d",
            "-1",
            "--json",
            str(case / "out.json"),
        ],
    ),
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory, smoke_workdir, seed_model_dir) -> dict[str, Run]:
    """Every error case, run concurrently; alternating `python -m pnpjax` and the console script."""
    root = tmp_path_factory.mktemp("cli_errors")
    jobs = {}
    for i, (name, case) in enumerate(ERROR_CASES.items()):
        d = root / name
        d.mkdir()
        args = case.make_args(d, smoke_workdir, seed_model_dir)
        entry = list(ENTRY_POINTS.values())[i % 2]
        jobs[name] = (d, entry, args, snapshot(d))

    def go(name):
        d, entry, args, before = jobs[name]
        r = run(entry, args, d)
        return name, Run(r.returncode, r.stdout, r.stderr, before, snapshot(d))

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(go, jobs))


def check_one_line_error(r: Run, command: str) -> None:
    lines = r.stderr.splitlines()
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"pnpjax {command}: error: "), lines[0]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == "", r.stdout
    assert r.after == r.before, set(r.after) ^ set(r.before)


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_bad_input_one_line_exit_2_nothing_written(error_runs, name):
    check_one_line_error(error_runs[name], ERROR_CASES[name].command)


@pytest.mark.parametrize("name", list(IN_PROCESS_ERROR_CASES))
def test_bad_input_in_process(tmp_path, capfd, smoke_workdir, seed_model_dir, name):
    case = IN_PROCESS_ERROR_CASES[name]
    args = case.make_args(tmp_path, smoke_workdir, seed_model_dir)
    before = snapshot(tmp_path)
    capfd.readouterr()
    code = cli.main(args)
    out, err = capfd.readouterr()
    check_one_line_error(Run(code, out, err, before, snapshot(tmp_path)), case.command)
    assert {
        "missing_input": "not found",
        "params_config_mismatch": "do not match",
        "bad_camera_hfov0": "field of view",
        "bad_override_choice": "l3_3d",
        "eval_missing_checkpoint": "not found",
        "eval_negative_noise": "sigma_3d=-1",
    }[name] in err


def test_error_messages_name_the_problem(error_runs):
    expect = {
        "nan_landmarks": "NaN",
        "wrong_k": "(N, 6, 2)",
        "wrong_shape": "(N, 6, 2)",
        "unreadable_json": "cannot read landmarks",
        "missing_checkpoint": "not found",
        "corrupt_meta": "corrupt",
        "bad_camera": "bad camera",
        "unknown_config": "unknown config",
        "bad_override_value": "--model.widths",
        "bad_layout_file": "collinear",
    }
    for name, text in expect.items():
        assert text in error_runs[name].stderr, (name, error_runs[name].stderr)


# --- happy paths ----------------------------------------------------------------------------------------


def test_predict_seed_camera_on_the_original_model_equals_its_own_output(tmp_path, seed_model_dir):
    """`--camera seed`: the original's image coords in, its frame out; equal to the TF.js model's own
    output de-standardised with SEED.md's constants (the quaternion normalised, sign w >= 0)."""
    x = seed_landmarks(40, seed=1)
    np.save(tmp_path / "x.npy", x)
    r = run(
        PYTHON_M,
        ["predict", "--checkpoint", str(seed_model_dir), "--input", "x.npy", "--output", "y.npy", "--camera", "seed"],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (40, 7) and y.dtype == np.float32
    ref = seed_import.seed_predict_numpy(tfjs.read_layers_model(seed_model_dir), "blazeface6", x.astype(np.float64))
    q_ref = ref[:, :4] / np.linalg.norm(ref[:, :4], axis=-1, keepdims=True)
    q_ref *= np.where(q_ref[:, 3:] < 0, -1, 1)
    np.testing.assert_allclose(np.linalg.norm(y[:, :4], axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(y[:, :4], q_ref, atol=2e-5)
    np.testing.assert_allclose(y[:, 4:], ref[:, 4:], rtol=1e-5, atol=1e-3)
    # Sanity: these are faces in front of a camera looking down -z (the seed's frame).
    assert np.all(y[:, 6] < 0)


def test_predict_on_a_smoke_checkpoint_both_cameras(tmp_path, smoke_workdir):
    """A pnpjax checkpoint takes the same seed input; a pixel camera gives the OpenCV-frame pose."""
    x = seed_landmarks(8, seed=2)
    (tmp_path / "x.json").write_text(json.dumps(x.tolist()))
    r = run(
        [SCRIPT],
        ["predict", "--checkpoint", str(smoke_workdir), "--input", "x.json", "--output", "seed.json"],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    y_seed = np.asarray(json.loads((tmp_path / "seed.json").read_text()))
    assert y_seed.shape == (8, 7)
    np.testing.assert_allclose(np.linalg.norm(y_seed[:, :4], axis=-1), 1.0, atol=1e-5)
    # The same landmarks as pixels of the seed camera (v down), through the generic pixel path.
    np.save(tmp_path / "px.npy", np.asarray(camera.seed_to_pixels(x)))
    r = run(
        PYTHON_M,
        [
            "predict",
            "--checkpoint",
            str(smoke_workdir / "model"),
            "--input",
            "px.npy",
            "--output",
            "cv.npy",
            "--camera",
            "1,1,0.5,0.5,1,1",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    y_cv = np.load(tmp_path / "cv.npy")
    q_gl, t_gl = camera.pose_opencv_to_gl(y_cv[:, :4], y_cv[:, 4:])
    np.testing.assert_allclose(np.asarray(q_gl), y_seed[:, :4], atol=1e-5)
    np.testing.assert_allclose(np.asarray(t_gl), y_seed[:, 4:], rtol=1e-5, atol=1e-4)
    # And both equal the solver run in-process on normalised OpenCV coordinates.
    solver = checkpoint.load(smoke_workdir)
    np.testing.assert_allclose(cli.predict_poses(solver, x, None), y_seed, rtol=1e-5, atol=1e-5)
    p = solver(np.asarray(camera.pixels_to_normalized(camera.seed_to_pixels(x), camera.SEED_CAMERA.intrinsics)))
    np.testing.assert_allclose(np.asarray(p.t), y_cv[:, 4:], rtol=1e-5, atol=1e-4)


def test_eval_prints_table_and_json(tmp_path, smoke_workdir, seed_model_dir):
    r = run(
        [SCRIPT],
        [
            "eval",
            "--checkpoint",
            str(smoke_workdir),
            "--checkpoint",
            str(seed_model_dir),
            "--n",
            "4000",
            "--json",
            "m.json",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    header = next(i for i, ln in enumerate(lines) if "L1-3D" in ln)
    assert lines[header].split()[0] == "model" and set(lines[header + 1]) == {"-"}
    assert lines[header + 2].startswith(str(smoke_workdir)) and lines[header + 3].startswith(str(seed_model_dir))
    assert not any(ln.lstrip().startswith("{") for ln in lines)  # JSON only when asked for
    out = json.loads((tmp_path / "m.json").read_text())
    r2 = run(
        [SCRIPT],
        ["eval", "--checkpoint", str(smoke_workdir), "--checkpoint", str(seed_model_dir), "--n", "4000", "--json", "-"],
        tmp_path,
    )
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout) == out  # `--json -` prints the same JSON alone
    assert out["protocol"] == "seed" and out["layout"] == "blazeface6" and out["n"] == 4000
    for res in out["results"].values():
        assert set(res) == METRIC_KEYS and all(np.isfinite(v) for v in res.values())
        assert 3500 < res["n"] <= 4000
    # The original model on the seed test protocol: issue #2 quotes L1-3D 3.81 cm on 100k draws.
    assert out["results"][str(seed_model_dir)]["l1_3d"] == pytest.approx(3.81, abs=0.3)


def test_load_unfinished_workdir_reads_the_latest_step_and_writes_nothing(tmp_path, smoke_workdir):
    """A workdir without model/ (training interrupted) loads from ckpt/; the last step equals model/."""
    d = tmp_path / "workdir"
    shutil.copytree(smoke_workdir, d, ignore=shutil.ignore_patterns("model"))
    before = snapshot(d)
    solver, final = checkpoint.load(d), checkpoint.load(smoke_workdir / "model")
    assert snapshot(d) == before
    for a, b in zip(jax_leaves(solver.params), jax_leaves(final.params)):
        np.testing.assert_array_equal(a, b)


def jax_leaves(tree) -> list[np.ndarray]:
    import jax

    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


IN_PROCESS_CASES = {
    "empty_npy": ("x.npy", b"", "out.npy"),
    "truncated_npy": ("x.npy", "truncated", "out.npy"),
    "json_object": ("x.json", '{"landmarks": [[0.5, 0.5]]}', "out.npy"),
    "complex_npy": ("x.npy", np.zeros((1, 6, 2), complex), "out.npy"),
    "output_is_a_directory": ("x.npy", GOOD, "out.npy/"),
    "output_parent_is_a_file": ("x.npy", GOOD, "afile/out.npy"),
    "output_suffix": ("x.npy", GOOD, "out.txt"),
}


@pytest.mark.parametrize("name", list(IN_PROCESS_CASES))
def test_more_bad_inputs_in_process(tmp_path, capfd, seed_model_dir, name):
    """Cheaper in-process variants (cli.main): unusual input files and unwritable outputs."""
    inp, content, out = IN_PROCESS_CASES[name]
    (tmp_path / "afile").write_text("x")
    if isinstance(content, np.ndarray):
        np.save(tmp_path / inp, content)
    elif content == "truncated":
        np.save(tmp_path / inp, GOOD)
        (tmp_path / inp).write_bytes((tmp_path / inp).read_bytes()[:150])
    else:
        (tmp_path / inp).write_bytes(content if isinstance(content, bytes) else content.encode())
    if out.endswith("/"):
        (tmp_path / out).mkdir()
    before = snapshot(tmp_path)
    code = cli.main(
        [
            "predict",
            "--checkpoint",
            str(seed_model_dir),
            "--input",
            str(tmp_path / inp),
            "--output",
            str(tmp_path / out),
        ]
    )
    captured = capfd.readouterr()
    assert code == 2 and captured.out == ""
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith("pnpjax predict: error: "), captured.err
    assert snapshot(tmp_path) == before


def test_eval_refine_costs_on_the_same_draws(tmp_path, seed_model_dir, capfd):
    """--refine-cost: each cost gets its own row label; on the seed protocol (3D jitter only) all
    three refinements cut the original model's error by more than a third."""
    res = {}
    for cost in ("image", "object", "ml"):
        code = cli.main(
            [
                "eval",
                "--checkpoint",
                str(seed_model_dir),
                "--n",
                "2000",
                "--refine",
                "5",
                "--refine-cost",
                cost,
                "--json",
                "-",
            ]
        )
        out, err = capfd.readouterr()
        assert code == 0, err
        ((label, r),) = json.loads(out)["results"].items()
        assert label.endswith("+refine 5" + ("" if cost == "image" else f" ({cost})"))
        res[cost] = r["l1_3d"]
    assert all(v < 0.67 * 3.81 for v in res.values()), res
    assert len(set(res.values())) == 3  # three different estimators
