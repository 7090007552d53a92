"""Training: golden step, compile-once, resume after a kill, data parallel == single device."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnpjax import checkpoint, config, layouts, model, protocols, train
from pnpjax.errors import ConfigError, NonFiniteLossError

SMOKE = config.get_config("smoke")
ROOT = Path(__file__).resolve().parents[1]


def _setup(cfg=SMOKE):
    layout = layouts.get_layout(cfg.layout)
    k = train.keys(cfg)
    stats = model.compute_stats(cfg.model, cfg.train_protocol, layout, k["stats"], cfg.stats_samples)
    return layout, k, stats


def test_golden_first_steps():
    """One and three steps of the smoke config from seed 0 give recorded losses.

    The values were produced by this code on the CI machine type (jax 0.10, CPU); a change in
    sampling, loss, init or optimizer that alters training shows up here.
    """
    layout, k, stats = _setup()
    step = train.make_train_step(SMOKE, layout, stats)
    state = train.init_state(SMOKE, layout, k["init"])
    losses = []
    for _ in range(3):
        state, m = step(state, k["train"])
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(losses, GOLDEN_LOSSES, rtol=2e-4)
    assert int(state.step) == 3


GOLDEN_LOSSES = [59.42744064331055, 58.46568298339844, 54.68262481689453]


def test_train_step_compiles_once():
    layout, k, stats = _setup()
    traces = []

    def counting_step(state, key):
        traces.append(1)
        return train.train_step(SMOKE, layout, stats, state, key)

    step = jax.jit(counting_step, donate_argnums=(0,))
    state = train.init_state(SMOKE, layout, k["init"])
    for _ in range(5):
        state, _ = step(state, k["train"])
    # A resumed state (restored arrays, a changed schedule length) must not retrace either.
    state = state._replace(total_steps=jnp.asarray(17, jnp.int32))
    state, _ = step(state, k["train"])
    assert len(traces) == 1


def test_step_reduces_loss_and_lr_schedule():
    cfg = dataclasses.replace(SMOKE, steps=100, warmup_steps=10)
    assert float(train.learning_rate(cfg, 0)) == 0.0
    np.testing.assert_allclose(float(train.learning_rate(cfg, 10)), cfg.lr, rtol=1e-6)
    np.testing.assert_allclose(float(train.learning_rate(cfg, 100)), cfg.lr * cfg.end_lr_fraction, rtol=1e-5)
    np.testing.assert_allclose(float(train.learning_rate(cfg, 50, 50)), cfg.lr * cfg.end_lr_fraction, rtol=1e-5)
    layout, k, stats = _setup(cfg)
    step = train.make_train_step(cfg, layout, stats)
    state = train.init_state(cfg, layout, k["init"])
    first = None
    for _ in range(100):
        state, m = step(state, k["train"])
        first = first if first is not None else float(m["loss"])
    assert float(m["loss"]) < 0.8 * first


def _params(workdir: Path):
    return jax.tree_util.tree_leaves(checkpoint.load(workdir).params)


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path):
    cfg = dataclasses.replace(SMOKE, steps=60, checkpoint_every=20, eval_every=30)
    full = tmp_path / "full"
    train.train_and_evaluate(cfg, full, progress=False, print_fn=lambda *_: None)
    part = tmp_path / "part"
    r = train.train_and_evaluate(cfg, part, max_steps=30, progress=False, print_fn=lambda *_: None)
    assert not r["finished"] and not (part / "model").exists()
    # Stopped at 30 between checkpoints (like a kill): the next run resumes from step 20.
    assert sorted(int(p.name) for p in (part / "ckpt").iterdir() if p.name.isdigit()) == [20]
    r = train.train_and_evaluate(cfg, part, progress=False, print_fn=lambda *_: None)
    assert r["finished"] and r["step"] == 60
    for a, b in zip(_params(full), _params(part)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_killed_process_resumes_to_the_same_parameters(tmp_path):
    """SIGKILL a real `pnpjax train` process after a checkpoint, rerun, compare to a clean run."""
    args = ["--steps", "3000", "--checkpoint-every", "100", "--eval-every", "100000", "--log-every", "100"]
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pnpjax", "train", "--config", "smoke", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd + ["--workdir", str(killed)] + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            steps = (
                [int(p.name) for p in (killed / "ckpt").glob("[0-9]*") if p.name.isdigit()]
                if (killed / "ckpt").exists()
                else []
            )
            if steps and max(steps) >= 200:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (killed / "model").exists()
    for workdir in (killed, tmp_path / "clean"):
        r = subprocess.run(cmd + ["--workdir", str(workdir)] + args, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert ("resuming" in r.stdout) == (workdir == killed)
    for a, b in zip(_params(killed), _params(tmp_path / "clean")):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_workdir_of_another_config_is_refused(tmp_path):
    train.train_and_evaluate(SMOKE, tmp_path, progress=False, print_fn=lambda *_: None)
    with pytest.raises(ConfigError):
        train.train_and_evaluate(dataclasses.replace(SMOKE, lr=1.0), tmp_path, progress=False)


def test_non_finite_loss_raises(tmp_path):
    cfg = dataclasses.replace(SMOKE, lr=1e30, warmup_steps=1, grad_clip=1e30)
    with pytest.raises(NonFiniteLossError):
        train.train_and_evaluate(cfg, tmp_path, progress=False, print_fn=lambda *_: None)


def test_metrics_files_and_model_metadata(tmp_path):
    r = train.train_and_evaluate(SMOKE, tmp_path, progress=False, print_fn=lambda *_: None)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    kinds = {row["kind"] for row in rows}
    assert {"start", "train", "eval", "end"} <= kinds
    assert rows[0]["devices"] == train.device_summary()
    meta = json.loads((tmp_path / "model" / checkpoint.META_FILE).read_text())
    assert meta["layout"]["name"] == "blazeface6" and meta["config"]["name"] == "smoke"
    assert meta["eval"]["l1_3d"] == pytest.approx(r["l1_3d"])
    solver = checkpoint.load(tmp_path / "model")
    assert solver.layout == layouts.BLAZEFACE6
    # A file alone is enough: the stats in the metadata reproduce the training statistics.
    layout, k, stats = _setup()
    for a, b in zip(solver.stats, stats):
        assert (a is None) == (b is None)  # optional fields (roll_weights) absent on both sides
        if a is not None:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


_DP_SCRIPT = r"""
import json, sys, dataclasses
import jax
from pnpjax import config, layouts, model, train
cfg = dataclasses.replace(config.get_config("smoke"), batch_size=64)
layout = layouts.get_layout(cfg.layout)
k = train.keys(cfg)
stats = model.compute_stats(cfg.model, cfg.train_protocol, layout, k["stats"], cfg.stats_samples)
mesh = train.make_mesh(cfg.batch_size)
step = train.make_train_step(cfg, layout, stats, mesh)
state = train.init_state(cfg, layout, k["init"])
losses = []
for _ in range(10):
    state, m = step(state, k["train"])
    losses.append(float(m["loss"]))
