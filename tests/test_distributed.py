"""Multi-process training (`jax.distributed`, CPU collectives through gloo): two local processes
with the same global batch train the same model as one process, and the sub-batch sampling
that makes it so."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from pnpjax import checkpoint, config, layouts, protocols, train
from pnpjax.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SMOKE = config.get_config("smoke")
ARGS = [
    "--config",
    "smoke",
    "--steps",
    "24",
    "--data-shards",
    "2",
    "--log-every",
    "4",
    "--eval-every",
    "12",
    "--checkpoint-every",
    "12",
    "--no-progress",
]
TIMEOUT_S = 240


def test_sub_batches_are_independent_draws_of_their_keys():
    """data_shards = n: the batch is the concatenation of n batches drawn from fold_in(key, j)."""
    cfg = dataclasses.replace(SMOKE, batch_size=64, data_shards=2)
    key = jax.random.key(3)
    got = train.sample_batch(cfg, layouts.BLAZEFACE6, key)
    parts = [protocols.sample(cfg.train_protocol, jax.random.fold_in(key, j), layouts.BLAZEFACE6, 32) for j in range(2)]
    for a, *bs in zip(got, *parts):
        np.testing.assert_array_equal(np.asarray(a), np.concatenate([np.asarray(b) for b in bs]))
    assert got.xy.shape == (64, 6, 2) and bool(np.all(got.valid))


def test_data_shards_must_divide_the_batch_and_fit_the_devices():
    with pytest.raises(ConfigError, match="data_shards"):
        dataclasses.replace(SMOKE, batch_size=64, data_shards=3).validate()
    with pytest.raises(ConfigError, match="data_shards"):
        dataclasses.replace(SMOKE, data_shards=0).validate()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_cmd(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pnpjax", "train", *ARGS, "--workdir", str(workdir), *extra]


def _losses(workdir: Path) -> list[float]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


def test_two_processes_train_the_same_model_as_one(tmp_path):
    """Two `pnpjax train` processes on 127.0.0.1 (one CPU device each, gloo) = one process, same
    global batch and data_shards: the same losses at every logged step and the same parameters
    (to float32 reduction order), and only process 0 writes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    two, one = tmp_path / "two", tmp_path / "one"
    port = _free_port()
    procs = [
        subprocess.Popen(
            _train_cmd(two, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    single = subprocess.Popen(_train_cmd(one), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = []
    try:
        for p in (*procs, single):
            outs.append(p.communicate(timeout=TIMEOUT_S))
    finally:
        for p in (*procs, single):
            if p.poll() is None:
                p.kill()
    for p, (_out, err) in zip((*procs, single), outs):
        assert p.returncode == 0, err[-2000:]
    assert "2 × cpu in 2 processes" in outs[0][0] and "model written" in outs[0][0]
    assert "model written" not in outs[1][0] and "L1-3D" not in outs[1][0]  # process 1 prints no results
    assert json.loads((two / "metrics.jsonl").read_text().splitlines()[0])["devices"] == "2 × cpu in 2 processes"
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=1e-5)
    assert len(_losses(one)) == 6
    a, b = checkpoint.load(two / "model"), checkpoint.load(one / "model")
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    meta = json.loads((two / "model" / checkpoint.META_FILE).read_text())
    assert meta["train"]["processes"] == 2 and meta["train"]["steps"] == 24


def test_multiprocess_argument_errors_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run(
        _train_cmd(tmp_path / "w", "--coordinator", "127.0.0.1:1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--num-processes" in r.stderr
    assert not (tmp_path / "w").exists()
