"""The temporal filters against independent references, and the tracker's robustness."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pnpjax import layouts, track, video

REPO = Path(__file__).resolve().parents[1]
LAYOUT = layouts.BLAZEFACE6
PTS = LAYOUT.array.astype(np.float64)


# --- references -------------------------------------------------------------------------------


class KalmanJS:
    """kalmanjs' KalmanFilter (Wouter Bulten), transcribed from its source."""

    def __init__(self, R=1.0, Q=1.0, A=1.0, B=0.0, C=1.0):
        self.R, self.Q, self.A, self.B, self.C = R, Q, A, B, C
        self.cov = math.nan
        self.x = math.nan

    def filter(self, z, u=0.0):
        if math.isnan(self.x):
            self.x = (1 / self.C) * z
            self.cov = (1 / self.C) * self.Q * (1 / self.C)
        else:
            pred_x = self.A * self.x + self.B * u
            pred_cov = self.A * self.cov * self.A + self.R
            K = pred_cov * self.C * (1 / (self.C * pred_cov * self.C + self.Q))
            self.x = pred_x + K * (z - self.C * pred_x)
            self.cov = pred_cov - K * self.C * pred_cov
        return self.x


def original_smoothing(q_cv, t_cv, present):
    """The original viewer: OpenCV pose -> three.js frame, Euler 'XYZ' (scipy: intrinsic XYZ, R = Rx Ry Rz),
    six KalmanJS(R=1, Q=3), back; frames without landmarks keep the last output."""
    flip = Rotation.from_quat([1.0, 0, 0, 0])
    filters = [KalmanJS(R=1, Q=3) for _ in range(6)]
    out_q, out_t, last = [], [], None
    for q, t, p in zip(q_cv, t_cv, present):
        if p:
            e = (flip * Rotation.from_quat(q)).as_euler("XYZ")
            t_gl = t * np.array([1, -1, -1])
            z = [f.filter(v) for f, v in zip(filters, np.concatenate([e, t_gl]))]
            r = flip * Rotation.from_euler("XYZ", z[:3])
            last = (r.as_quat(canonical=True), np.asarray(z[3:]) * np.array([1, -1, -1]))
        out_q.append(last[0])
        out_t.append(last[1])
    return np.asarray(out_q), np.asarray(out_t)


class OneEuroRef:
    """Casiez et al.'s 1-euro reference (OneEuroFilter.py, 2019: the derivative against the last
    *filtered* value, the rate from the timestamps)."""

    def __init__(self, mincutoff, beta, dcutoff):
        self.mincutoff, self.beta, self.dcutoff = mincutoff, beta, dcutoff
        self.x_s = self.dx_s = self.last = None

    @staticmethod
    def alpha(cutoff, te):
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff) / te)

    def __call__(self, x, timestamp):
        if self.x_s is None:
            self.x_s, self.dx_s, self.last = x, 0.0, timestamp
            return x
        te = timestamp - self.last
        self.last = timestamp
        dx = (x - self.x_s) / te
        self.dx_s = self.dx_s + self.alpha(self.dcutoff, te) * (dx - self.dx_s)
        cutoff = self.mincutoff + self.beta * abs(self.dx_s)
        self.x_s = self.x_s + self.alpha(cutoff, te) * (x - self.x_s)
        return self.x_s


def _random_poses(rng, n, t, yaw_amp=0.6):
    """Smooth random head poses (OpenCV frame, frontal ~ 180 deg about x) with noise; float64."""
    tt = np.arange(t) / 30.0
    ang = np.stack(
        [
            yaw_amp * np.sin(2 * np.pi * rng.uniform(0.2, 1.5, (n, 1)) * tt + rng.uniform(0, 6, (n, 1)))
            for _ in range(3)
        ],
        -1,
    )
    ang = ang + 0.05 * rng.standard_normal(ang.shape)
    r = Rotation.from_quat([1.0, 0, 0, 0]) * Rotation.from_rotvec(ang.reshape(-1, 3))
    q = r.as_quat(canonical=True).reshape(n, t, 4)
    tr = np.stack([5 * np.sin(tt + i) + rng.standard_normal((n, t)) for i in range(3)], -1) + np.array([0, 0, 60.0])
    return q, tr


# --- baseline and One-Euro ---------------------------------------------------------------------


