"""Training speed: valid synthetic samples per second of the jitted train step.

    python experiments/bench_train.py [--config blazeface6-seed] [--batch-sizes 1024 4096 16384] [--seconds 5]
    python experiments/bench_train.py --compare blazeface6-seed blazeface6-seed-plain --oversample 2.0 1.75

`--compare CONFIG ... [--oversample X ...]`: every config (x every seed-protocol oversampling
factor) side by side in one process, timed in alternating windows (the ratios are what to read
on a shared machine).

`--against REV`: the code of git revision REV (extracted to a temporary directory) against the
working tree, each measured in its own process, alternating, `--rounds` times (a before/after of
a code change on a shared machine):

    python experiments/bench_train.py --against 2666b95 --batch-sizes 4096 --seconds 3 --rounds 4

Prints one row per batch size (sampling + loss + Adam update, compilation excluded, timed
separately): wall-clock and CPU time (all threads) per step, and valid samples per second of
each. The time-to-accuracy figure is a real run: `pnpjax train --config blazeface6-seed
--workdir runs/b60 --seconds 60`.
"""

from __future__ import annotations

import argparse
import os
import sys

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib.train_throughput import compare_throughput, measure_throughput, profile_step
from pnpjax import config, train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="blazeface6-seed")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--compare", nargs="+", default=None, help="configs to time side by side (A/B mode)")
    p.add_argument("--oversample", type=float, nargs="+", default=None, help="seed_train.oversample values (A/B)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--profile", action="store_true", help="CPU ms of each stage of the step (prefix timings)")
    p.add_argument("--against", default=None, metavar="REV", help="git revision to time against the working tree")
    a = p.parse_args(argv)
    if a.against:
        return against(a)
    if a.compare:
        return compare(a)
    if a.profile:
        return profile(a)
    rows = measure_throughput(config.get_config(a.config), a.batch_sizes, a.seconds)
    load = os.getloadavg()[0]
    print(f"config {a.config} | devices {train.device_summary()} | load average {load:.1f}")
    print(
        f"{'batch':>7} {'ms/step':>9} {'steps/s':>9} {'valid samples/s':>16} {'CPU ms/step':>12} {'per CPU-s':>11} {'compile s':>10}"
    )
    for r in rows:
        print(
            f"{r['batch']:>7} {r['ms_per_step']:>9.2f} {r['steps_per_s']:>9.1f} {r['valid_samples_per_s']:>16,.0f} "
            f"{r['cpu_ms_per_step']:>12.2f} {r['valid_samples_per_cpu_s']:>11,.0f} {r['compile_s']:>10.2f}"
        )
    return 0


def profile(a) -> int:
    cfg = config.get_config(a.config)
    for bs in a.batch_sizes:
        res = profile_step(cfg, bs, a.seconds, a.rounds)
        print(f"config {a.config} | batch {bs} | load {os.getloadavg()[0]:.1f} | CPU ms per call, median of {a.rounds}")
        prev = 0.0
        for name, ms in res.items():
            print(f"  {name:<22} {ms:>8.2f}   stage {ms - prev:>+7.2f}")
            prev = ms
    return 0


_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from experiments.lib.train_throughput import measure_throughput
from pnpjax import config
rows = measure_throughput(config.get_config(sys.argv[2]), [int(sys.argv[3])], float(sys.argv[4]))
print(json.dumps(rows[0]))
"""


def against(a) -> int:
    """REV's code against the working tree's, in alternating child processes (median of rounds)."""
    import json
    import statistics
    import subprocess
    import tempfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="pnpjax-bench-") as tmp:
        archive = subprocess.run(["git", "-C", str(repo), "archive", a.against], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        trees = {a.against: tmp, "working tree": str(repo)}
        for bs in a.batch_sizes:
            res: dict[str, list[dict]] = {name: [] for name in trees}
            for _ in range(a.rounds):
                for name, root in trees.items():
                    out = subprocess.run(
                        [sys.executable, "-c", _CHILD, root, a.config, str(bs), str(a.seconds)],
                        check=True,
                        capture_output=True,
                        text=True,
                        cwd=root,
                        env={**os.environ, "PYTHONPATH": root},
                    )
                    res[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            load = os.getloadavg()[0]
            print(
                f"config {a.config} | batch {bs} | {a.rounds} alternating rounds of {a.seconds:g} s | load {load:.1f}"
            )
            print(
                f"{'code':<16} {'valid samples/s (median)':>25} {'per CPU-s (median)':>19} {'wall ratio':>11} {'CPU ratio':>10}"
            )
            base = res[a.against]
            for name, rows in res.items():
                wall = statistics.median(r["valid_samples_per_s"] for r in rows)
                cpu = statistics.median(r["valid_samples_per_cpu_s"] for r in rows)
                ratios = [
                    statistics.median(r[f] / b[f] for r, b in zip(rows, base))
                    for f in ("valid_samples_per_s", "valid_samples_per_cpu_s")
                ]
                print(f"{name:<16} {wall:>25,.0f} {cpu:>19,.0f} {ratios[0]:>10.3f}x {ratios[1]:>9.3f}x")
    return 0


def compare(a) -> int:
    import dataclasses
    import statistics

    cfgs = {}
    for name in a.compare:
        base = config.get_config(name)
        for o in a.oversample or [base.seed_train.oversample]:
            c = dataclasses.replace(base, seed_train=dataclasses.replace(base.seed_train, oversample=o))
            cfgs[f"{name} oversample {o:g}"] = c
    for bs in a.batch_sizes:
        res = compare_throughput(cfgs, bs, a.seconds, a.rounds)
        load = os.getloadavg()[0]
        print(f"batch {bs} | devices {train.device_summary()} | {a.rounds} rounds of {a.seconds:g} s | load {load:.1f}")
        first = next(iter(res))
        print(f"{'variant':<44} {'valid samples/s (median)':>25} {'per CPU-s':>11} {'valid':>6} {'vs first':>9}")
        for name, r in res.items():
            wall, cpu = statistics.median(r["wall"]), statistics.median(r["cpu"])
            ratio = statistics.median([w / f for w, f in zip(r["wall"], res[first]["wall"])])
            print(f"{name:<44} {wall:>25,.0f} {cpu:>11,.0f} {r['valid_fraction']:>6.3f} {ratio:>8.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
