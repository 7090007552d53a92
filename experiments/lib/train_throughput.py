"""Valid training samples per second of the full jitted train step (experiments/bench_train.py)."""

from __future__ import annotations

import dataclasses
import time

import jax

from pnpjax import layouts, model
from pnpjax.config import Config
from pnpjax.train import init_state, keys, make_mesh, make_train_step


def measure_throughput(cfg: Config, batch_sizes=(1024, 4096, 16384), seconds: float = 5.0) -> list[dict]:
    """Valid training samples per second of the full jitted step (sampling + loss + update)."""
    layout = layouts.get_layout(cfg.layout)
    k = keys(cfg)
    stats = model.compute_stats(cfg.model, cfg.train_protocol, layout, k["stats"], 20_000)
    rows = []
    for bs in batch_sizes:
        c = dataclasses.replace(cfg, batch_size=bs)
        step = make_train_step(c, layout, stats, make_mesh(bs))
        state = init_state(c, layout, k["init"])
        t0 = time.perf_counter()
        state, m = step(state, k["train"])
        jax.block_until_ready(state)
        compile_s = time.perf_counter() - t0
        state, n, valid, dt, cpu = _timed_window(step, state, k["train"], seconds)
        # CPU seconds (all threads of this process) as well as wall: on a shared machine the
        # CPU time per step is the steadier measure of the work a step does.
        rows.append(
            {
                "batch": bs,
                "steps_per_s": n / dt,
                "ms_per_step": 1e3 * dt / n,
                "cpu_ms_per_step": 1e3 * cpu / n,
                "valid_samples_per_s": float(valid) * bs / dt,
                "valid_samples_per_cpu_s": float(valid) * bs / cpu,
                "compile_s": compile_s,
            }
        )
    return rows


def _timed_window(step, state, key, seconds: float):
    """Train steps for `seconds` of wall clock: (state, steps, valid samples / batch, wall s, CPU s)."""
    n, valid, t0, c0 = 0, 0.0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        state, m = step(state, key)
        valid += m["valid"]
        n += 1
    jax.block_until_ready(state)
    return state, n, valid, time.perf_counter() - t0, time.process_time() - c0


def compare_throughput(cfgs: dict[str, Config], batch_size: int, seconds: float = 2.0, rounds: int = 4) -> dict:
    """Side-by-side valid samples/s of several configs' jitted steps in ONE process: each step is
    compiled first, then timed in alternating windows of `seconds` (rounds x configs), so a
    change of the machine's load hits every config alike. Returns {name: {"wall": [samples/s
    per round], "cpu": [samples per CPU-s per round], "valid_fraction": mean valid share}}."""
    steps, states, out = {}, {}, {}
    for name, cfg in cfgs.items():
        c = dataclasses.replace(cfg, batch_size=batch_size)
        layout = layouts.get_layout(c.layout)
        k = keys(c)
        stats = model.compute_stats(c.model, c.train_protocol, layout, k["stats"], 20_000)
        steps[name] = (make_train_step(c, layout, stats, make_mesh(batch_size)), k["train"])
        state, _ = steps[name][0](init_state(c, layout, k["init"]), k["train"])
        states[name] = jax.block_until_ready(state)
        out[name] = {"wall": [], "cpu": [], "valid": []}
    for _ in range(rounds):
        for name, (step, key) in steps.items():
            states[name], n, valid, dt, cpu = _timed_window(step, states[name], key, seconds)
            out[name]["wall"].append(float(valid) * batch_size / dt)
            out[name]["cpu"].append(float(valid) * batch_size / cpu)
            out[name]["valid"].append(float(valid) / n)
    return {
        name: {"wall": r["wall"], "cpu": r["cpu"], "valid_fraction": sum(r["valid"]) / len(r["valid"])}
        for name, r in out.items()
    }


def step_stages(cfg: Config, layout, stats) -> dict:
    """Prefixes of the train step, each a function (state, key) -> something to block on, jitted
    alone: the difference of two neighbours' times is the cost of the stage between them."""
    import functools

    from pnpjax import train

    def batch_of(state, key):
        return train.sample_batch(cfg, layout, jax.random.fold_in(key, state.step))

    def canonical(state, key):  # + the recipe's geometry on the landmarks (and the truth)
        b = batch_of(state, key)
        if cfg.model.roll == "none":
            return model.features(cfg.model, b.xy), b.q
        xy, q, t = model.canonicalize(b.xy, stats.roll_weights, b.q, b.t, cfg.model.roll)
        return model.features(cfg.model, xy), q, t

    def loss(state, key):  # + network forward and loss
        return train.batch_loss(cfg, layout, stats, state.params, batch_of(state, key))

    def grad(state, key):  # + backward pass
        f = functools.partial(train.batch_loss, cfg, layout, stats)
        return jax.value_and_grad(f)(state.params, batch_of(state, key))

    def full(state, key):  # + gradient clipping, Adam and the update
        return train.train_step(cfg, layout, stats, state, key)

    return {
        "sample": batch_of,
        "+ recipe geometry": canonical,
        "+ forward, loss": loss,
        "+ backward": grad,
        "+ Adam (full step)": full,
    }


def profile_step(cfg: Config, batch_size: int, seconds: float = 1.0, rounds: int = 5) -> dict[str, float]:
    """Median CPU ms per call of each `step_stages` prefix (alternating windows, one process)."""
    import statistics

    c = dataclasses.replace(cfg, batch_size=batch_size)
    layout = layouts.get_layout(c.layout)
    k = keys(c)
    stats = model.compute_stats(c.model, c.train_protocol, layout, k["stats"], 20_000)
    state = init_state(c, layout, k["init"])
    fns = {name: jax.jit(f) for name, f in step_stages(c, layout, stats).items()}
    for f in fns.values():
        jax.block_until_ready(f(state, k["train"]))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds:
                out = f(state, k["train"])
                n += 1
            jax.block_until_ready(out)
            times[name].append(1e3 * (time.process_time() - c0) / n)
    return {name: statistics.median(v) for name, v in times.items()}