def test_kalman_euler_is_the_original(x64):
    rng = np.random.default_rng(0)
    q, t = _random_poses(rng, 3, 90)
    present = rng.uniform(size=(3, 90)) > 0.1
    present[:, 0] = True
    qo, to = track.kalman_euler(track.KalmanEuler(), q, t, present)
    for i in range(3):
        rq, rt = original_smoothing(q[i], t[i], present[i])
        np.testing.assert_allclose(np.asarray(qo[i]), rq, atol=1e-10)
        np.testing.assert_allclose(np.asarray(to[i]), rt, atol=1e-9)


def test_threejs_euler_matches_scipy_and_round_trips(x64):
    q = Rotation.random(200, random_state=1).as_quat()
    e = np.asarray(track.threejs_euler_xyz(q))
    np.testing.assert_allclose(e, Rotation.from_quat(q).as_euler("XYZ"), atol=1e-9)
    back = np.asarray(track.threejs_quat_from_euler_xyz(e))
    np.testing.assert_allclose(np.abs(np.sum(back * q, -1)), 1, atol=1e-12)


def test_kalman_gain_converges_to_0434(x64):
    """A unit step after convergence moves the output by K = 2.303 / 5.303 (R = 1, Q = 3), whatever the units."""
    q = np.tile(Rotation.from_quat([1.0, 0, 0, 0]).as_quat(), (1, 60, 1))
    t = np.zeros((1, 60, 3))
    t[0, 59, 0] = 100.0
    _, to = track.kalman_euler(track.KalmanEuler(), q, t, np.ones((1, 60), bool))
    p = (-1 + math.sqrt(13)) / 2
    assert abs(float(to[0, 59, 0]) / 100.0 - (p + 1) / (p + 4)) < 1e-6


def test_one_euro_matches_reference_translation_and_fixed_axis_rotation(x64):
    rng = np.random.default_rng(1)
    T = 120
    time = np.cumsum(rng.uniform(0.02, 0.05, T)) - 0.02
    x = np.cumsum(rng.standard_normal(T)) * 0.7 + 3 * np.sin(np.arange(T) / 7)
    theta = 0.8 * np.sin(np.arange(T) / 9) + 0.05 * rng.standard_normal(T)
    present = rng.uniform(size=T) > 0.15
    present[0] = True
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    base = Rotation.from_rotvec([0.2, 2.9, 0.1])
    q = (Rotation.from_rotvec(theta[:, None] * axis) * base).as_quat(canonical=True)
    t = np.zeros((T, 3)) + np.array([1.0, -2.0, 50.0])
    t[:, 1] += x
    cfg = track.OneEuro(min_cutoff_rot=0.8, beta_rot=0.7, min_cutoff_trans=1.3, beta_trans=0.2, d_cutoff=1.1)
    qo, to = track.one_euro(cfg, q[None], t[None], present[None], time[None])
    ref_t, ref_r = OneEuroRef(1.3, 0.2, 1.1), OneEuroRef(0.8, 0.7, 1.1)
    exp_t, exp_th, lt, lth = [], [], None, None
    for i in range(T):
        if present[i]:
            lt, lth = ref_t(x[i], time[i]), ref_r(theta[i], time[i])
        exp_t.append(lt)
        exp_th.append(lth)
    np.testing.assert_allclose(np.asarray(to[0, :, 1]) + 2.0, exp_t, atol=1e-9)
    np.testing.assert_allclose(np.asarray(to[0, :, [0, 2]]).T, np.broadcast_to([1.0, 50.0], (T, 2)), atol=1e-12)
    r_exp = (Rotation.from_rotvec(np.asarray(exp_th)[:, None] * axis) * base).as_quat(canonical=True)
    np.testing.assert_allclose(np.asarray(qo[0]), r_exp, atol=1e-9)


def test_per_frame_holds_over_drops():
    q = np.tile(np.array([0.0, 0, 0, 1]), (1, 5, 1))
    q[0, :, 0] = [0, 0.1, 0.2, 0.3, 0.4]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    t = np.arange(15.0).reshape(1, 5, 3)
    present = np.array([[True, False, True, False, False]])
    qo, to = track.per_frame(q, t, present)
    np.testing.assert_allclose(np.asarray(to[0]), t[0, [0, 0, 2, 2, 2]])
    np.testing.assert_allclose(np.asarray(qo[0]), q[0, [0, 0, 2, 2, 2]], atol=1e-7)


