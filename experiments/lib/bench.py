"""Solver benchmarks (issue #4): pnpjax against OpenCV and the original model, same inputs.

`solver_bench`: on the seed protocol (3D jitter `noise_cm`) and the realistic protocol (2D landmark
noise `noise_2d`, a fraction of the face's image size), at several noise levels, one held-out set
per (protocol, noise level) goes to every solver:

  * pnpjax: the float32 checkpoint; its uint8 TF.js web export, read back exactly as TF.js decodes
    it; the checkpoint + `refine.refine_pose` (LM on the reprojection error) for a few iteration
    counts; and, once, the refinement on the likelihood under the setting's own noise model
    (`refine.refine_ml`: 3D point noise and 2D landmark noise together; see `refine_fn`);
  * the original published TF.js model (seed protocol only: it was trained for that camera);
  * OpenCV: SOLVEPNP_ITERATIVE / SQPNP / EPNP, and solvePnPRefineLM started at the true pose
    ("oracle": the maximum-likelihood pose under 2D noise, found without initialisation error).

Metrics per solver: `losses.per_example_metrics` (computed in float64) reduced by
`losses.summarize` (L1-3D, rotation error mean/median/p99, translation error mean/median, median
per-pose reprojection RMSE, failures = rotation error > 30 deg; a pose OpenCV reports as not
solved counts as a failure and is left out of the other figures), plus time per pose and poses/s.

Timing, every solver in the same process: a jitted solver is compiled and run once, then the whole
test set is one batch (`block_until_ready`); OpenCV runs one call per pose in a Python loop (how
it is used from Python) over the whole set. Each is timed `repeats` times and the fastest run is
reported: on a machine shared with other jobs the minimum is the least disturbed estimate, and the
same rule applies to every solver.

`throughput_bench`: poses/s of the jitted network alone and with refinement at batch 1, 1k, 1M,
against a tight loop of `cv2.solvePnP(SOLVEPNP_SQPNP)` per pose (inputs prepared beforehand, so
the ratio is the least favourable to pnpjax), measured in one run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from experiments.lib.report import md_table
from pnpjax import checkpoint, geometry, losses, protocols, refine, train
from pnpjax.model import Prediction

FAILURE_DEG = 30.0
NET = "pnpjax"
UINT8 = "pnpjax uint8 web export"
ORIGINAL = "original TF.js model"
ITERATIVE, SQPNP, EPNP = "cv2 ITERATIVE", "cv2 SQPNP", "cv2 EPNP"
ORACLE = "cv2 LM from truth (oracle)"
_CV2_METHODS = {ITERATIVE: "iterative", SQPNP: "sqpnp", EPNP: "epnp", ORACLE: "lm_from_truth"}


ML, ML_CKPT = "ml", "ml-checkpoint"
_VARIANTS = {"": "", ML: ", ML (setting's noise)", ML_CKPT: ", ML (checkpoint's noise)"}


def refine_name(iters: int, variant: str = "") -> str:
    """Row name of a refinement: LM on the image error, or on the likelihood (`refine.refine_ml`)
    under the benchmark setting's own noise model (ML) or under the one of the protocol the
    checkpoint was made for, whatever the setting (ML_CKPT: what a user who knows only the model has)."""
    return f"pnpjax + refine {iters}" + _VARIANTS[variant]


def checkpoint_noise(solver) -> refine.NoiseModel | None:
    """The noise model of the protocol a checkpoint was trained for (None without a config)."""
    cfg = getattr(solver, "config", None)
    if cfg is None:
        return None
    return refine.noise_model_of(cfg.test_protocol)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SolverBenchConfig:
    seed_checkpoint: str = "checkpoints/blazeface6-seed"  # evaluated on the seed protocol
    realistic_checkpoint: str = "checkpoints/blazeface6"  # evaluated on the realistic protocol
    # Further networks (alone) on the seed protocol, e.g. a bigger model than the original's size.
    seed_extra_checkpoints: tuple[str, ...] = ("checkpoints/blazeface6-seed-large",)
    original: str | None = None  # published model dir; None: <shared>/seed-models/<layout>, if present
    n: int = 20_000  # draws per (protocol, noise level)
    seed_noise_cm: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    realistic_noise_2d: tuple[float, ...] = (0.0, 0.01, 0.03, 0.06)
    refine_iters: tuple[int, ...] = (3, 10)
    # Also the realistic protocol without its 3D shape variation (shape_jitter_cm 0, head_scale 1)
    # at the non-zero noise_2d levels: 2D noise only, for which the oracle is the ML pose.
    realistic_2d_only: bool = True
    key: int = 0
    repeats: int = 5  # timed runs of each jitted solver (fastest reported)
    cv2_repeats: int = 2  # timed passes of each OpenCV loop over the whole set (fastest reported)


SMOKE_SOLVERS = SolverBenchConfig(
    n=128,
    seed_noise_cm=(1.0,),
    realistic_noise_2d=(0.03,),
    refine_iters=(3,),
    realistic_2d_only=False,
    repeats=1,
    cv2_repeats=1,
    seed_extra_checkpoints=(),
)


def extra_name(ckpt: str) -> str:
    """Row name of a further network on the seed protocol."""
    return f"pnpjax {Path(ckpt).name}"


PROTOCOL_TITLES = {
    "seed": "seed protocol",
    "realistic": "realistic protocol",
    "realistic-2d": "realistic protocol, 2D noise only (no 3D shape variation)",
}


@dataclasses.dataclass(frozen=True)
class ThroughputConfig:
    checkpoint: str = "checkpoints/blazeface6-seed"
    batch_sizes: tuple[int, ...] = (1, 1000, 1_000_000)
    refine_iters: tuple[int, ...] = (3, 10)
    cv2_poses: int = 3000  # poses in the timed cv2 SQPnP loop
    repeats: int = 5  # timed runs (fastest reported, for pnpjax and cv2 alike)
    min_seconds: float = 0.2  # small batches: calls per timed run so that one run lasts at least this
    net_chunk: int = 1000  # batches larger than this also run the network through lax.map in chunks
    key: int = 0


SMOKE_THROUGHPUT = ThroughputConfig(
    batch_sizes=(1, 1000), refine_iters=(3,), cv2_poses=200, repeats=2, min_seconds=0.02, net_chunk=256
)


def machine_info() -> dict:
    import cv2

    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "jax_devices": train.device_summary(),
        "opencv": cv2.__version__,
        "loadavg_start": list(os.getloadavg()),
    }


def _load_text(info: dict) -> str:
    fmt = lambda la: " / ".join(f"{x:.2f}" for x in la)  # noqa: E731
    return (
        f"{info['cpus']} CPUs ({info['processor']}), JAX {info['jax']} on {info['jax_devices']}, "
        f"OpenCV {info['opencv']}; load average (1/5/15 min) {fmt(info['loadavg_start'])} at the start, "
        f"{fmt(info['loadavg_end'])} at the end (other jobs share this machine: timings are noisy)"
    )


# --------------------------------------------------------------------------------------------
# Solvers: name -> run(batch) -> (q, t, ok, seconds per pose)
# --------------------------------------------------------------------------------------------


class Solved(NamedTuple):
    q: np.ndarray  # (B, 4) x y z w
    t: np.ndarray  # (B, 3)
    ok: np.ndarray  # (B,) False where the solver returned no pose (OpenCV) or for invalid rows
    seconds_per_pose: float


SolverFn = Callable[[protocols.Batch], Solved]


def time_jitted(f, *args, repeats: int, min_seconds: float = 0.0) -> tuple[float, float, object]:
    """Seconds per call of a jitted f (compiled and warmed up first; fastest of `repeats` runs,
    each of enough calls to last `min_seconds`), the cores it kept busy (process CPU time / wall
    time over the timed runs), and its output."""
    out = jax.block_until_ready(f(*args))
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    calls = max(1, math.ceil(min_seconds / max(time.perf_counter() - t0, 1e-9)))
    times = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = f(*args)
            jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / calls)
    cores = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    return min(times), cores, out


def jitted_solver(
    fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]], repeats: int, *, traceable: bool = True
) -> SolverFn:
    """fn(xy (B, K, 2)) -> (q, t), timed on the whole batch at once; compiled with jax.jit unless
    `traceable` is False (e.g. an export's graph run in numpy)."""
    f = jax.jit(fn) if traceable else fn

    def run(batch: protocols.Batch) -> Solved:
        sec, _, (q, t) = time_jitted(f, batch.xy, repeats=repeats)
        n = batch.xy.shape[0]
        return Solved(np.asarray(q, np.float64), np.asarray(t, np.float64), np.ones(n, bool), sec / n)

    return run


def network_fn(solver) -> Callable:
    def fn(xy):
        p = solver(xy)
        return p.q, p.t

    return fn


def refine_fn(solver, pts_Kx3: np.ndarray, iters: int, noise: refine.NoiseModel | None = None) -> Callable:
    """The solver followed by `iters` LM steps on the image error or, given a noise model, on the
    likelihood under it (`refine.refine_ml`: 3D noise on the points and 2D noise on the landmarks
    at once, which neither the image error nor SQPnP's object-space error models alone)."""
    pts = jnp.asarray(pts_Kx3, jnp.float32)

    def fn(xy):
        p = solver(xy)
        if noise is not None:
            return refine.refine_ml(xy, pts, p.q, p.t, noise, iters=iters)
        return refine.refine_pose(xy, pts, p.q, p.t, iters=iters)

    return fn


def _solve_cv2_one(xy_Kx2, pts_Kx3, K, method, rvec0, tvec0):
    from experiments.lib import baselines

    try:
        return baselines.solve_one(xy_Kx2, pts_Kx3, K, method, rvec0, tvec0)
    except ValueError:
        # cv2.solvePnP can return (False, None, None) (SQPnP, seed protocol at 2 cm jitter), which
        # baselines.solve_one does not expect; it is a failed call like any other.
        return np.full(3, np.nan), np.full(3, np.nan), False


def cv2_solver(method: str, pts_Kx3: np.ndarray, focal: float = 1000.0, repeats: int = 1) -> SolverFn:
    """One OpenCV call per valid pose, the whole loop timed (fastest of `repeats` passes); the same
    calls and conversions as `baselines.solve_cv2` (which raises on one OpenCV return value; see
    _solve_cv2_one)."""
    from scipy.spatial.transform import Rotation

    pts = np.ascontiguousarray(pts_Kx3, np.float64)
    K = np.diag([focal, focal, 1.0])

    def run(batch: protocols.Batch) -> Solved:
        valid = np.asarray(batch.valid, bool)
        idx = np.flatnonzero(valid)
        xy = np.asarray(batch.xy, np.float64)[idx] * focal
        r0 = Rotation.from_quat(np.asarray(batch.q, np.float64)[idx]).as_rotvec()
        t0 = np.asarray(batch.t, np.float64)[idx]
        times = []
        for _ in range(repeats):
            rvecs, tvecs, oks = np.empty((len(idx), 3)), np.empty((len(idx), 3)), np.empty(len(idx), bool)
            start = time.perf_counter()
            for i in range(len(idx)):
                rvecs[i], tvecs[i], oks[i] = _solve_cv2_one(np.ascontiguousarray(xy[i]), pts, K, method, r0[i], t0[i])
            q = np.full((len(idx), 4), np.nan)
            if oks.any():
                q[oks] = Rotation.from_rotvec(rvecs[oks]).as_quat(canonical=True)
            times.append((time.perf_counter() - start) / max(len(idx), 1))
        sec = min(times)
        n = valid.shape[0]
        q_all, t_all, ok_all = np.full((n, 4), np.nan), np.full((n, 3), np.nan), np.zeros(n, bool)
        q_all[idx], t_all[idx], ok_all[idx] = q, tvecs, oks
        return Solved(q_all, t_all, ok_all, sec)

    return run


def uint8_export_solver(solver):
    """The solver's uint8 TF.js export (seed export camera), read back as TF.js decodes it."""
    from pnpjax import export

    with tempfile.TemporaryDirectory(prefix="pnpjax-bench-") as tmp:
        out = Path(tmp) / "tfjs"
        export.export_solver(solver, "tfjs", out, quantize="uint8", camera="seed")
        return export.read_tfjs_solver(out, None)  # a layers or a graph model, by the recipe


def _export_row(exported, repeats: int) -> SolverFn:
    """A read-back export as a bench row: a layers model is JAX (jitted), a graph model numpy."""
    from pnpjax import export

    return jitted_solver(network_fn(exported), repeats, traceable=not isinstance(exported, export.GraphSolver))


def original_model_dir(layout_name: str, given: str | None) -> Path | None:
    """The published model of a layout: `given`, else <shared>/seed-models/<layout> if present."""
    if given:
        return Path(given)
    from experiments.lib import paths

    return paths.original_model_dir(layout_name)


def make_solvers(solver, cfg: SolverBenchConfig) -> dict[str, SolverFn | None]:
    pts = np.asarray(solver.layout.array)
    out: dict[str, SolverFn | None] = {
        NET: jitted_solver(network_fn(solver), cfg.repeats),
        UINT8: _export_row(uint8_export_solver(solver), cfg.repeats),
    }
    for k in cfg.refine_iters:
        out[refine_name(k)] = jitted_solver(refine_fn(solver, pts, k), cfg.repeats)
    k = max(cfg.refine_iters)
    out[refine_name(k, ML)] = None  # made per setting: it takes the setting's noise model
    if checkpoint_noise(solver) is not None:
        out[refine_name(k, ML_CKPT)] = jitted_solver(refine_fn(solver, pts, k, checkpoint_noise(solver)), cfg.repeats)
    d = original_model_dir(solver.layout.name, cfg.original)
    if d is not None and (d / "model.json").is_file():
        out[ORIGINAL] = jitted_solver(network_fn(checkpoint.load(d)), cfg.repeats)
    for name, method in _CV2_METHODS.items():
        out[name] = cv2_solver(method, pts, repeats=cfg.cv2_repeats)
    return out


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def per_example(q: np.ndarray, t: np.ndarray, ok: np.ndarray, batch: protocols.Batch, pts_Kx3) -> dict[str, np.ndarray]:
    """`losses.per_example_metrics` in float64; NaN where the solver returned no pose."""
    ident_q, ident_t = np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0])
    q = np.where(ok[:, None], q, ident_q)
    t = np.where(ok[:, None], t, ident_t)
    with jax.enable_x64(True):
        b = protocols.Batch(*(jnp.asarray(np.asarray(a), jnp.bool_ if a.dtype == bool else jnp.float64) for a in batch))
        qj = geometry.quat_normalize(jnp.asarray(q))
        m = losses.per_example_metrics(
            Prediction(geometry.quat_to_matrix(qj), qj, jnp.asarray(t), None), b, jnp.asarray(pts_Kx3, jnp.float64)
        )
        m = {k: np.asarray(v) for k, v in m.items()}
    return {k: np.where(ok, v, np.nan) for k, v in m.items()}


