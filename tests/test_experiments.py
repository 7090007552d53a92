"""Each experiments/ script's --smoke mode runs end to end and writes its table and plots."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# Compiling the smoke programs takes most of their time; the suite's persistent compilation cache
# (tests/conftest.py, inherited through the environment) makes reruns fast.
ENV = dict(os.environ)


def _run(script: str, out: Path, *extra: str) -> str:
    cmd = [sys.executable, str(ROOT / "experiments" / script), "--smoke", "--out", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "results.md").read_text()
    # The command that made the results is at the top, then tables of mean ± std.
    assert md.splitlines()[0].startswith("# ")
    assert f"python experiments/{script} --smoke --out {out}" in md.split("\n\n", 3)[:3][-1]
    assert "±" in md and "|---|" in md
    for png in re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", md):
        assert (out / png).stat().st_size > 5000, png
    return md


def _table(md: str, first_col: str) -> list[list[str]]:
    """Rows of the first markdown table whose header starts with first_col."""
    lines = md.splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith(f"| {first_col}"))
    rows = []
    for l in lines[i + 2 :]:
        if not l.startswith("|"):
            break
        rows.append([c.strip() for c in l.strip("|").split("|")])
    return rows


def test_ablate_losses_smoke(tmp_path):
    md = _run("ablate_losses.py", tmp_path)
    rows = _table(md, "trained on |")
    assert [r[0] for r in rows] == ["`l1_3d`", "`l2_3d`", "`reproj_2d`", "`pose_mse`", "`geodesic`"]
    assert all(re.fullmatch(r"[\d.e+-]+ ± [\d.e+-]+", c) for r in rows for c in r[1:])
    cross = _table(md, "trained on \\ judged by")
    assert len(cross) == 5 and all(len(r) == 6 for r in cross)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["traces"] == 1 and s["streams"] == 3  # 15 models, one compile, one batch stream per seed
    assert 0 < s["ratio"] < 5 and np.isfinite(s["separate_seconds"])
    assert s["max_abs_diff_l1_3d_vs_separate"] < 1e-3  # the separate run is the same training
    assert "extrapolated" in md  # --smoke times 1 of the 15 separate runs and says so
    assert len(list((tmp_path / "runs").glob("*/metrics.jsonl"))) == 15


def test_ablate_rotation_smoke(tmp_path):
    md = _run("ablate_rotation.py", tmp_path)
    assert [r[0] for r in _table(md, "head")] == ["`quat`", "`6d`"]


def test_ablate_geometry_smoke(tmp_path):
    md = _run("ablate_geometry.py", tmp_path, "--seeds", "2")
    rows = _table(md, "variant")
    assert [r[0] for r in rows] == ["`64-64`", "`64-64 centroid`", "`64-64 centroid+ray`", "`48-48-48`"]
    # Smoke nets are a quarter as wide; centroid inputs add 3 inputs x the first width.
    assert [int(r[1].replace(",", "")) for r in rows] == [599, 647, 647, 559]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert all(np.isfinite(v["l1_3d"][0]) for v in s.values())


def test_ablate_noise_smoke(tmp_path):
    md = _run("ablate_noise.py", tmp_path)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert set(s) == {"realistic", "seed"}
    for _protocol, kinds in s.items():
        for kind in kinds.values():
            mat = np.asarray(kind["matrix"])
            assert mat.shape == (2, 2) and np.all(np.isfinite(mat)) and np.all(mat > 0)
    assert len(s["realistic"]) == 2  # seen and unseen cameras/shapes
    assert md.count("train \\ test") == 3


def test_ablate_size_smoke(tmp_path):
    _run("ablate_size.py", tmp_path)
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    size = {(r["widths"], r["quantize"]): r["tfjs_bytes"] for r in rows}
    shard = {(r["widths"], r["quantize"]): r["shard_bytes"] for r in rows}
    # Real artifacts: more weights -> more bytes; fewer bits per weight -> a smaller shard (the
    # float32 7x7 pose layer and model.json's quantisation entries are fixed costs).
    for q in ("float32", "float16", "uint8"):
        assert size[("16-16", q)] > size[("8-8", q)]
    for w in ("8-8", "16-16"):
        assert shard[(w, "float32")] > shard[(w, "float16")] > shard[(w, "uint8")]
        assert size[(w, "float32")] > size[(w, "uint8")]
    # float32 export reads back to the JAX model's accuracy.
    f32 = [r for r in rows if r["quantize"] == "float32"]
    assert all(abs(r["l1_3d"] - r["jax_l1_3d"]) < 1e-3 * max(1.0, r["jax_l1_3d"]) for r in f32)


def test_plot_curves_of_a_workdir(tmp_path):
    run = tmp_path / "w" / "r1"
    run.mkdir(parents=True)
    rows = [{"kind": "start", "step": 0, "run": "r1", "config": {"batch_size": 10}}]
    rows += [{"kind": "train", "step": s, "seconds": 0.1 * s, "samples": 10 * s, "loss": 1 / s} for s in range(1, 20)]
    rows += [
        {"kind": "eval", "step": 10, "test": "t", "l1_3d": 2.0},
        {"kind": "eval", "step": 19, "test": "t", "l1_3d": 1.0},
    ]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "plot_curves.py"), str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "w" / "learning_curves.png").stat().st_size > 5000


def test_bench_train_profile_and_against():
    """bench_train.py --profile prints the five cumulative stages of the step (positive CPU ms);
    --against HEAD times the committed code against the working tree in child processes (both
    rows, positive rates, the baseline's ratios exactly 1)."""
    base = [sys.executable, str(ROOT / "experiments" / "bench_train.py"), "--config", "smoke", "--batch-sizes", "64"]
    run = lambda *a: subprocess.run([*base, *a], cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)  # noqa: E731
    prof = run("--profile", "--seconds", "0.05", "--rounds", "1")
    assert prof.returncode == 0, prof.stderr[-3000:]
    stages = re.findall(r"^  (.+?)\s+([\d.]+)\s+stage\s+[+-][\d.]+$", prof.stdout, re.M)
    assert [s for s, _ in stages] == [
        "sample",
        "+ recipe geometry",
        "+ forward, loss",
        "+ backward",
        "+ Adam (full step)",
    ]
    assert all(float(ms) > 0 for _, ms in stages)
    ab = run("--against", "HEAD", "--seconds", "0.05", "--rounds", "1")
    assert ab.returncode == 0, ab.stderr[-3000:]
    rows = {l.split()[0]: l.split() for l in ab.stdout.splitlines() if l.startswith(("HEAD", "working"))}
    assert rows["HEAD"][-2:] == ["1.000x", "1.000x"] and float(rows["working"][3].replace(",", "")) > 0


def test_module_size_breakdown_adds_up():
    """module_size.py: the data line and the code are the whole module (one newline between), and
    the weights text is inside the data line (raw bytes)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "module_size.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = {
        m.group(1).strip(): int(m.group(2).replace(",", ""))
        for m in re.finditer(r"^  (\D+?)\s+([\d,]+) / ", proc.stdout, re.M)
    }
    assert raw["whole module"] == raw["data line"] + raw["code (the rest)"] + 1
    assert 0 < raw["weights text"] < raw["data line"]