# --- the tracker -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip():
    cfg = dataclasses.replace(video.SMOKE, outlier_rate=0.05, drop_rate=0.1, segment_frames=45)
    v = jax.tree.map(np.asarray, video.sample_video(cfg, jax.random.key(7), LAYOUT, 8))
    # A stand-in for the network: the true pose turned by ~5 deg and moved by ~3 cm (used at (re)starts).
    rng = np.random.default_rng(0)
    q_net = Rotation.from_rotvec(0.09 * rng.standard_normal(v.q.shape[:2] + (3,)).reshape(-1, 3)) * Rotation.from_quat(
        v.q.reshape(-1, 4)
    )
    q_net = q_net.as_quat().reshape(v.q.shape).astype(np.float32)
    t_net = (v.t + 3 * rng.standard_normal(v.t.shape)).astype(np.float32)
    return v, q_net, t_net


def _angle_deg(qa, qb):
    qa, qb = np.asarray(qa, np.float64), np.asarray(qb, np.float64)
    rel = Rotation.from_quat(qa.reshape(-1, 4)).inv() * Rotation.from_quat(qb.reshape(-1, 4))
    return np.degrees(rel.magnitude()).reshape(qa.shape[:-1])


def test_tracker_follows_and_smooths(clip):
    v, q_net, t_net = clip
    q, t = track.track(track.TrackerConfig(), v.xy, v.present, v.time, q_net, t_net, PTS.astype(np.float32))
    q, t = np.asarray(q), np.asarray(t)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(t))
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1, atol=1e-5)
    assert np.all(q[..., 3] >= 0)
    err = _angle_deg(q, v.q)
    assert np.median(err) < 4.0
    # On still segments the output moves far less than the network stand-in's per-frame poses.
    still = (v.kind[:, 1:] == video.STILL) & (v.segment[:, 1:] == v.segment[:, :-1])
    jit_track = np.sqrt(np.mean(_angle_deg(q[:, 1:], q[:, :-1])[still] ** 2))
    jit_net = np.sqrt(np.mean(_angle_deg(q_net[:, 1:], q_net[:, :-1])[still] ** 2))
    assert jit_track < 0.3 * jit_net


def test_tracker_recovers_after_outliers(clip):
    """One landmark jumps by 40 px on one frame of each sequence: against the clean twin the tracker
    moves far less than a memoryless fit does, and is back within 0.2 deg ten frames later."""
    v, q_net, t_net = clip
    clean = v.xy - v.outlier_xy
    n = np.arange(clean.shape[0])
    f = np.full(n.shape, 100)
    xy = clean.copy()
    xy[n, f, 2] += 40.0 / v.intrinsics[:, :2]  # the nose tip, 40 px along (1, 1) / sqrt(2) * sqrt(2)
    present = v.present.copy()
    present[:, 95:112] = True
    pts = PTS.astype(np.float32)
    cfg = track.TrackerConfig()
    diff = _angle_deg(
        track.track(cfg, xy, present, v.time, q_net, t_net, pts)[0],
        track.track(cfg, clean, present, v.time, q_net, t_net, pts)[0],
    )
    assert np.all(diff[:, :100] < 1e-4)
    # A memoryless robust-less fit: the same Gauss-Newton restarted on every frame, no weights.
    cfg0 = dataclasses.replace(cfg, gap=0.0, robust=1e9)
    diff0 = _angle_deg(
        track.track(cfg0, xy, present, v.time, q_net, t_net, pts)[0],
        track.track(cfg0, clean, present, v.time, q_net, t_net, pts)[0],
    )
    assert np.median(diff[:, 100]) < 0.25 * np.median(diff0[:, 100])
    assert np.max(diff[:, 110]) < 0.2


def test_tracker_never_nan_and_restarts(clip):
    """Hostile sequences: huge jumps, identical landmarks, a long gap, a repeated timestamp."""
    cfg = track.TrackerConfig()
    v = clip[0]
    xy, present, time = v.xy - v.outlier_xy, v.present.copy(), v.time.copy()
    present[:2, 10:60] = True
    xy[0, 10] += 50.0  # every landmark far away
    xy[0, 20] = 0.0  # all landmarks on one point
    xy[1, 30:40] = np.nan  # missing landmarks given as NaN but flagged present=False
    present[1, 30:40] = False
    time[1, 40:] += 5.0  # a 5 s gap: restart
    time[0, 50] = time[0, 49]  # dt = 0
    q, t = track.track(cfg, xy, present, time, v.q, v.t, PTS.astype(np.float32))
    q, t = np.asarray(q), np.asarray(t)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(t))
    X = (
        np.einsum("ntij,kj->ntki", Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(q.shape[:2] + (3, 3)), PTS)
        + t[:, :, None]
    )
    assert np.all(X[..., 2] > 0)
    err = _angle_deg(q, v.q)
    assert np.all(err[0, 15:19] < 5) and np.all(err[0, 25:29] < 5)  # recovered from the garbage frames
    # restarted after the gap (5 s of extrapolated motion would be tens of degrees off)
    assert np.max(err[1, 40:]) < 15 and np.median(err[1, 40:]) < 4