def summarize(per: dict[str, np.ndarray], valid: np.ndarray, ok: np.ndarray) -> dict[str, float]:
    """`losses.summarize` over the solved valid poses; failures also count the unsolved ones."""
    valid = np.asarray(valid, bool)
    solved = valid & ok
    s = losses.summarize(per, solved, FAILURE_DEG) if solved.any() else {}
    n, unsolved = int(valid.sum()), int((valid & ~ok).sum())
    s["failures"] = (s.get("failures", 0.0) * solved.sum() + unsolved) / max(n, 1)
    s.update(n=n, unsolved=unsolved)
    return s


# --------------------------------------------------------------------------------------------
# The solver benchmark
# --------------------------------------------------------------------------------------------


class Setting(NamedTuple):
    protocol: str  # 'seed' | 'realistic' | 'realistic-2d'
    noise_name: str  # the protocol field that is varied
    noise: float
    levels: tuple[float, ...]  # every level of this protocol in the run
    spec: protocols.Protocol
    checkpoint: str


def settings(cfg: SolverBenchConfig, real_solver) -> list[Setting]:
    """Every (protocol, noise level) of the benchmark, in order."""
    out = [
        Setting(
            "seed",
            "noise_cm",
            x,
            cfg.seed_noise_cm,
            dataclasses.replace(protocols.SEED_TEST, noise_cm=float(x)),
            cfg.seed_checkpoint,
        )
        for x in cfg.seed_noise_cm
    ]
    base = real_solver.config.realistic if hasattr(real_solver, "config") else protocols.RealisticProtocol()
    out += [
        Setting(
            "realistic",
            "noise_2d",
            x,
            cfg.realistic_noise_2d,
            dataclasses.replace(base, noise_2d=float(x)),
            cfg.realistic_checkpoint,
        )
        for x in cfg.realistic_noise_2d
    ]
    if cfg.realistic_2d_only:
        levels = tuple(x for x in cfg.realistic_noise_2d if x > 0)
        flat = dataclasses.replace(base, shape_jitter_cm=0.0, head_scale=(1.0, 1.0))
        out += [
            Setting(
                "realistic-2d",
                "noise_2d",
                x,
                levels,
                dataclasses.replace(flat, noise_2d=float(x)),
                cfg.realistic_checkpoint,
            )
            for x in levels
        ]
    return out


