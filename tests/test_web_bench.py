"""The web benchmark's machinery (experiments/lib/web_bench.py, web_study.py): pointed at another
web checkpoint, it benchmarks that checkpoint's modules on that checkpoint's draws; the width
study's decisions (fewest refinement steps, issue 9's figures) from its measurements."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.lib import web_bench, web_study
from pnpjax import camera, checkpoint, jsmodule, model

REPO = web_bench.REPO
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")


@pytest.fixture(scope="module")
def small_web_checkpoint(tmp_path_factory) -> Path:
    """An untrained 16-16 network of the blazeface6 realistic recipe (the shipped statistics)."""
    base = checkpoint.load(REPO / "checkpoints" / "blazeface6")
    cfg = dataclasses.replace(base.config, model=dataclasses.replace(base.config.model, widths=(16, 16)))
    params = model.init_params(cfg.model, jax.random.key(3), base.layout.num_points)
    solver = checkpoint.Solver(cfg, base.layout, base.stats, params, {})
    return checkpoint.save(tmp_path_factory.mktemp("web") / "w16", solver)


@needs_node
@pytest.mark.node
def test_bench_web_on_another_checkpoint(small_web_checkpoint):
    """web_bench.run(web=DIR) (bench_web.py --checkpoint DIR): its realistic rows are DIR's module on
    DIR's draws (the network alone equals DIR's JAX poses), its size row is DIR's default module."""
    web = small_web_checkpoint
    res = web_bench.run(n=12, repeats=1, runtimes=("Node",), web=web, log=lambda *_: None)
    assert res["web_checkpoint"] == "w16"
    solver = checkpoint.load(web)
    text = jsmodule.module_source(solver, camera.parse_camera(web_bench.EXPORT_CAMERA), "uint8", "w16").encode()
    assert tuple(res["sizes"][web_bench.size_key("w16", "uint8")]) == (len(text), len(gzip.compress(text, 9, mtime=0)))
    shipped = jsmodule.module_source(
        checkpoint.load(web_bench.WEB_CHECKPOINT), camera.parse_camera(web_bench.EXPORT_CAMERA), "uint8", "w16"
    )
    assert len(shipped) != len(text)  # a different network, a different module
    settings = [s for s in web_bench.draws(12, 0, web, seed=False)]
    node = res["runtimes"]["Node"]
    assert [n for n in node if n.startswith("realistic")] == [s.name for s in settings]
    for s in settings:
        p = solver(s.xy)  # float32 JAX on the same draws
        want = web_bench.metrics(np.asarray(p.q, np.float64), np.asarray(p.t, np.float64), s)
        got = node[s.name]["pnpjax float32"]
        assert got["n"] == want["n"] == len(s.xy)
        assert abs(got["rot_median"] - want["rot_median"]) < 1e-3, (got, want)
        assert abs(got["trans_median"] - want["trans_median"]) < 1e-3, (got, want)
    assert "seed noise_cm=1" in node  # the seed protocol's rows stay blazeface6-seed's