# --- pnpjax predict --track ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    """One smoke video's pixel landmarks (missed frames as NaN rows), its camera spec and truth."""
    from pnpjax import checkpoint

    d = tmp_path_factory.mktemp("video")
    v = jax.tree.map(np.asarray, video.sample_video(video.SMOKE, jax.random.key(4), LAYOUT, 1))
    intr, size = v.intrinsics[0].astype(np.float64), v.image_size[0].astype(np.float64)
    uv = v.xy[0].astype(np.float64) * intr[:2] + intr[2:]
    present = v.present[0].copy()
    present[[7, 8, 9]] = False
    uv[~present] = np.nan
    np.save(d / "in.npy", uv)
    (d / "in.json").write_text(json.dumps([None if not p else r.tolist() for r, p in zip(uv, present)]))
    spec = ",".join(repr(float(a)) for a in (*intr, *size))
    solver = checkpoint.load(REPO / "checkpoints" / "blazeface6")
    return d, spec, uv, present, v, solver


def test_predict_track_cli(video_file):
    from pnpjax import camera, cli

    d, spec, uv, present, v, solver = video_file
    times = np.cumsum(np.full(len(uv), 1 / 25.0)) - 1 / 25.0
    (d / "t.json").write_text(json.dumps(times.tolist()))
    assert (
        cli.main(
            [
                "predict",
                "--checkpoint",
                str(REPO / "checkpoints" / "blazeface6"),
                "--input",
                str(d / "in.json"),
                "--output",
                str(d / "out.npy"),
                "--camera",
                spec,
                "--track",
                "--timestamps",
                str(d / "t.json"),
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "predict",
                "--checkpoint",
                str(REPO / "checkpoints" / "blazeface6"),
                "--input",
                str(d / "in.npy"),
                "--output",
                str(d / "out.json"),
                "--camera",
                spec,
                "--track",
                "--fps",
                "25",
            ]
        )
        == 0
    )
    a, b = np.load(d / "out.npy"), np.asarray(json.loads((d / "out.json").read_text()))
    assert a.shape == (len(uv), 7) and np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, atol=1e-6)  # timestamps = frame / 25 is --fps 25
    ref = np.asarray(track.track_landmarks(solver, np.nan_to_num(uv), present, times, camera.parse_camera(spec)))
    np.testing.assert_allclose(a, ref, atol=1e-6)
    assert np.all(a[:, 3] >= 0)
    assert np.median(_angle_deg(a[:, :4], v.q[0])) < 5.0


def test_predict_track_user_errors(video_file, capsys):
    from pnpjax import cli

    d, spec, uv, *_ = video_file
    (d / "bad_t.json").write_text(json.dumps([0.0, 1.0]))
    (d / "dec_t.json").write_text(json.dumps([1.0] + [0.0] * (len(uv) - 1)))
    partial = uv.copy()
    partial[3, 0, 0] = np.nan
    np.save(d / "partial.npy", partial)
    base = ["predict", "--checkpoint", str(REPO / "checkpoints" / "blazeface6"), "--camera", spec]
    cases = [
        ["--input", str(d / "in.npy"), "--fps", "30"],  # --fps without --track
        ["--input", str(d / "in.npy"), "--track", "--fps", "30", "--timestamps", str(d / "bad_t.json")],
        ["--input", str(d / "in.npy"), "--track", "--timestamps", str(d / "bad_t.json")],
        ["--input", str(d / "in.npy"), "--track", "--timestamps", str(d / "dec_t.json")],
        ["--input", str(d / "in.npy"), "--track", "--fps", "nan"],
        ["--input", str(d / "in.npy"), "--track", "--refine", "3"],
        ["--input", str(d / "partial.npy"), "--track"],  # a half-missing row is not a missed frame
    ]
    for extra in cases:
        out = d / "never.npy"
        assert cli.main(base + extra + ["--output", str(out)]) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err, err
        assert not out.exists()


# --- the JS module's createTracker -------------------------------------------------------------

