"""The public Python API (pnpjax.load, PoseSolver.predict/apply, pnpjax.evaluate).

References: the CLI's own output files (`pnpjax predict`, `pnpjax eval --json`), landmarks made
by cv2.projectPoints and by the seed recipe's projection formula (SEED.md) in numpy float64, and
central finite differences for gradients through the pure solver function.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pnpjax
from pnpjax.camera import CameraError
from pnpjax.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SEED_CKPT = REPO / "checkpoints" / "blazeface6-seed"
PIXEL_CKPT = REPO / "checkpoints" / "blazeface6"
CAM = (500.0, 510.0, 322.0, 236.0, 640.0, 480.0)  # fx, fy, cx, cy, width, height (pixels)


def _same_rotation(q_a: np.ndarray, q_b: np.ndarray, atol: float) -> None:
    """Quaternions equal up to sign (q and -q are one rotation)."""
    d = np.minimum(np.abs(q_a - q_b).max(-1), np.abs(q_a + q_b).max(-1))
    assert np.all(d < atol), d.max()


def test_import_is_light_and_every_public_name_resolves():
    code = (
        "import sys, pnpjax\n"
        "heavy = [m for m in ('jax', 'flax', 'matplotlib', 'cv2', 'tensorflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "for name in pnpjax.__all__: getattr(pnpjax, name)\n"
        "bad = [m for m in ('matplotlib', 'cv2', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(len(pnpjax.__all__))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == len(pnpjax.__all__)
    with pytest.raises(AttributeError):
        pnpjax.no_such_name  # noqa: B018


@pytest.fixture(scope="module")
def cli_outputs(tmp_path_factory, seed_model_dir):
    """`pnpjax predict` (the CLI's main, one interpreter) on a seed checkpoint, a pixel checkpoint
    (plain and refined with the ml cost) and the original model; inputs and outputs as files."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    seed_x = rng.uniform(0.3, 0.7, (50, 6, 2)).astype(np.float32)
    pix_x = rng.uniform([100, 80], [540, 400], (50, 6, 2))
    np.save(d / "seed.npy", seed_x)
    (d / "pix.json").write_text(json.dumps(pix_x.tolist()))
    cam = ",".join(map(str, CAM))
    ckpt = lambda path, inp, out: ["--checkpoint", str(path), "--input", inp, "--output", out]  # noqa: E731
    runs = {
        "seed_ckpt": ckpt(SEED_CKPT, "seed.npy", "seed_ckpt.npy"),
        "pixel_ckpt": [*ckpt(PIXEL_CKPT, "pix.json", "pixel_ckpt.json"), "--camera", cam],
        "pixel_ckpt_ml": [
            *ckpt(PIXEL_CKPT, "pix.json", "pixel_ckpt_ml.npy"),
            "--camera",
            cam,
            "--refine",
            "3",
            "--refine-cost",
            "ml",
            "--noise-2d",
            "0.05",
        ],
        "original": [*ckpt(seed_model_dir, "seed.npy", "original.npy"), "--camera", "seed"],
    }
    code = (
        "import sys, json\nfrom pnpjax import cli\n"
        "for a in json.loads(sys.argv[1]):\n    assert cli.main(['predict', *a]) == 0\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(runs.values()))], cwd=d, capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    read = lambda k: (
        np.load(d / f"{k}.npy") if (d / f"{k}.npy").exists() else np.asarray(json.loads((d / f"{k}.json").read_text()))
    )  # noqa: E731,E501
    out = {k: read(k) for k in runs}
    return {"seed_x": seed_x, "pix_x": pix_x, "out": out, "original": seed_model_dir}


def test_predict_equals_the_cli_on_seed_pixel_and_original_models(cli_outputs):
    from pnpjax import refine

    seed_x, pix_x, out = cli_outputs["seed_x"], cli_outputs["pix_x"], cli_outputs["out"]
    seed_solver, pixel_solver = pnpjax.load(SEED_CKPT), pnpjax.load(PIXEL_CKPT)
    original = pnpjax.load(cli_outputs["original"])
    assert isinstance(seed_solver, pnpjax.Solver) and isinstance(original, pnpjax.SeedSolver)
    got = {
        "seed_ckpt": seed_solver.predict(seed_x),  # default camera: seed, as the CLI
        "pixel_ckpt": pixel_solver.predict(pix_x, camera=CAM),
        "pixel_ckpt_ml": pixel_solver.predict(
            pix_x, camera=CAM, refine=3, refine_cost="ml", noise=refine.NoiseModel(0.3, 0.05)
        ),
        "original": original.predict(seed_x, camera="seed"),
    }
    for name, y in got.items():
        assert y.shape == (50, 7) and y.dtype == np.float32, name
        # .npy outputs are the same float32 values; JSON ones are those values printed in full.
        np.testing.assert_array_equal(y, out[name].astype(np.float32), err_msg=name)
    assert not np.allclose(got["pixel_ckpt"], got["pixel_ckpt_ml"], atol=1e-3)  # the refinement did something
    # The same input as a (K, 2) list gives the first row (to float32 rounding: another batch shape).
    np.testing.assert_allclose(seed_solver.predict(seed_x[0].tolist()), got["seed_ckpt"][:1], rtol=1e-5, atol=1e-5)


def test_predict_recovers_poses_of_cv2_projections_in_the_opencv_frame():
    """Pixels from cv2.projectPoints of known poses (OpenCV frame): network + LM recovers them."""
    import cv2
    from scipy.spatial.transform import Rotation

    solver = pnpjax.load(PIXEL_CKPT)
    rng = np.random.default_rng(3)
    n = 50
    # Heads facing the camera (the layout's frontal pose), turned by up to ~30 degrees, 40-90 cm away.
    rot = Rotation.from_rotvec(rng.uniform(-0.5, 0.5, (n, 3))) * Rotation.from_matrix(solver.layout.frontal_rotation)
    t_true = np.stack([rng.uniform(-8, 8, n), rng.uniform(-6, 6, n), rng.uniform(40, 90, n)], -1)
    fx, fy, cx, cy, w, h = CAM
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    pts = solver.layout.array.astype(np.float64)
    uv = np.stack([cv2.projectPoints(pts, r.as_rotvec(), t, K, None)[0][:, 0] for r, t in zip(rot, t_true)])
    y = solver.predict(uv, camera=CAM, refine=3)
    _same_rotation(y[:, :4], rot.as_quat(), 2e-3)
    np.testing.assert_allclose(y[:, 4:], t_true, atol=0.05)
    assert np.all(y[:, 3] >= 0)  # w >= 0
    net_only = solver.predict(uv, camera=CAM)
    err = lambda poses: np.median(np.linalg.norm(poses[:, 4:] - t_true, axis=1))
    assert err(net_only) > 10 * err(y)


def test_seed_camera_takes_the_originals_coordinates_and_returns_its_frame():
    """SEED.md's projection (numpy float64): u = 1 - (X/Z + 0.5), v = 1 - (Y/Z + 0.5), camera looking
    down -z; predict(camera="seed") + LM returns that pose in the same (OpenGL-like) frame."""
    from scipy.spatial.transform import Rotation

    solver = pnpjax.load(SEED_CKPT)
    rng = np.random.default_rng(1)
    n = 50
    rot = Rotation.from_euler("xyz", rng.uniform(-0.6, 0.6, (n, 3)))
    t = np.stack([rng.uniform(-8, 8, n), rng.uniform(-8, 8, n), rng.uniform(-70, -40, n)], -1)
    P = np.einsum("nij,kj->nki", rot.as_matrix(), solver.layout.array.astype(np.float64)) + t[:, None]
    uv = 1.0 - (P[..., :2] / P[..., 2:3] + 0.5)
    y = solver.predict(uv, camera="seed", refine=3)
    _same_rotation(y[:, :4], rot.as_quat(), 2e-3)
    np.testing.assert_allclose(y[:, 4:], t, atol=0.05)
    assert np.all(y[:, 3] >= 0)


def test_pure_is_a_pure_function_for_jit_vmap_and_grad(x64):
    import jax
    import jax.numpy as jnp

    from pnpjax import camera, geometry

    solver = pnpjax.load(SEED_CKPT)
    fn, variables = solver.pure
    assert solver.pure[0] is fn  # a stable static argument
    xy = jnp.asarray(np.random.default_rng(2).uniform(-0.3, 0.3, (8, 6, 2)))
    eager = solver(xy)
    np.testing.assert_allclose(jax.jit(fn)(variables, xy).t, eager.t, rtol=1e-6)
    # vmap over a stack of variable sets: each row equals the solver with those variables.
    scaled = jax.tree_util.tree_map(lambda p: 0.9 * p, variables)
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), variables, scaled)
    both = jax.jit(jax.vmap(fn, in_axes=(0, None)))(stacked, xy)  # vmap, compiled (one program)
    np.testing.assert_allclose(both.t[0], eager.t, rtol=1e-6)
    np.testing.assert_allclose(both.t[1], fn(scaled, xy).t, rtol=1e-6)
    assert not np.allclose(both.t[0], both.t[1])

    pts = jnp.asarray(solver.layout.array, jnp.float64)

    def reprojection_rmse(x):
        p = fn(variables, x[None])
        e = camera.project(geometry.transform_points(p.R, p.t, pts))[0] - x
        return jnp.sqrt(jnp.mean(jnp.sum(e * e, -1)))

    x0 = xy[0]
    g = jax.jit(jax.grad(reprojection_rmse))(x0)
    eps = 1e-6
    steps = eps * jnp.eye(12).reshape(12, 6, 2)  # central differences, all 12 coordinates at once
    f = jax.jit(jax.vmap(reprojection_rmse))
    fd = ((f(x0 + steps) - f(x0 - steps)) / (2 * eps)).reshape(6, 2)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-7)
    # Gradients w.r.t. the variables exist too (training through the public function).
    gp = jax.jit(jax.grad(lambda v: jnp.sum(fn(v, xy).t ** 2)))(variables)
    assert all(np.all(np.isfinite(a)) for a in jax.tree_util.tree_leaves(gp))


