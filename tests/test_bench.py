"""Tests for experiments.lib.bench and its scripts: the smoke modes run and write their reports, and the
properties the benchmark relies on hold on its own inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from pnpjax import checkpoint, layouts, protocols, train
from experiments.lib import bench

ROOT = Path(__file__).resolve().parents[1]
N = 128  # the smoke size: every jitted solver below compiles for this one batch shape


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _bench_inputs(solver, protocol: str) -> protocols.Batch:
    """What the smoke benchmark feeds its solvers: N draws at the protocol's default noise."""
    proto = protocols.SEED_TEST if protocol == "seed" else solver.config.realistic
    return train.eval_batch(proto, solver.layout, jax.random.key(0), N)


def test_solver_bench_smoke_writes_report(smoke_workdir, tmp_path):
    out = tmp_path / "bench_solvers"
    ck = str(smoke_workdir)
    _run("bench_solvers.py", "--seed-checkpoint", ck, "--realistic-checkpoint", ck, "--out", str(out))
    md = (out / "README.md").read_text()
    assert md.startswith("# ")
    for png in ("error_vs_noise.png", "error_cdf.png"):
        assert f"]({png})" in md
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 5000
    res = json.loads((out / "results.json").read_text())
    assert res["command"].startswith(f"python experiments/bench_solvers.py --smoke --seed-checkpoint {ck}")
    assert res["machine"]["loadavg_end"] and [s["protocol"] for s in res["settings"]] == ["seed", "realistic"]
    expected = {
        bench.NET,
        bench.UINT8,
        bench.refine_name(3),
        bench.refine_name(3, bench.ML),
        bench.ITERATIVE,
        bench.SQPNP,
        bench.EPNP,
        bench.ORACLE,
    }
    for s in res["settings"]:
        rows = s["rows"]
        assert expected <= set(rows)
        assert (bench.ORIGINAL in rows) == (
            s["protocol"] == "seed" and bench.original_model_dir("blazeface6", None) is not None
        )
        for name, r in rows.items():
            assert r["n"] == s["n"] > 0 and r["us_per_pose"] > 0 and np.isfinite(r["l1_3d"]), name
        # Refinement lowers the reprojection error of the network, and reaches the oracle's (ML) figure.
        assert rows[bench.refine_name(3)]["reproj_rmse_median"] < rows[bench.NET]["reproj_rmse_median"]
    assert len(res["targets"]) >= 3 and all(isinstance(t["met"], bool) for t in res["targets"])


def test_throughput_smoke_writes_report(smoke_workdir, tmp_path):
    out = tmp_path / "bench_throughput.md"
    _run("bench_throughput.py", "--checkpoint", str(smoke_workdir), "--out", str(out))
    assert out.read_text().startswith("# ")
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["command"].startswith("python experiments/bench_throughput.py --smoke")
    rows = [r for r in res["rows"] if r["solver"].startswith("pnpjax")]
    # batch 1 and 1,000; network, + refine 3, + refine 3 ML; at 1,000 also the network in chunks of 256
    assert sorted(r["batch"] for r in rows) == [1] * 3 + [1000] * 4
    assert all(r["x_sqpnp"] > 0 and np.isfinite(r["x_sqpnp"]) for r in rows)
    assert (
        res["cv2_sqpnp_seconds_per_pose"] > 0
        and res["targets"]
        and all(isinstance(t["met"], bool) for t in res["targets"])
    )


@pytest.mark.parametrize("protocol", ["seed", "realistic"])
def test_refinement_lowers_reprojection_error_on_bench_inputs(smoke_workdir, protocol):
    solver = checkpoint.load(smoke_workdir)
    batch = _bench_inputs(solver, protocol)
    pts = np.asarray(solver.layout.array)
    valid = np.asarray(batch.valid)

    def reproj(fn):
        q, t, ok, sec = bench.jitted_solver(fn, repeats=1)(batch)
        assert ok.all() and sec > 0
        return bench.per_example(q, t, ok, batch, pts)["reproj"][valid]

    net = reproj(bench.network_fn(solver))
    ref = reproj(bench.refine_fn(solver, pts, 3))
    # LM takes only steps that lower the (float32) cost: never worse per pose, better overall.
    assert np.all(ref <= net * (1 + 1e-4) + 1e-9)
    assert np.median(ref) < 0.9 * np.median(net)


@pytest.mark.parametrize("protocol", ["seed", "realistic"])
def test_oracle_reprojection_is_at_most_the_truths(smoke_workdir, protocol):
    # LM from the true pose on noisy landmarks ends at a pose that explains them at least as well
    # as the truth does (it is the least-squares optimum next to it).
    solver = checkpoint.load(smoke_workdir)
    batch = _bench_inputs(solver, protocol)
    pts = np.asarray(solver.layout.array)
    valid = np.asarray(batch.valid)
    q, t, ok, _ = bench.cv2_solver("lm_from_truth", pts)(batch)
    assert ok[valid].all() and not ok[~valid].any()
    oracle = bench.per_example(q, t, ok, batch, pts)["reproj"][valid]
    truth = bench.per_example(np.asarray(batch.q), np.asarray(batch.t), valid, batch, pts)["reproj"][valid]
    assert np.all(truth > 0)  # the landmarks are noisy
    assert np.all(oracle <= truth * (1 + 1e-9))
    assert np.median(oracle) < np.median(truth)


