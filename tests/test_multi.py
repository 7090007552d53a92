"""pnpjax.multi: N models under one vmapped step equal N separate train.train_step runs."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnpjax import config, layouts, losses, model, multi, protocols, train
from pnpjax.errors import ConfigError

SMOKE = config.get_config("smoke")
LAYOUT = layouts.get_layout(SMOKE.layout)
STEPS = 3


@pytest.fixture(scope="module")
def stats():
    return model.compute_stats(
        SMOKE.model, SMOKE.train_protocol, LAYOUT, train.keys(SMOKE)["stats"], SMOKE.stats_samples
    )


def _runs():
    """Configs that differ in every kind of value a group batches: loss, seed, LR, training noise."""
    noisy = lambda c, v: multi.with_values(c, {"seed_train.noise_cm": v})  # noqa: E731
    return [
        multi.Run("a", dataclasses.replace(SMOKE, loss="l1_3d", seed=0)),
        multi.Run("b", noisy(dataclasses.replace(SMOKE, loss="reproj_2d", seed=1, lr=1e-3), 2.0)),
        multi.Run("c", dataclasses.replace(SMOKE, loss="geodesic", seed=0, lr=5e-3)),
    ]


def _assert_trees_close(a, b, rtol=2e-5, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("data", ["per_seed", "shared"])
def test_vmapped_equals_separate_train_steps(stats, data):
    runs = _runs()
    group, hyper = multi.build_group(runs, data)
    assert group.model_fields == ("lr",) and group.data_fields == ("seed_train.noise_cm",)
    assert group.loss_names == ("l1_3d", "reproj_2d", "geodesic")
    # per_seed: (seed 0, noise 1), (seed 1, noise 2), (seed 0, noise 1) -> 2 streams; shared: keyed by run a's seed.
    assert group.streams == 2
    states = multi.init_states(runs, LAYOUT)
    step = multi.make_train_step(group, LAYOUT, stats)
    seps = [train.init_state(r.cfg, LAYOUT, train.keys(r.cfg)["init"]) for r in runs]
    sep_steps = [train.make_train_step(r.cfg, LAYOUT, stats) for r in runs]
    key_of = lambda r: train.keys(r.cfg if data == "per_seed" else runs[0].cfg)["train"]  # noqa: E731
    for _ in range(STEPS):
        states, m = step(states, hyper)
        for i, r in enumerate(runs):
            seps[i], mi = sep_steps[i](seps[i], key_of(r))
            np.testing.assert_allclose(float(m["loss"][i]), float(mi["loss"]), rtol=1e-5)
            np.testing.assert_allclose(float(m["lr"][i]), float(mi["lr"]), rtol=1e-6)
    for i in range(len(runs)):
        _assert_trees_close(multi.unstack(states.params, i), seps[i].params)
        _assert_trees_close(multi.unstack(states.opt_state, i), seps[i].opt_state)
        assert int(states.step[i]) == int(seps[i].step) == STEPS
    # The models really differ (different inits, losses, LRs), so the agreement is not trivial.
    assert not np.allclose(
        np.asarray(states.params["Dense_0"]["kernel"][0]), np.asarray(states.params["Dense_0"]["kernel"][2])
    )


def test_loss_mixture_is_weighted_sum_of_batch_losses(stats):
    params = model.init_params(SMOKE.model, jax.random.key(0), LAYOUT.num_points)
    batch = protocols.sample(SMOKE.train_protocol, jax.random.key(1), LAYOUT, 128)
    names = ("l1_3d", "reproj_2d", "pose_mse")
    w = jnp.asarray([1.0, 30.0, 0.5])
    # Both sides compiled (one program each, not hundreds of eager operations); same arithmetic.
    mixed = jax.jit(lambda w, p, b: multi.mixed_batch_loss(SMOKE, LAYOUT, stats, names, w, p, b))
    single = {
        n: jax.jit(lambda p, b, n=n: train.batch_loss(dataclasses.replace(SMOKE, loss=n), LAYOUT, stats, p, b))
        for n in names
    }
    got = mixed(w, params, batch)
    want = sum(float(wi) * single[n](params, batch) for wi, n in zip(w, names))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    one_hot = mixed(jnp.asarray([0.0, 1.0, 0.0]), params, batch)
    assert float(one_hot) == pytest.approx(float(single["reproj_2d"](params, batch)), rel=1e-6)


def test_groups_split_on_structure_only():
    a = multi.Run("a", SMOKE)
    b = multi.Run("b", dataclasses.replace(SMOKE, seed=3, loss="l2_3d", lr=1e-2, grad_clip=0.5))
    c = multi.Run("c", dataclasses.replace(SMOKE, model=model.ModelConfig(widths=(8, 8))))
    d = multi.Run("d", dataclasses.replace(SMOKE, model=model.ModelConfig(widths=(16, 16), rotation="6d")))
    groups = multi.plan_groups([a, c, b, d])
    assert [[r.name for r in g] for g in groups] == [["a", "b"], ["c"], ["d"]]
    with pytest.raises(ConfigError, match="structure"):
        multi.build_group([a, c])
    with pytest.raises(ConfigError, match="unique"):
        multi.build_group([a, a])
    with pytest.raises(ConfigError, match="unknown loss"):
        multi.build_group([multi.Run("x", SMOKE, loss_weights=(("nope", 1.0),))])


def test_train_group_compiles_once_and_logs_per_model(tmp_path, monkeypatch):
    traces = []
    real = multi.train_step

    def counting(*args, **kwargs):
        traces.append(1)  # runs only while jax traces the step
        return real(*args, **kwargs)

    monkeypatch.setattr(multi, "train_step", counting)
    cfg = dataclasses.replace(SMOKE, steps=12, log_every=4, eval_every=6)
    runs = [
        multi.Run(f"{loss}-s{s}", dataclasses.replace(cfg, loss=loss, seed=s))
        for loss in ("l1_3d", "pose_mse")
        for s in (0, 1)
    ]
    tests = multi.make_test_sets(
        LAYOUT, {"seed_test": protocols.SEED_TEST, "noisy": dataclasses.replace(protocols.SEED_TEST, noise_cm=3.0)}, 256
    )
    res = multi.train_group(runs, tmp_path, tests, print_fn=lambda *a: None)
    assert len(traces) == 1 and res.traces == 1  # 12 steps, one trace, one compilation
    assert res.streams == 2  # two seeds; the losses share their seed's batches
    for r in runs:
        rows = [json.loads(x) for x in (tmp_path / r.name / "metrics.jsonl").read_text().splitlines()]
        tr = [x for x in rows if x["kind"] == "train"]
        assert [x["step"] for x in tr] == [4, 8, 12]
        assert all(
            x["samples"] == x["step"] * cfg.batch_size and x["seconds"] > 0 and np.isfinite(x["loss"]) for x in tr
        )
        ev = [(x["step"], x["test"]) for x in rows if x["kind"] == "eval"]
        assert ev == [(6, "seed_test"), (12, "seed_test"), (12, "noisy")]
        assert set(res.evals[r.name]) == {"seed_test", "noisy"}
        assert {"l1_3d", "rot_mean_deg", "trans_mean", "reproj_rmse_median", "failures"} <= set(
            res.evals[r.name]["seed_test"]
        )
    # The final evaluation is train.evaluate of the returned params on the same set.
    again = train.evaluate(runs[1].cfg, LAYOUT, res.params[1], res.stats, tests["noisy"])
    assert again["l1_3d"] == pytest.approx(res.evals[runs[1].name]["noisy"]["l1_3d"], rel=1e-6)
    # New values for the same structure reuse the compiled step.
    group, hyper = multi.build_group(runs)
    step = multi.make_train_step(group, LAYOUT, res.stats)
    states = multi.init_states(runs, LAYOUT)
    states, _ = step(states, hyper)
    states, _ = step(states, hyper._replace(loss_w=hyper.loss_w[::-1]))
    assert step.traces == 1


def test_losses_table_matches_losses_module():
    # The ablations iterate over losses.LOSSES; a new loss must come with a weight column.
    group, hyper = multi.build_group([multi.Run(n, dataclasses.replace(SMOKE, loss=n)) for n in losses.LOSSES])
    assert group.loss_names == tuple(losses.LOSSES)
    np.testing.assert_array_equal(np.asarray(hyper.loss_w), np.eye(len(losses.LOSSES)))


def test_data_shards_are_honoured(stats):
    """With data_shards = 2, model i of a group draws train.train_step's batches (two sub-batches of
    fold_in(step key, j)), not one whole batch: its losses and parameters are the separate run's."""
    runs = [multi.Run(f"s{seed}", dataclasses.replace(SMOKE, seed=seed, data_shards=2)) for seed in (0, 1)]
    group, hyper = multi.build_group(runs)
    states, step = multi.init_states(runs, LAYOUT), multi.make_train_step(group, LAYOUT, stats)
    seps = [train.init_state(r.cfg, LAYOUT, train.keys(r.cfg)["init"]) for r in runs]
    sep_step = train.make_train_step(runs[0].cfg, LAYOUT, stats)  # the seed enters through the key only
    sep_steps = [sep_step, sep_step]
    for _ in range(2):
        states, m = step(states, hyper)
        for i, r in enumerate(runs):
            seps[i], mi = sep_steps[i](seps[i], train.keys(r.cfg)["train"])
            np.testing.assert_allclose(float(m["loss"][i]), float(mi["loss"]), rtol=1e-5)
    for i in range(len(runs)):
        _assert_trees_close(multi.unstack(states.params, i), seps[i].params)
    # The sharded batch is not the whole one (so the agreement above is not the data_shards = 1 run's).
    batch2 = train.sample_batch(runs[0].cfg, LAYOUT, jax.random.key(0))
    batch1 = train.sample_batch(dataclasses.replace(runs[0].cfg, data_shards=1), LAYOUT, jax.random.key(0))
    assert not np.allclose(np.asarray(batch2.xy), np.asarray(batch1.xy))
    # Runs that differ in data_shards have different structures: separate groups.
    other = multi.Run("one", dataclasses.replace(SMOKE, data_shards=1))
    assert [[r.name for r in g] for g in multi.plan_groups([runs[0], other, runs[1]])] == [["s0", "s1"], ["one"]]
