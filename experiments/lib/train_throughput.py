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
        n, valid, t0, c0 = 0, 0.0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            state, m = step(state, k["train"])
            valid += m["valid"]
            n += 1
        jax.block_until_ready(state)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
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