print(json.dumps({"devices": train.device_summary(), "losses": losses}))
"""


def _run_dp(n_devices: int) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}",
        "JAX_PLATFORMS": "cpu",
    }
    r = subprocess.run([sys.executable, "-c", _DP_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_four_devices_equal_one_device():
    one, four = _run_dp(1), _run_dp(4)
    assert one["devices"] == "1 × cpu" and four["devices"] == "4 × cpu"
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-5, atol=1e-6)


def test_roll_canonical_loss_in_the_canonical_frame_is_the_loss(monkeypatch):
    """batch_loss of a roll-canonical model computes turn-invariant losses against the truth turned
    into the canonical frame (train.TURN_INVARIANT_LOSSES): value and gradient equal those of the
    loss of `model.apply`'s pose against the truth (float64), for every built-in loss (quat head;
    l1_3d with the 6d head); a loss that is not turn-invariant (here: t_x alone) goes through
    `model.apply`. The same for roll='perspective' (train.ROTATION_INVARIANT_LOSSES; reproj_2d goes
    through `model.apply` there)."""
    from pnpjax import losses

    monkeypatch.setitem(losses.LOSSES, "t_x", lambda pred, batch, ctx: (pred.t[..., 0] - batch.t[..., 0]) ** 2)
    assert train.TURN_INVARIANT_LOSSES <= set(losses.LOSSES) - {"t_x"}
    with jax.enable_x64(True):
        base = config.get_config("blazeface6-seed")
        layout = layouts.get_layout(base.layout)
        f64 = lambda t: jax.tree_util.tree_map(lambda a: None if a is None else jnp.asarray(a, jnp.float64), t)  # noqa: E731
        batch = f64(protocols.sample_jit(base.test_protocol, jax.random.key(2), layout, 256))
        cases = [("canonical", "quat", sorted(losses.LOSSES)), ("canonical", "6d", ["l1_3d"])]
        cases += [("perspective", "quat", sorted(losses.LOSSES)), ("perspective", "6d", ["l1_3d"])]
        cases += [("perspective", "quat", ["l1_3d", "geodesic", "reproj_2d"], "axis")]  # the axis inputs too
        for roll, rotation, names, *inputs in cases:
            m = dataclasses.replace(config.RECIPE, widths=(16,), rotation=rotation, roll=roll)
            m = dataclasses.replace(m, inputs=inputs[0]) if inputs else m
            cfg = dataclasses.replace(base, model=m)
            stats = f64(model.compute_stats(cfg.model, cfg.train_protocol, layout, jax.random.key(0), 4096))
            params = f64(model.init_params(cfg.model, jax.random.key(1), layout.num_points))

            # One program per case for all its losses (op-by-op eager gradients compile hundreds of
            # small programs on a cold cache).
            @jax.jit
            def both(p, cfg=cfg, names=tuple(names)):
                out = {}
                for name in names:
                    c = dataclasses.replace(cfg, loss=name)

                    def reference(p, c=c, name=name):
                        pred = model.apply(c.model, p, stats, batch.xy)
                        return train.valid_mean(
                            losses.LOSSES[name](pred, batch, train.loss_context(c, layout, stats, batch)), batch.valid
                        )

                    out[name] = (
                        jax.value_and_grad(lambda p, c=c: train.batch_loss(c, layout, stats, p, batch))(p),
                        jax.value_and_grad(reference)(p),
                    )
                return out

            for name, ((v, g), (v_ref, g_ref)) in both(params).items():
                np.testing.assert_allclose(float(v), float(v_ref), rtol=1e-10, err_msg=f"{roll} {name}")
                for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
                    np.testing.assert_allclose(
                        np.asarray(a), np.asarray(b), rtol=1e-8, atol=1e-10, err_msg=f"{roll} {name}"
                    )
