"""Throughput and memory of `pnpjax predict` through the CLI, file I/O included (issue #12).

    python experiments/bench_predict.py                      # 2,000,000 blazeface6 poses (webcam pixels)
    python experiments/bench_predict.py --n 200000 --small 20000 --out /tmp/bp.md

Runs `python -m pnpjax predict` as a user would, in a fresh process each time, on a large
input (--n poses) and a small one (--small), and reports the marginal time per pose
((t_large - t_small) / (n - small), which removes start-up and compilation) and the peak
resident memory of each run (`resource.getrusage` of the child). The memory target compares
the large run's peak with 4x its input plus its output file, measured above the peak of a
one-pose run (the Python + JAX runtime, which no input size changes). The small size should be
at least one chunk (inference.CHUNK poses), so both sizes compile the same program.
Writes <out> (Markdown) and <out>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
import jax
import numpy as np

from experiments.lib.report import md_table
from pnpjax import camera, checkpoint, cli, protocols

REPO = Path(__file__).resolve().parents[1]
CAMERA = "hfov=60,640x480"


def landmarks(ckpt: str, n: int, key: int = 0) -> np.ndarray:
    """(n, K, 2) float32 pixels of CAMERA: the checkpoint's protocol drawn for that camera, tiled."""
    solver = checkpoint.load(ckpt)
    cam = camera.parse_camera(CAMERA)
    m = min(n, 100_000)
    b = protocols.sample_jit(solver.test_protocol, jax.random.key(key), solver.layout, m)
    xy = np.asarray(b.xy)[np.asarray(b.valid)]
    uv = np.asarray(camera.normalized_to_pixels(xy, cam.intrinsics), np.float32)
    return np.resize(uv, (n,) + uv.shape[1:])