_NODE_TRACK = """
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const [modulePath, inPath, outPath] = process.argv.slice(1);
const m = await import(pathToFileURL(modulePath).href);
const input = JSON.parse(readFileSync(inPath, 'utf8'));
const tracker = m.createTracker(input.options ?? undefined);
const poses = [];
for (const f of input.frames) {
  if (f.reset) tracker.reset();
  const p = tracker.update(f.landmarks, f.ms, input.camera ?? undefined);
  poses.push(p === null ? null : [...p.quaternion, ...p.translation]);
}
const errors = (input.bad ?? []).map(([options, landmarks, ms]) => {
  try {
    m.createTracker(options).update(landmarks, ms);
    return null;
  } catch (e) {
    return String(e.message);
  }
});
writeFileSync(outPath, JSON.stringify({ poses, errors }));
"""


def _node_track(module: Path, payload: dict, tmp: Path) -> dict:
    (tmp / "in.json").write_text(json.dumps(payload))
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", _NODE_TRACK, str(module), str(tmp / "in.json"), str(tmp / "out.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp / "out.json").read_text())


@pytest.mark.node
@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")
@pytest.mark.parametrize("cam_kind", ["pixels", "seed"])
def test_js_tracker_equals_jax(video_file, tmp_path, cam_kind):
    """The float32 module's createTracker on a recorded sequence (missed frames, irregular
    timestamps, a reset, a 2 s gap) equals track.track_landmarks in float64 to 1e-5."""
    from pnpjax import camera, export

    d, spec, uv, present, v, solver = video_file
    cam = camera.parse_camera(spec if cam_kind == "pixels" else "seed")
    if cam is None:  # the same frames in the original's coordinates (u = x / w, v = 1 - y / h)
        w, h = v.image_size[0].astype(np.float64)
        uv = np.stack([uv[..., 0] / w, 1 - uv[..., 1] / h], -1)
    module = export.export_checkpoint(
        REPO / "checkpoints" / "blazeface6",
        "js",
        tmp_path / "js",
        quantize="float32",
        camera=cam or "seed",
        tracker=True,
    )
    rng = np.random.default_rng(0)
    ms = np.cumsum(rng.uniform(25.0, 45.0, len(uv)))
    ms[90:] += 2000.0  # a gap longer than TrackerConfig.gap: the filter restarts
    cut = 60  # reset() before this frame
    frames = [
        {"landmarks": uv[i].tolist() if present[i] else None, "ms": float(ms[i]), "reset": i == cut}
        for i in range(len(uv))
    ]
    frames[20]["landmarks"] = []  # [] is a missed frame too
    present = present.copy()
    present[20] = False
    js = _node_track(module, {"frames": frames}, tmp_path)["poses"]
    with jax.enable_x64(True):
        ref = np.concatenate(
            [
                np.asarray(
                    track.track_landmarks(
                        solver, np.nan_to_num(uv[sl]), present[sl], ms[sl] / 1000, cam, dtype=jnp.float64
                    )
                )
                for sl in (slice(0, cut), slice(cut, None))
            ]
        )
    assert present[0] and present[cut]
    js = np.asarray(js, np.float64)
    assert js.shape == ref.shape
    np.testing.assert_allclose(js, ref, atol=1e-5, rtol=0)
    assert np.all(js[:, 3] >= 0)


@pytest.mark.node
@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")
def test_js_tracker_api(tmp_path):
    """Missed frames before any landmarks give null, after them a pose; bad options, timestamps and
    landmarks throw one-line errors."""
    from pnpjax import export, jsmodule

    module = export.export_checkpoint(
        REPO / "checkpoints" / "blazeface6",
        "js",
        tmp_path / "js",
        quantize="uint8",
        camera="hfov=60,640x480",
        tracker=True,
    )
    lm = [[300.0, 200.0], [340.0, 200.0], [320.0, 225.0], [320.0, 250.0], [280.0, 210.0], [360.0, 210.0]]
    out = _node_track(
        module,
        {
            "frames": [{"landmarks": None, "ms": 0.0}, {"landmarks": lm, "ms": 33.0}, {"landmarks": None, "ms": 66.0}],
            "bad": [
                [{"iters": 0}, lm, 0.0],
                [{"iters": 2.5}, lm, 0.0],
                [{"nope": 1}, lm, 0.0],
                [{"coast": -1}, lm, 0.0],
                [{"gap": "1"}, lm, 0.0],
                [None, lm, "12"],
                [None, lm, None],
                [None, [[1, 2]], 0.0],
                [None, "abcdef", 0.0],
            ],
        },
        tmp_path,
    )
    assert out["poses"][0] is None and out["poses"][1] is not None and out["poses"][2] is not None
    assert all(e is not None and "\n" not in e and e.startswith("pnpjax ") for e in out["errors"]), out["errors"]
    # JS options are TrackerConfig's fields in camelCase, with its defaults.
    data = jsmodule.tracker_defaults()
    assert list(data.values()) == list(dataclasses.asdict(track.TrackerConfig()).values())
    assert data["initIters"] == track.TrackerConfig().init_iters and data["noise2d"] == track.TrackerConfig().noise_2d