def test_original_model_is_a_pure_function_too(seed_model_dir):
    import jax

    original = pnpjax.load(seed_model_dir)
    fn, variables = original.pure
    xy = np.random.default_rng(4).uniform(-0.2, 0.2, (5, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(jax.jit(fn)(variables, xy).t, original(xy).t, rtol=1e-6)
    g = jax.grad(lambda x: fn(variables, x).t.sum())(xy)
    assert g.shape == xy.shape and np.all(np.isfinite(g)) and np.any(g != 0)


def test_evaluate_equals_pnpjax_eval(tmp_path, seed_model_dir):
    from pnpjax import cli

    n = 3000
    argv = [
        "eval",
        "--checkpoint",
        str(SEED_CKPT),
        "--checkpoint",
        str(seed_model_dir),
        "--n",
        str(n),
        "--seed",
        "5",
        "--json",
        str(tmp_path / "e.json"),
    ]
    assert cli.main(argv) == 0
    results = list(json.loads((tmp_path / "e.json").read_text())["results"].values())
    got = [pnpjax.evaluate(pnpjax.load(path), "seed", n=n, key=5) for path in (SEED_CKPT, seed_model_dir)]
    for g, expected in zip(got, results):
        assert g == pytest.approx(expected, rel=1e-6)
    assert got[0]["n"] == got[1]["n"] and got[0]["l1_3d"] < got[1]["l1_3d"]  # same draws; pnpjax beats the original
    other = pnpjax.evaluate(pnpjax.load(SEED_CKPT), "seed", n=n, key=6)
    assert other["l1_3d"] != got[0]["l1_3d"]  # another key, other draws


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"landmarks": np.zeros((3, 5, 2))}, "expected shape (N, 6, 2)"),
        ({"landmarks": np.full((2, 6, 2), np.nan)}, "row 0 has NaN or infinite values (2 of 2 rows)"),
        ({"landmarks": [["a", "b"]] * 6}, "real numbers"),
        ({"landmarks": [[0.1, 0.2], [0.3]] * 3}, "must be an array of numbers"),
        ({"landmarks": np.zeros((0, 6, 2))}, "no rows"),
        ({"landmarks": np.full((6, 2), 0.5), "camera": (1e-300, 1, 0, 0, 1, 1)}, "focal lengths off the optical axis"),
        ({"landmarks": np.zeros((6, 2)), "refine": -1}, "refine must be"),
        ({"landmarks": np.zeros((6, 2)), "refine": 1.5}, "refine must be"),
        ({"landmarks": np.zeros((6, 2)), "refine_cost": "l2"}, "unknown refine_cost"),
    ],
)
def test_predict_rejects_bad_input_with_one_clear_error(kwargs, error):
    with pytest.raises(InputError, match=error.replace("(", r"\(").replace(")", r"\)")):
        pnpjax.load(SEED_CKPT).predict(**kwargs)


def test_a_pixel_solver_needs_a_camera_and_bad_cameras_are_refused():
    solver = pnpjax.load(PIXEL_CKPT)
    with pytest.raises(InputError, match="takes pixels"):
        solver.predict(np.zeros((6, 2)))
    for bad in ((1, 2, 3), (0, 500, 320, 240, 640, 480), "hfov=0,640x480", (float("nan"),) * 6):
        with pytest.raises(CameraError):
            solver.predict(np.zeros((6, 2)), camera=bad)
    with pytest.raises(InputError, match="unknown protocol"):
        pnpjax.evaluate(solver, "webcam", n=10)