def default_noise(protocol: str, levels) -> float:
    """The level shown in the CDF plot: the protocol's own default if benchmarked, else the middle."""
    d = protocols.SEED_TEST.noise_cm if protocol == "seed" else protocols.RealisticProtocol().noise_2d
    return d if d in levels else levels[len(levels) // 2]


def paired_median_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """median(a) - median(b) over the poses both solvers solved, with a 95 % interval from a
    paired bootstrap (the same resampled poses for both)."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    rng = np.random.default_rng(seed)
    d = np.concatenate(
        [
            np.median(a[i], axis=1) - np.median(b[i], axis=1)
            for i in (rng.integers(0, len(a), (100, len(a))) for _ in range(n_boot // 100))
        ]
    )
    lo, hi = np.percentile(d, [2.5, 97.5])
    return {"diff": float(np.median(a) - np.median(b)), "lo": float(lo), "hi": float(hi)}


def solver_bench(cfg: SolverBenchConfig, print_fn=print) -> dict:
    """Run every solver on every setting. Returns a JSON-able dict (+ '_rot' per-example errors
    for the CDF plot, at each protocol's default noise level)."""
    info = machine_info()
    solvers = {c: checkpoint.load(c) for c in dict.fromkeys((cfg.seed_checkpoint, cfg.realistic_checkpoint))}
    made: dict[str, dict[str, SolverFn | None]] = {}  # one compile per checkpoint and batch shape
    extra: dict[str, SolverFn] = {}
    shown = {
        "seed_checkpoint": _show_path(cfg.seed_checkpoint),
        "realistic_checkpoint": _show_path(cfg.realistic_checkpoint),
        "seed_extra_checkpoints": [_show_path(c) for c in cfg.seed_extra_checkpoints],
    }
    results: dict = {"config": {**dataclasses.asdict(cfg), **shown}, "machine": info, "settings": [], "_rot": {}}
    for st in settings(cfg, solvers[cfg.realistic_checkpoint]):
        solver = solvers[st.checkpoint]
        if st.checkpoint not in made:
            made[st.checkpoint] = make_solvers(solver, cfg)
        pts = np.asarray(solver.layout.array)
        batch = train.eval_batch(st.spec, solver.layout, jax.random.key(cfg.key), cfg.n)
        valid = np.asarray(batch.valid, bool)
        rows: dict[str, dict] = {}
        rot: dict[str, np.ndarray] = {}
        runs = dict(made[st.checkpoint])
        if st.protocol == "seed":
            for c in cfg.seed_extra_checkpoints:
                if c not in extra:
                    extra[c] = jitted_solver(network_fn(checkpoint.load(c)), cfg.repeats)
                runs[extra_name(c)] = extra[c]
        for name, run in runs.items():
            if name == ORIGINAL and st.protocol != "seed":
                continue  # trained for the seed camera only
            if run is None:
                run = jitted_solver(
                    refine_fn(solver, pts, max(cfg.refine_iters), refine.noise_model_of(st.spec)), cfg.repeats
                )
            q, t, ok, sec = run(batch)
            per = per_example(q, t, ok, batch, pts)
            rows[name] = {**summarize(per, valid, ok), "us_per_pose": sec * 1e6, "poses_per_s": 1.0 / sec}
            rot[name] = per["rot_deg"][valid]
            if st.noise == default_noise(st.protocol, st.levels):
                results["_rot"].setdefault(st.protocol, {})[name] = np.sort(per["rot_deg"][valid & ok])
            print_fn(
                f"{st.protocol} {st.noise_name}={st.noise:g} {name:<34} L1-3D {rows[name]['l1_3d']:8.4f}  "
                f"rot med {rows[name]['rot_median_deg']:7.3f}  fail {rows[name]['failures']:.4f}  "
                f"{rows[name]['us_per_pose']:9.3f} us/pose"
            )
        # The truth's own reprojection RMSE: what a perfect pose scores against noisy landmarks.
        truth = summarize(per_example(np.asarray(batch.q), np.asarray(batch.t), valid, batch, pts), valid, valid)
        refined = [n for n in rows if n.startswith("pnpjax + refine")]
        results["settings"].append(
            {
                "protocol": st.protocol,
                "noise_name": st.noise_name,
                "noise": st.noise,
                "checkpoint": _show_path(st.checkpoint),
                "layout": solver.layout.name,
                "n": int(valid.sum()),
                "truth_reproj_rmse_median": truth["reproj_rmse_median"],
                "rows": rows,
                "rot_median_vs_sqpnp": {n: paired_median_diff(rot[n], rot[SQPNP]) for n in refined},
            }
        )
    info["loadavg_end"] = list(os.getloadavg())
    return results


# --------------------------------------------------------------------------------------------
# Targets of issue #4 (checked on the measured numbers, never tuned)
# --------------------------------------------------------------------------------------------


class Target(NamedTuple):
    text: str
    measured: str
    met: bool


def solver_targets(results: dict) -> list[Target]:
    out: list[Target] = []
    seed = [s for s in results["settings"] if s["protocol"] == "seed"]
    refine_rows = [refine_name(k) for k in results["config"]["refine_iters"]]
    main = [s for s in seed if s["noise"] == protocols.SEED_TEST.noise_cm]
    for s in main:
        r = s["rows"]
        oracle = r[ORACLE]["l1_3d"]
        for name in refine_rows:
            rel = r[name]["l1_3d"] / oracle - 1
            out.append(
                Target(
                    f"seed ({s['layout']}, noise_cm {s['noise']:g}): {name} L1-3D within 1 % of the oracle's",
                    f"{r[name]['l1_3d']:.4f} vs {oracle:.4f} ({rel:+.2%})",
                    rel <= 0.01,
                )
            )
        for name in [NET] + [n for n in r if n.startswith("pnpjax ") and n not in (NET, UINT8) and "refine" not in n]:
            net = r[name]["l1_3d"]
            out.append(
                Target(
                    f"seed ({s['layout']}, noise_cm {s['noise']:g}), stretch: network alone ({name}) L1-3D ≤ 2.5",
                    f"{net:.4f}",
                    net <= 2.5,
                )
            )
    for name in refine_rows:
        pairs = [(s["noise"], s["rows"][name]["failures"], s["rows"][ITERATIVE]["failures"]) for s in seed]
        out.append(
            Target(
                f"seed: {name} failures (>30°) fewer than cv2 ITERATIVE's (or both none), every noise level",
                "; ".join(f"{x:g} cm: {a:.2%} vs {b:.2%}" for x, a, b in pairs),
                all(a < b or a == b == 0 for _, a, b in pairs),
            )
        )
    k = max(results["config"]["refine_iters"])
    for proto in ("realistic", "realistic-2d"):
        group = [s for s in results["settings"] if s["protocol"] == proto]
        ml_rows = [
            n for n in (refine_name(k, ML), refine_name(k, ML_CKPT)) if group and all(n in s["rows"] for s in group)
        ]
        for name in (refine_rows + ml_rows) if group else ():
            pairs = [
                (
                    s["noise"],
                    s["rows"][name]["rot_median_deg"],
                    s["rows"][SQPNP]["rot_median_deg"],
                    s.get("rot_median_vs_sqpnp", {}).get(name),
                )
                for s in group
            ]
            what = "realistic" if proto == "realistic" else "realistic, 2D noise only (not an issue target)"

            def ci(d):
                return "" if d is None else f" (Δ {d['diff']:+.3f}°, 95 % CI [{d['lo']:+.3f}, {d['hi']:+.3f}])"

            out.append(
                Target(
                    f"{what}: {name} median rotation error ≤ cv2 SQPNP's, every noise level",
                    "; ".join(f"{x:g}: {a:.3f}° vs {b:.3f}°{ci(d)}" for x, a, b, d in pairs),
                    all(a <= b for _, a, b, _ in pairs),
                )
            )
    return out


def targets_markdown(targets: list[Target]) -> list[str]:
    return md_table(
        ["target", "measured", "met"], [[t.text, t.measured, "yes" if t.met else "**no**"] for t in targets]
    ).splitlines()


# --------------------------------------------------------------------------------------------
# Report: markdown + plots
# --------------------------------------------------------------------------------------------

_COLUMNS = [
    ("l1_3d", "L1-3D", ".3f"),
    ("rot_mean_deg", "rot mean°", ".2f"),
    ("rot_median_deg", "rot med°", ".3f"),
    ("rot_p99_deg", "rot p99°", ".2f"),
    ("trans_mean", "t mean", ".2f"),
    ("trans_median", "t med", ".2f"),
    ("reproj_rmse_median", "reproj med", ".4g"),
    ("failures", "fail >30°", ".2%"),
    ("us_per_pose", "µs / pose", ".3g"),
    ("poses_per_s", "poses / s", ",.0f"),
]


def _show_path(p: str) -> str:
    """A path as written in reports: relative to the repository when inside it."""
    from experiments.lib.paths import REPO

    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return p


def _cell(v, fmt: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def setting_table(s: dict) -> list[str]:
    rows = []
    for name, r in s["rows"].items():
        cells = [_cell(r.get(k), f) for k, _, f in _COLUMNS]
        if r.get("unsolved"):
            cells[_COLUMNS.index(("failures", "fail >30°", ".2%"))] += f" ({r['unsolved']} unsolved)"
        rows.append([name, *cells])
    lines = md_table(["solver", *(c[1] for c in _COLUMNS)], rows, ["", *":" * len(_COLUMNS)]).splitlines()
    return lines


def solver_markdown(results: dict, command: str, plots: list[str]) -> str:
    cfg = results["config"]
    units = {
        "seed": "reprojection in image units (1 = the image side)",
        "realistic": "reprojection in pixels",
        "realistic-2d": "reprojection in pixels",
    }
    lines = [
        "# Solver benchmark: pnpjax vs OpenCV vs the original model",
        "",
        f"Generated by `{command}` (do not edit; `experiments/lib/bench.py`).",
        "",
        f"Machine: {_load_text(results['machine'])}.",
        "",
        f"Every row of a table ran on the same {cfg['n']} held-out draws (key {cfg['key']}). L1-3D (the original's "
        "metric) and translation in cm; angles in degrees; reprojection: median over poses of the RMSE against the "
        "observed (noisy) landmarks; failures: rotation error > 30°. Time per pose: jitted solvers on the whole set "
        f"as one batch (compiled first, fastest of {cfg['repeats']} runs, float32); OpenCV one call per pose in a "
        f"Python loop (float64), fastest of {cfg['cv2_repeats']} passes over the set. `ML (setting's noise)`: LM on "
        "the likelihood under the setting's own noise model (`refine.refine_ml`: the protocol's 3D point noise and 2D "
        "landmark noise together, their stds known; nothing else of the truth); `ML (checkpoint's noise)`: the same "
        "with the noise model of the protocol the checkpoint was made for, at every level. The oracle is OpenCV's LM "
        "started at the true pose (the maximum-likelihood pose for 2D noise). The realistic protocol also varies the "
        "head's 3D shape (a global scale 0.9-1.1 and 0.3 cm per-point jitter), i.e. noise on the 3D points; the "
        "`2D noise only` group switches that off (shape_jitter_cm 0, head_scale 1) to separate the estimators' costs "
        "(image-space for LM and the refinement, object-space for SQPnP) from the solvers' convergence.",
        "",
        f"Checkpoints: seed protocol `{_show_path(cfg['seed_checkpoint'])}`, realistic protocol "
        f"`{_show_path(cfg['realistic_checkpoint'])}`; "
        "the uint8 web export is the TF.js export (`pnpjax export --format tfjs --quantize uint8`) read back as TF.js "
        "decodes it.",
        "",
        "## Targets (issue #4)",
        "",
        "Δ: paired difference of the median rotation errors (over the poses both solved) with a 95 % bootstrap "
        "interval: an interval that contains 0 is a tie at this sample size.",
        "",
        *targets_markdown(solver_targets(results)),
        "",
    ]
    for p in plots:
        lines += [f"![{Path(p).stem}]({Path(p).name})", ""]
    for s in results["settings"]:
        lines += [
            f"## {PROTOCOL_TITLES[s['protocol']]}, {s['noise_name']} = {s['noise']:g} ({s['layout']}, {s['n']} poses)",
            "",
            f"{units[s['protocol']]}; the true pose's own reprojection RMSE (median): {s['truth_reproj_rmse_median']:.4g}.",
            "",
            *setting_table(s),
            "",
        ]
    return "\n".join(lines)


def _styles(results: dict) -> dict[str, dict]:
    """One colour and line style per solver, the same in every panel (cv2 dashed, the original dash-dot)."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for s in results["settings"] for n in s["rows"]))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {
        n: {"color": cmap(i), "linestyle": "--" if n.startswith("cv2") else ("-." if n == ORIGINAL else "-")}
        for i, n in enumerate(names)
    }


def _figure_legend(fig, styles: dict[str, dict]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], **st) for st in styles.values()]
    fig.legend(handles, list(styles), loc="lower center", ncol=min(5, len(styles)), fontsize=8, frameon=False)


def plot_error_vs_noise(results: dict, path: Path) -> None:
    """Median rotation error and mean L1-3D vs noise level, one column per protocol (log axes,
    values floored at 1e-3 so that exact solutions at zero noise stay on the plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = _styles(results)
    protos = list(dict.fromkeys(s["protocol"] for s in results["settings"]))
    fig, axes = plt.subplots(2, len(protos), figsize=(6 * len(protos), 8.5), squeeze=False)
    for j, proto in enumerate(protos):
        ss = [s for s in results["settings"] if s["protocol"] == proto]
        xs = [s["noise"] for s in ss]
        for name in ss[0]["rows"]:
            for i, key in enumerate(("rot_median_deg", "l1_3d")):
                axes[i, j].plot(xs, [max(s["rows"][name][key], 1e-3) for s in ss], marker="o", ms=4, **styles[name])
        axes[0, j].set_ylabel("median rotation error (°)")
        axes[1, j].set_ylabel("mean L1-3D (cm)")
        for i in range(2):
            axes[i, j].set_yscale("log")
            axes[i, j].set_xlabel(
                ss[0]["noise_name"] + (" (cm, uniform 3D jitter)" if proto == "seed" else " (× face size, 2D std)")
            )
            axes[i, j].grid(True, which="both", alpha=0.3)
        axes[0, j].set_title(f"{PROTOCOL_TITLES[proto]}\n({ss[0]['layout']})", fontsize=9)
    _figure_legend(fig, styles)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cdf(results: dict, path: Path) -> None:
    """CDF of the rotation error of every solver at each protocol's default noise level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = _styles(results)
    rot = results["_rot"]
    fig, axes = plt.subplots(1, len(rot), figsize=(6 * len(rot), 5), squeeze=False)
    for ax, (proto, by_name) in zip(axes[0], rot.items()):
        levels = [s["noise"] for s in results["settings"] if s["protocol"] == proto]
        noise = default_noise(proto, levels)
        for name, e in by_name.items():
            ax.plot(np.maximum(e, 1e-3), np.arange(1, len(e) + 1) / max(len(e), 1), **styles[name])
        ax.set_xscale("log")
        ax.set_xlabel("rotation error (°)")
        ax.set_ylabel("fraction of poses ≤ x")
        ax.set_title(
            f"{PROTOCOL_TITLES[proto]}\n{'noise_cm' if proto == 'seed' else 'noise_2d'} = {noise:g}", fontsize=9
        )
        ax.axvline(FAILURE_DEG, color="grey", lw=0.8)
        ax.grid(True, which="both", alpha=0.3)
    _figure_legend(fig, styles)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_solver_report(results: dict, out_dir: str | Path, command: str) -> Path:
    """README.md, results.json, error_vs_noise.png, error_cdf.png in out_dir; returns the README."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = [out / "error_vs_noise.png", out / "error_cdf.png"]
    plot_error_vs_noise(results, plots[0])
    plot_cdf(results, plots[1])
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    public["targets"] = [t._asdict() for t in solver_targets(results)]
    public["command"] = command
    (out / "results.json").write_text(json.dumps(public, indent=1))
    readme = out / "README.md"
    readme.write_text(solver_markdown(results, command, [str(p) for p in plots]))
    return readme


# --------------------------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------------------------


def cv2_sqpnp_seconds_per_pose(xy_NxKx2: np.ndarray, pts_Kx3: np.ndarray, repeats: int, focal: float = 1000.0) -> float:
    """A tight loop of cv2.solvePnP(SQPNP), inputs prepared beforehand; fastest of repeats (one thread)."""
    import cv2

    pts = np.ascontiguousarray(pts_Kx3, np.float64)
    K = np.diag([focal, focal, 1.0])
    xs = [np.ascontiguousarray(x * focal, np.float64) for x in np.asarray(xy_NxKx2)]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x in xs:
            cv2.solvePnP(pts, x, K, None, flags=cv2.SOLVEPNP_SQPNP)
        times.append((time.perf_counter() - t0) / len(xs))
    return min(times)


def throughput_bench(cfg: ThroughputConfig, print_fn=print) -> dict:
    info = machine_info()
    solver = checkpoint.load(cfg.checkpoint)
    pts = np.asarray(solver.layout.array)
    base_n = min(max(cfg.batch_sizes), 65_536)
    base = train.eval_batch(protocols.SEED_TEST, solver.layout, jax.random.key(cfg.key), base_n)
    xy_base = base.xy[np.asarray(base.valid)]
    sqpnp = cv2_sqpnp_seconds_per_pose(np.asarray(xy_base[: cfg.cv2_poses]), pts, cfg.repeats)
    print_fn(f"cv2 SQPNP: {sqpnp * 1e6:.2f} us/pose ({1 / sqpnp:,.0f} poses/s)")
    net = network_fn(solver)
    variants = {NET: net, **{refine_name(k): refine_fn(solver, pts, k) for k in cfg.refine_iters}}
    if checkpoint_noise(solver) is not None:  # the likelihood refinement (--refine-cost ml), checkpoint's noise model
        k = max(cfg.refine_iters)
        variants[refine_name(k, ML_CKPT)] = refine_fn(solver, pts, k, checkpoint_noise(solver))
    chunked = {chunked_name(cfg.net_chunk): lambda xy: jax.lax.map(net, xy, batch_size=cfg.net_chunk)}
    rows = []
    for b in cfg.batch_sizes:
        xy = jnp.tile(xy_base, (math.ceil(b / xy_base.shape[0]), 1, 1))[:b]
        for name, fn in {**variants, **(chunked if b > cfg.net_chunk else {})}.items():
            sec, cores, _ = time_jitted(jax.jit(fn), xy, repeats=cfg.repeats, min_seconds=cfg.min_seconds)
            pps = b / sec
            rows.append(
                {
                    "batch": b,
                    "solver": name,
                    "seconds_per_call": sec,
                    "poses_per_s": pps,
                    "x_sqpnp": pps * sqpnp,
                    "cores": cores,
                }
            )
            print_fn(
                f"batch {b:>9,} {name:<22} {sec * 1e3:10.3f} ms/call {pps:14,.0f} poses/s  {pps * sqpnp:9.1f}x cv2 SQPNP"
                f"  ({cores:.2f} cores busy)"
            )
    info["loadavg_end"] = list(os.getloadavg())
    return {"config": dataclasses.asdict(cfg), "machine": info, "cv2_sqpnp_seconds_per_pose": sqpnp, "rows": rows}


def chunked_name(chunk: int) -> str:
    return f"pnpjax, lax.map in chunks of {chunk:,}"


def throughput_targets(results: dict) -> list[Target]:
    """Issue #4's ratios at the largest batch: network ≥ 100× (stretch 500×), with refinement ≥ 20×."""
    big = max(r["batch"] for r in results["rows"])
    out = []
    for r in (r for r in results["rows"] if r["batch"] == big):
        x, name = r["x_sqpnp"], r["solver"]
        if name.startswith("pnpjax + refine"):
            out.append(Target(f"{name} at batch {big:,} ≥ 20× cv2 SQPNP", f"{x:.0f}×", x >= 20))
        else:
            out.append(Target(f"{name} at batch {big:,} ≥ 100× cv2 SQPNP", f"{x:.0f}×", x >= 100))
            out.append(Target(f"stretch: {name} at batch {big:,} ≥ 500×", f"{x:.0f}×", x >= 500))
    return out


def throughput_markdown(results: dict, command: str) -> str:
    cfg = results["config"]
    sq = results["cv2_sqpnp_seconds_per_pose"]
    lines = [
        "# Inference throughput: jitted pnpjax vs cv2 SQPnP",
        "",
        f"Generated by `{command}` (do not edit; `experiments/lib/bench.py`).",
        "",
        f"Machine: {_load_text(results['machine'])}.",
        "",
        f"Checkpoint `{_show_path(cfg['checkpoint'])}`; inputs: seed-protocol test draws (key {cfg['key']}), tiled to the batch "
        f"size. pnpjax: one jitted call on the whole batch (float32, compiled first; fastest of {cfg['repeats']} timed "
        f"runs, each of enough calls to last ≥ {cfg['min_seconds']:g} s; `block_until_ready`, inputs already on the "
        f"device). cv2 SQPnP: a tight Python loop of `cv2.solvePnP(..., flags=SOLVEPNP_SQPNP)` over {cfg['cv2_poses']} "
        f"prepared poses, one thread, fastest of {cfg['repeats']} runs: **{sq * 1e6:.1f} µs per pose "
        f"({1 / sq:,.0f} poses/s)**. The ratio is pnpjax poses/s ÷ cv2 SQPnP poses/s, both measured in this run; "
        "`cores busy` is the process's CPU time ÷ wall time while pnpjax ran (1.0: one core; this CPU has "
        f"{results['machine']['cpus']}). At batch 1 a call costs XLA's dispatch and per-kernel overhead, not arithmetic.",
        "",
    ]
    rows = []
    for r in results["rows"]:
        s = r["seconds_per_call"]
        call = f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"
        rows.append(
            [
                f"{r['batch']:,}",
                r["solver"],
                call,
                f"{s / r['batch'] * 1e6:.4g}",
                f"{r['poses_per_s']:,.0f}",
                f"{r['x_sqpnp']:,.1f}",
                f"{r['cores']:.2f}",
            ]
        )
    lines += md_table(
        ["batch", "solver", "time per call", "µs per pose", "poses / s", "× cv2 SQPnP", "cores busy"],
        rows,
        [":", "", ":", ":", ":", ":", ":"],
    ).splitlines()
    lines += ["", "## Targets (issue #4)", "", *targets_markdown(throughput_targets(results)), ""]
    return "\n".join(lines)


def write_throughput_report(results: dict, path: str | Path, command: str) -> Path:
    """The Markdown report at `path` and its data beside it (`<stem>.json`: rows, targets, command)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(throughput_markdown(results, command))
    data = {**results, "command": command, "targets": [t._asdict() for t in throughput_targets(results)]}
    p.with_suffix(".json").write_text(json.dumps(data, indent=1, default=float))
    return p