def test_bench_web_refuses_a_non_checkpoint(tmp_path, capsys):
    """bench_web.py --checkpoint DIR without pnpjax.json: one line on stderr, exit 2, nothing written."""
    from experiments import bench_web

    assert bench_web.main(["--checkpoint", str(tmp_path / "x\ny"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a pnpjax checkpoint directory" in err[0], err
    assert not (tmp_path / "o").exists()


def _fake(levels, rows):
    """A study result with SQPnP and the modules' (median, failures, single µs[, batch µs]) per level."""
    settings = {}
    for i, name in enumerate(levels):
        settings[name] = {"OpenCV.js SQPNP": {"rot_median": 2.0, "failures": 0, "us_single": 60.0}}
        for module, vals in rows.items():
            med, fails, us, *batch = vals[i]
            settings[name][module] = {"rot_median": med, "failures": fails, "us_single": us}
            if batch:
                settings[name][module]["us_batch"] = batch[0]
    return settings


def test_study_decisions():
    """summarise: the fewest steps within 1.01x SQPnP's median at every level and without a failure
    where SQPnP has none; the speed figures at those steps; the byte targets with and without the tracker."""
    levels = ["realistic noise_2d=0", "realistic noise_2d=0.03"]
    a, b = {}, {}
    for k, (ra, fa, ua, rb, ub) in enumerate(
        [(1.4, 0, 0.8, 1.5, 0.6), (1.015, 0, 2.5, 1.0, 2.0), (1.0, 0, 3.5, 1.0, 3.1), (1.0, 0, 4.5, 1.0, 4.0)]
    ):
        # a: 1 step is 1.5 % behind SQPnP at the noisy level, 2 steps meet it at 17x; b: 1 step meets
        # the medians but fails once where SQPnP never does, 2 steps meet all at 19.4x (too slow).
        a[web_study.module_name("a", k)] = [(2.0, 0, ua, 1.0), (2.0 * ra, fa, ua, 1.0)]
        b[web_study.module_name("b", k)] = [(2.0 * rb, 1 if k == 1 else 0, ub, 1.5), (2.0, 0, ub, 1.5)]
    res = {
        "iters": [0, 1, 2, 3],
        "settings": _fake(levels, {**a, **b}),
        "candidates": {
            "a": {"bytes": (16384, 9216), "bytes_without_tracker": (15000, 8000)},
            "b": {"bytes": (16385, 9000), "bytes_without_tracker": (14000, 9217)},
        },
    }
    web_study.summarise(res)
    ca, cb = res["candidates"]["a"], res["candidates"]["b"]
    assert ca["fewest_steps"] == 2 and cb["fewest_steps"] == 2
    assert ca["per_k"]["1"]["ratios"] == pytest.approx([1.0, 1.015]) and not ca["per_k"]["1"]["accurate"]
    assert not cb["per_k"]["1"]["accurate"] and cb["per_k"]["1"]["failures"] == [(1, 0), (0, 0)]
    assert ca["met"] == {"accuracy": True, "single": False, "batch": True, "size": True, "size_without_tracker": True}
    assert min(ca["per_k"]["2"]["single_speedup"]) == pytest.approx(60 / 3.5)
    assert ca["batch_speedup"] == pytest.approx([60.0, 60.0]) and cb["batch_speedup"] == pytest.approx([40.0, 40.0])
    assert cb["met"] == {
        "accuracy": True,
        "single": False,
        "batch": False,
        "size": False,
        "size_without_tracker": False,
    }
    res["settings"]["realistic noise_2d=0"]["OpenCV.js SQPNP"]["failures"] = 1  # SQPnP fails there too: allowed
    web_study.summarise(res)
    assert res["candidates"]["b"]["fewest_steps"] == 1


@needs_node
@pytest.mark.node
def test_study_runs_every_network(small_web_checkpoint, tmp_path):
    """web_study.run on two networks: both modules at every step count beside SQPnP on the same draws,
    each module's bytes those of its export, the tracker's share of them, a report naming both."""
    cands = {"64-64": REPO / "checkpoints" / "blazeface6", "16-16 | untrained": small_web_checkpoint}
    res = web_study.run(cands, n=10, repeats=1, log=lambda *_: None)
    assert res["candidates"]["64-64"]["params"] == 15 * 64 + 64 + 64 * 64 + 64 + 64 * 7 + 7
    assert res["candidates"]["16-16 | untrained"]["params"] == 15 * 16 + 16 + 16 * 16 + 16 + 16 * 7 + 7
    for label, c in res["candidates"].items():
        raw, gz = c["bytes"]
        raw_bare, gz_bare = c["bytes_without_tracker"]
        assert 1000 < raw - raw_bare <= 2048 and gz_bare < gz, label  # createTracker: ~2 KB (issue 10: <= 2 KB)
        assert set(c["per_k"]) == {"0", "1", "2", "3"}
    assert res["candidates"]["16-16 | untrained"]["bytes"][0] < res["candidates"]["64-64"]["bytes"][0]
    assert res["candidates"]["64-64"]["checkpoint"] == "checkpoints/blazeface6"  # no machine's path in results
    assert res["candidates"]["16-16 | untrained"]["checkpoint"] == "w16"
    for rows in res["settings"].values():
        assert {r["n"] for r in rows.values()} == {10}
        assert set(rows) == {"OpenCV.js SQPNP"} | {web_study.module_name(lb, k) for lb in cands for k in range(4)}
    web_study.write(res, tmp_path, "python experiments/web_size_study.py `x`")
    md = (tmp_path / "README.md").read_text()
    assert "16-16 \\| untrained" in md and "`` python experiments/web_size_study.py `x` ``" in md
    assert (tmp_path / "study.png").stat().st_size > 5000


def test_study_training_recipe_is_pinned(tmp_path, monkeypatch):
    """web_study.train_width trains the study's pinned recipe (l1_3d, 40,000 steps unless --steps),
    whatever the `blazeface6` preset has moved to, so the committed study's command reproduces it."""
    from pnpjax import config, train

    seen = []
    monkeypatch.setattr(train, "train_and_evaluate", lambda cfg, workdir, **_: seen.append((cfg, Path(workdir))))
    web_study.train_width((8, 8), tmp_path, log=lambda *_: None)
    web_study.train_width((8, 8), tmp_path, steps=123, log=lambda *_: None)
    (a, wa), (b, wb) = seen
    preset = config.get_config("blazeface6")
    assert (a.loss, a.steps, a.model.widths) == ("l1_3d", 40_000, (8, 8))
    assert (b.loss, b.steps) == ("l1_3d", 123)
    assert a.model == dataclasses.replace(preset.model, widths=(8, 8)) and a.layout == preset.layout
    assert (wa.name, wb.name) == ("blazeface6-w8-8", "blazeface6-w8-8-s123")