def test_opencv_returning_no_pose_counts_as_a_failure():
    # cv2.solvePnP(SQPNP) returns (False, None, None) for this draw of the seed protocol (2 cm jitter).
    xy = np.array(
        [
            [
                [-0.00483489, -0.35997343],
                [0.24785021, -0.25429788],
                [0.08707948, -0.13816665],
                [-0.10036185, -0.00295531],
                [-0.16204324, -0.21614477],
                [0.46740901, 0.03466893],
            ]
        ]
    )
    good = np.array([[[0.0, 0.0], [0.1, 0.0], [0.05, 0.05], [0.05, 0.1], [-0.1, -0.02], [0.2, -0.02]]])
    pts = layouts.get_layout("blazeface6").array
    batch = protocols.Batch(
        np.concatenate([xy, good]),
        np.tile([0.0, 0.0, 0.0, 1.0], (2, 1)),
        np.tile([0.0, 0.0, 50.0], (2, 1)),
        np.tile([1.0, 1.0, 0.5, 0.5], (2, 1)),
        np.ones((2, 2)),
        np.array([True, True]),
    )
    q, t, ok, _ = bench.cv2_solver("sqpnp", pts)(batch)
    assert ok.tolist() == [False, True] and np.isnan(q[0]).all() and np.isfinite(q[1]).all()
    per = bench.per_example(q, t, ok, batch, pts)
    s = bench.summarize(per, batch.valid, ok)
    assert s["unsolved"] == 1 and s["n"] == 2 and s["failures"] >= 0.5 and np.isfinite(s["l1_3d"])


def test_targets_follow_the_numbers():
    row = lambda **kw: {"l1_3d": 2.0, "failures": 0.0, "rot_median_deg": 1.0, **kw}  # noqa: E731
    seed_rows = {
        bench.NET: row(l1_3d=2.6),
        bench.refine_name(3): row(l1_3d=2.03),
        bench.ORACLE: row(),
        bench.ITERATIVE: row(failures=0.3),
        bench.SQPNP: row(),
    }
    real_rows = {
        bench.refine_name(3): row(rot_median_deg=1.01),
        bench.refine_name(3, bench.ML): row(),
        bench.SQPNP: row(),
    }
    results = {
        "config": {"refine_iters": [3]},
        "settings": [
            {"protocol": "seed", "noise": 1.0, "layout": "blazeface6", "rows": seed_rows},
            {"protocol": "realistic", "noise": 0.03, "layout": "blazeface6", "rows": real_rows},
        ],
    }
    met = [t.met for t in bench.solver_targets(results)]
    # 1.5 % off the oracle; net 2.6 > 2.5; 0 < 30 % failures; 1.01° > 1°; the ML one ties.
    assert met == [False, False, True, False, True]
    results["settings"][0]["rows"][bench.refine_name(3)]["l1_3d"] = 2.019
    assert bench.solver_targets(results)[0].met


def test_paired_median_difference():
    rng = np.random.default_rng(0)
    a = rng.exponential(size=2000)
    same = bench.paired_median_diff(a, a.copy())
    assert same == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    b = a + 0.5  # a pose-wise shift is a significant difference of exactly 0.5
    d = bench.paired_median_diff(b, a)
    assert abs(d["diff"] - 0.5) < 1e-12 and d["lo"] <= 0.5 <= d["hi"] and d["lo"] > 0.4
    a_nan = a.copy()
    a_nan[:10] = np.nan  # unsolved poses are left out of both
    assert np.isfinite(bench.paired_median_diff(a_nan, b)["diff"])


def test_uint8_export_row_of_a_graph_recipe_checkpoint():
    """The bench's uint8-export row reads the TF.js export back whatever its format: a shipped
    recipe checkpoint exports a graph model (run in numpy, not jitted) whose poses differ from the
    network's by less than the network's own error on the seed protocol."""
    from pnpjax import export

    solver = checkpoint.load(Path(__file__).resolve().parents[1] / "checkpoints" / "blazeface6-seed")
    exported = bench.uint8_export_solver(solver)
    assert isinstance(exported, export.GraphSolver)
    batch = protocols.sample(protocols.SeedProtocol(scale=1.0), jax.random.key(0), solver.layout, 256)
    got = bench._export_row(exported, repeats=1)(batch)
    net = bench.jitted_solver(bench.network_fn(solver), repeats=1)(batch)
    assert np.all(np.isfinite(got.q)) and np.all(np.isfinite(got.t)) and got.seconds_per_pose > 0
    ok = np.asarray(batch.valid)
    # uint8 weights move the poses by less than the network's own error against the truth
    moved = np.median(np.linalg.norm(got.t[ok] - net.t[ok], axis=1))
    assert moved < np.median(np.linalg.norm(net.t[ok] - np.asarray(batch.t)[ok], axis=1))