def run_predict(ckpt: str, inp: Path, out: Path, extra: list[str]) -> dict:
    """Wall time and peak RSS (bytes) of one `python -m pnpjax predict` child process."""
    cmd = [
        sys.executable,
        "-m",
        "pnpjax",
        "predict",
        "--checkpoint",
        ckpt,
        "--input",
        str(inp),
        "--output",
        str(out),
        "--camera",
        CAMERA,
        *extra,
    ]
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
        )
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB on Linux)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"predict failed: {err.read().decode(errors='replace').strip()}")
    return {"seconds": wall, "peak_rss_bytes": usage.ru_maxrss * 1024}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "blazeface6"))
    p.add_argument("--n", type=int, default=2_000_000)
    p.add_argument("--small", type=int, default=200_000)
    p.add_argument("--refine", type=int, nargs="+", default=[0], help="LM iteration counts to measure")
    p.add_argument("--repeats", type=int, default=2, help="runs per size (the fastest counts)")
    p.add_argument("--out", default=str(REPO / "experiments" / "results" / "bench_predict.md"))
    a = p.parse_args(argv)
    rows, data = (
        [],
        {
            "command": shlex.join(["python", "experiments/bench_predict.py", *argv]),
            "camera": CAMERA,
            "checkpoint": Path(a.checkpoint).name,
            "loadavg_start": list(os.getloadavg()),
            # The runs' CLI keeps its compiled programs (pnpjax.cli.enable_compile_cache) unless
            # PNPJAX_CACHE_DIR= or JAX_COMPILATION_CACHE_DIR says otherwise: then every run compiles.
            "cli_compile_cache": cli.compile_cache_dir() is not None,
            "runs": [],
        },
    )
    with tempfile.TemporaryDirectory(prefix="pnpjax-bench-predict-") as tmp:
        x = landmarks(a.checkpoint, a.n)
        files = {}
        for n in (1, a.small, a.n):
            files[n] = Path(tmp) / f"in_{n}.npy"
            np.save(files[n], x[:n])
        for iters in a.refine:
            extra = ["--refine", str(iters)] if iters else []
            res = {}
            for n in (1, a.small, a.n):
                runs = [
                    run_predict(a.checkpoint, files[n], Path(tmp) / f"out_{n}.npy", extra) for _ in range(a.repeats)
                ]
                res[n] = {
                    "seconds": min(r["seconds"] for r in runs),
                    "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
                }
                print(
                    f"refine {iters}: {n:>9,} poses  {res[n]['seconds']:7.2f} s  peak RSS {res[n]['peak_rss_bytes'] / 2**20:7.0f} MiB",
                    flush=True,
                )
            marginal_us = 1e6 * (res[a.n]["seconds"] - res[a.small]["seconds"]) / (a.n - a.small)
            in_bytes, out_bytes = files[a.n].stat().st_size, a.n * 7 * 4
            extra_mem = res[a.n]["peak_rss_bytes"] - res[1]["peak_rss_bytes"]
            budget = 4 * in_bytes + out_bytes
            data["runs"].append(
                {
                    "refine": iters,
                    "n": a.n,
                    "small": a.small,
                    "seconds": {str(k): v["seconds"] for k, v in res.items()},
                    "peak_rss_bytes": {str(k): v["peak_rss_bytes"] for k, v in res.items()},
                    "marginal_us_per_pose": marginal_us,
                    "input_bytes": in_bytes,
                    "output_bytes": out_bytes,
                    "peak_above_one_pose_bytes": extra_mem,
                    "memory_budget_bytes": budget,
                }
            )
            rows.append(
                [
                    iters,
                    f"{a.n:,}",
                    f"{res[a.n]['seconds']:.2f}",
                    f"{res[a.small]['seconds']:.2f}",
                    f"{marginal_us:.3f}",
                    f"{res[1]['peak_rss_bytes'] / 2**20:.0f}",
                    f"{res[a.n]['peak_rss_bytes'] / 2**20:.0f}",
                    f"{extra_mem / 2**20:.0f} / {budget / 2**20:.0f}",
                ]
            )
    data["loadavg_end"] = list(os.getloadavg())
    net = next((r for r in data["runs"] if r["refine"] == 0), None)
    targets = []
    if net is not None:
        targets = [
            [
                "marginal µs per pose ≤ 0.5 (network alone, CLI incl. file I/O)",
                f"{net['marginal_us_per_pose']:.3f}",
                "yes" if net["marginal_us_per_pose"] <= 0.5 else "**no**",
            ],
            [
                "peak memory above a one-pose run ≤ 4 × input + output",
                f"{net['peak_above_one_pose_bytes'] / 2**20:.0f} MiB vs {net['memory_budget_bytes'] / 2**20:.0f} MiB",
                "yes" if net["peak_above_one_pose_bytes"] <= net["memory_budget_bytes"] else "**no**",
            ],
        ]
    data["targets"] = [{"text": t, "measured": m, "met": ok == "yes"} for t, m, ok in targets]
    md = (
        "\n\n".join(
            [
                "# `pnpjax predict` throughput and memory through the CLI",
                f"Generated by `{data['command']}` (do not edit; `experiments/bench_predict.py`). Checkpoint "
                f"`{data['checkpoint']}`, camera `{CAMERA}`, input .npy float32; fastest of {a.repeats} runs per size, each a fresh "
                f"process (start-up and compilation included in the totals, removed by the marginal figure; the CLI's "
                f"compiled-program cache {'on: after the first run, compilation is a read' if data['cli_compile_cache'] else 'off'}"
                "). Load average "
                f"{data['loadavg_start'][0]:.1f} → {data['loadavg_end'][0]:.1f} on {os.cpu_count()} cores.",
                md_table(
                    [
                        "refine",
                        "poses",
                        "s (large)",
                        f"s ({a.small:,})",
                        "marginal µs/pose",
                        "peak MiB (1 pose)",
                        "peak MiB (large)",
                        "MiB above 1-pose run / budget",
                    ],
                    rows,
                ),
                "## Targets (issue #12)",
                md_table(["target", "measured", "met"], targets) if targets else "(network alone not measured)",
            ]
        )
        + "\n"
    )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