def _hostile_sequence(cam) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels, present and timestamps (ms) of frames that once put the tracker's pose behind the
    camera: an upside-down face (a roll of exactly 180 degrees) rushing at the camera (~150 cm/s)
    then lost (coasting would pass the camera), and landmarks spread over thousands of pixels (the
    network's pose has points behind it)."""
    pts = layouts.BLAZEFACE6.array.astype(np.float64)
    rot = Rotation.from_euler("y", 180, degrees=True)  # towards the camera, upside down (OpenCV frame)
    near = [rot.apply(pts) + [0.0, 0.0, z] for z in np.linspace(60.0, 12.0, 10)]
    K = np.asarray(cam.intrinsics, np.float64)
    uv = [np.stack([K[0] * X[:, 0] / X[:, 2] + K[2], K[1] * X[:, 1] / X[:, 2] + K[3]], -1) for X in near]
    uv += [np.zeros((6, 2))] * 6  # lost: coasting
    rng = np.random.default_rng(3)
    uv += [np.array([320.0, 240.0]) + rng.uniform(-2500, 2500, (6, 2)) for _ in range(12)]
    uv += [np.zeros((6, 2))] * 4
    present = np.array([not np.all(u == 0) for u in uv])
    return np.stack(uv), present, 33.0 * np.arange(len(uv))


@pytest.mark.node
@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")
def test_tracker_never_puts_the_face_behind_the_camera(tmp_path):
    """JAX and JS trackers on hostile frames (an upside-down face rushing at the camera then lost;
    landmarks spread over thousands of pixels): every pose has every layout point in front of the
    camera, like estimatePose's, and on the face the JS module equals the JAX tracker (float64) to
    1e-5 (its first frame is a roll of exactly 180 degrees, which the module once did not turn back)."""
    from pnpjax import camera, checkpoint, export
    from pnpjax.camera import MIN_DEPTH

    spec = "hfov=60,640x480"
    cam = camera.parse_camera(spec)
    uv, present, ms = _hostile_sequence(cam)
    solver = checkpoint.load(REPO / "checkpoints" / "blazeface6")
    with jax.enable_x64(True):
        ref = np.asarray(track.track_landmarks(solver, uv, present, ms / 1000, cam, dtype=jnp.float64))
    module = export.export_checkpoint(
        REPO / "checkpoints" / "blazeface6", "js", tmp_path / "js", quantize="float32", camera=spec, tracker=True
    )
    frames = [{"landmarks": uv[i].tolist() if present[i] else None, "ms": float(ms[i])} for i in range(len(uv))]
    js = np.asarray(_node_track(module, {"frames": frames}, tmp_path)["poses"], np.float64)
    pts = layouts.BLAZEFACE6.array.astype(np.float64)
    for name, poses in (("jax", ref), ("js", js)):
        assert np.all(np.isfinite(poses)), name
        depth = np.einsum("nj,kj->nk", Rotation.from_quat(poses[:, :4]).as_matrix()[:, 2], pts) + poses[:, None, 6]
        assert np.all(depth > MIN_DEPTH), (name, np.argwhere(depth <= MIN_DEPTH)[:5], depth.min())
    # The same poses where the inputs are a face (the wide spreads are too ill-conditioned for the
    # float32 network to match float64 to 1e-5); q up to sign: w = 0 for this half-turned face.
    face = slice(0, 16)
    sign = np.where(np.sum(js[face, :4] * ref[face, :4], -1, keepdims=True) < 0, -1.0, 1.0)
    np.testing.assert_allclose(js[face, :4] * sign, ref[face, :4], atol=1e-5, rtol=0)
    np.testing.assert_allclose(js[face, 4:], ref[face, 4:], atol=1e-5, rtol=0)
