"""Real faces: face-api.js in Node and in headless Chromium with a fake webcam, scored against cv2 SQPnP.

The fake webcam is a .y4m video made from face-api.js's sample photos: each segment zooms one face
to where a webcam user sits (the outer eye corners `distance_cm` away at the video's field of
view) and turns the image about its centre. Turning an image about the principal point is
exactly a camera roll, so between two frames of a segment the head's rotation in the camera frame
changes by Rz(angle change), whatever the focal length: R_i R_0^T = Rz(theta_i - theta_0).
Every frame carries its number in 8 squares at its top-left corner (web/demo/faces.js reads it),
so each processed frame is matched to its known angle whatever the browser's timing.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

from experiments.lib.node import WebServer

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
FACEAPI = WEB / "node_modules" / "@vladmandic" / "face-api"
SAMPLES = [FACEAPI / "demo" / f"sample{i}.jpg" for i in range(1, 7)]
CHROMIUM = Path("/usr/bin/chromium")
OUTER_EYES_CM = 2 * 4.49893  # faceapi10's left_eye_outer to right_eye_outer
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45  # face-api.js 68-point indices


# --------------------------------------------------------------------------------------------
# Detection in Node
# --------------------------------------------------------------------------------------------


def detect_faces(
    images: list[Path], out_json: Path, npy: Path | None = None, raw: Path | None = None, **options
) -> dict:
    """web/tools/detect_faces.mjs on image files; options: backend, detector, landmarks, input_size, min_score."""
    cmd = ["node", str(WEB / "tools" / "detect_faces.mjs"), *map(str, images), "--out", str(out_json)]
    if npy is not None:
        cmd += ["--npy", str(npy)]
    if raw is not None:
        cmd += ["--raw", str(raw)]
    for k, v in options.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"detect_faces.mjs failed: {proc.stderr.strip()}")
    return json.loads(Path(out_json).read_text())


# --------------------------------------------------------------------------------------------
# The fake webcam
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RollVideo:
    """A fake-webcam video: `frames[i]` = (segment, roll angle in degrees) of the frame numbered i."""

    path: Path
    width: int
    height: int
    hfov_deg: float
    fps: int
    frames: tuple[tuple[int, float], ...]
    segments: tuple[str, ...]

    @property
    def camera(self) -> tuple[float, float, float, float]:
        f = self.width / 2 / np.tan(np.radians(self.hfov_deg) / 2)
        return (f, f, self.width / 2, self.height / 2)


def roll_matrix(deg: float) -> np.ndarray:
    """2x2 rotation of pixel offsets (x right, y down) = the 3D camera-frame rotation Rz(deg)."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s], [s, c]])


def draw_frame_code(img: np.ndarray, code: int) -> None:
    """8 squares of 16 px at (8, 8), 20 px apart: white, black, then `code` in 6 bits (MSB first)."""
    assert 0 <= code < 64
    bits = [1, 0] + [(code >> (5 - b)) & 1 for b in range(6)]
    for i, bit in enumerate(bits):
        x = 8 + 20 * i
        img[4:28, x - 4 : x + 20] = 128  # a grey margin so the photo never touches a square
        img[8:24, x : x + 16] = 255 if bit else 0


def write_y4m(path: Path, frames_bgr: list[np.ndarray], fps: int) -> None:
    """Uncompressed YUV4MPEG2, 4:2:0 (Chromium's --use-file-for-fake-video-capture reads it)."""
    h, w = frames_bgr[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for img in frames_bgr:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420).tobytes())


def make_roll_video(
    path: Path,
    detections: dict,
    *,
    faces: list[tuple[int, int]],
    angles_deg: list[float],
    size: tuple[int, int] = (640, 480),
    hfov_deg: float = 60.0,
    distance_cm: float = 60.0,
    fps: int = 5,
) -> tuple[RollVideo, list[np.ndarray]]:
    """One segment per (image index, face index) of `detections` (detect_faces.mjs output on SAMPLES
    or any images): the face zoomed so that its outer eye corners sit `distance_cm` away, centred,
    and turned by each angle about the frame centre. Returns the video and its frames (BGR)."""
    w, h = size
    f = w / 2 / np.tan(np.radians(hfov_deg) / 2)
    frames, meta, names = [], [], []
    for seg, (i, j) in enumerate(faces):
        image = detections["images"][i]
        src = cv2.imread(str(_image_path(detections, i)))
        lm = np.asarray(image["faces"][j]["landmarks"], np.float64)
        eyes_px = np.linalg.norm(lm[LEFT_EYE_OUTER] - lm[RIGHT_EYE_OUTER])
        scale = f * OUTER_EYES_CM / distance_cm / eyes_px  # output px per source px
        centre = lm.mean(0)
        names.append(f"{image['file']} face {j}")
        for angle in angles_deg:
            a = scale * roll_matrix(angle)
            # cv2 maps pixel indices (pixel i's centre is at i + 0.5 in image coordinates): turn about
            # the principal point (w/2, h/2) of the image coordinates, i.e. index (w/2 - 0.5, h/2 - 0.5).
            m = np.hstack([a, (np.array([w / 2, h / 2]) - 0.5 - a @ (centre - 0.5))[:, None]])
            img = cv2.warpAffine(
                src, m, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
            draw_frame_code(img, len(frames))
            frames.append(img)
            meta.append((seg, float(angle)))
    if len(frames) > 64:
        raise ValueError("at most 64 frames (6-bit frame code)")
    write_y4m(path, frames, fps)
    return RollVideo(Path(path), w, h, hfov_deg, fps, tuple(meta), tuple(names)), frames


def _image_path(detections: dict, i: int) -> Path:
    name = detections["images"][i]["file"]
    for p in SAMPLES:
        if p.name == name:
            return p
    raise FileNotFoundError(name)


# --------------------------------------------------------------------------------------------
# The page in headless Chromium
# --------------------------------------------------------------------------------------------


def run_faces_page(
    url: str, out_json: Path, screenshot: Path, *, video: Path | None = None, timeout_s: float = 120
) -> dict:
    """web/tools/run_faces.mjs: the page in headless Chromium (fake webcam `video`); its report."""
    cmd = [
        "node",
        str(WEB / "tools" / "run_faces.mjs"),
        url,
        str(out_json),
        str(screenshot),
        "--chromium",
        str(CHROMIUM),
        "--timeout",
        str(int(timeout_s)),
    ]
    if video is not None:
        cmd += ["--video", str(video)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"run_faces.mjs failed: {proc.stderr.strip()}")
    return json.loads(Path(out_json).read_text())


def save_shots(record: dict, out_dir: Path) -> dict[int, Path]:
    """The page's per-frame overlay snapshots (JPEG data URLs) as files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for code, url in record.get("shots", {}).items():
        name = f"frame{int(code):02d}.jpg" if code.isdigit() else f"{code}.jpg"
        p = out_dir / name
        p.write_bytes(base64.b64decode(url.split(",", 1)[1]))
        paths[int(code) if code.isdigit() else code] = p
    return paths


def filmstrip(paths: list[Path], out: Path, *, width: int = 320, captions: list[str] | None = None) -> Path:
    """Frames side by side, scaled to `width` each, as one PNG."""
    tiles = []
    for k, p in enumerate(paths):
        img = cv2.imread(str(p))
        img = cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])), interpolation=cv2.INTER_AREA)
        if captions:
            cv2.putText(
                img, captions[k], (6, img.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
            )
        tiles.append(img)
    cv2.imwrite(str(out), np.hstack(tiles), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def quat_to_matrix(q_xyzw) -> np.ndarray:
    x, y, z, w = np.asarray(q_xyzw, np.float64) / np.linalg.norm(q_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def angle_deg(r: np.ndarray) -> float:
    """Geodesic angle of a rotation matrix, degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def sqpnp_camera(width: float, height: float, hfov_deg: float) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of an image with a horizontal field of view, principal point at the centre."""
    f = width / 2 / np.tan(np.radians(hfov_deg) / 2)
    return (f, f, width / 2, height / 2)


def sqpnp_pose(
    points_3d: np.ndarray, uv: np.ndarray, cam: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """cv2 SQPnP: (R_cam_layout (3, 3), t (3,)) for pixel landmarks (K, 2)."""
    fx, fy, cx, cy = cam
    k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
    ok, rvec, tvec = cv2.solvePnP(
        points_3d.astype(np.float64), np.ascontiguousarray(uv, np.float64), k, None, flags=cv2.SOLVEPNP_SQPNP
    )
    if not ok:
        raise RuntimeError("cv2 SQPnP failed")
    return cv2.Rodrigues(rvec)[0], tvec.ravel()


def sqpnp(points_3d: np.ndarray, uv: np.ndarray, cam: tuple[float, float, float, float]) -> np.ndarray:
    """cv2 SQPnP's R_cam_layout (3, 3) for pixel landmarks (K, 2)."""
    return sqpnp_pose(points_3d, uv, cam)[0]


def roll_errors(video: RollVideo, frames: dict[int, np.ndarray]) -> list[dict]:
    """For every pair of frames i < j of a segment that both have a rotation (R_cam_layout), the error
    (degrees) of the estimated rotation change against the known roll: angle(R_j R_i^T Rz(theta_j - theta_i)^T)."""
    rows = []
    for seg in range(len(video.segments)):
        codes = [c for c, (s, _) in enumerate(video.frames) if s == seg and c in frames]
        for a, i in enumerate(codes):
            for j in codes[a + 1 :]:
                d = video.frames[j][1] - video.frames[i][1]
                if d == 0:
                    continue
                rz = np.eye(3)
                rz[:2, :2] = roll_matrix(d)
                rows.append(
                    {
                        "segment": seg,
                        "frames": [i, j],
                        "roll_deg": d,
                        "error_deg": angle_deg(frames[j] @ frames[i].T @ rz.T),
                    }
                )
    return rows


def best_face(detections: dict, image: int) -> int:
    """Index of the highest-scoring face of an image (the most reliable one to zoom on)."""
    scores = [f["score"] for f in detections["images"][image]["faces"]]
    return int(np.argmax(scores))


def page_frames(video: RollVideo, record: dict) -> tuple[dict[int, dict], dict[str, int]]:
    """The first processed entry per frame number whose largest face is the zoomed one (near the
    centre), and counts of frames processed, with a face, and with another face."""
    out, other = {}, 0
    for e in record["frames"]:
        c = e["code"]
        if c is None or c in out or not 0 <= c < len(video.frames) or e["face"] is None:
            continue
        x, y, w, h = e["face"]["box"]
        if np.hypot(x + w / 2 - video.width / 2, y + h / 2 - video.height / 2) > 0.25 * video.width:
            other += 1
            continue
        out[c] = e
    seen = {e["code"] for e in record["frames"] if e["code"] is not None}
    return out, {"frames": len(video.frames), "processed": len(seen), "with_face": len(out), "other_face": other}


def score_rolls(video: RollVideo, rotations: dict[str, dict[int, np.ndarray]]) -> dict[str, dict]:
    """Per solver: the roll errors (roll_errors) and their median, p90, mean (degrees)."""
    out = {}
    for name, frames in rotations.items():
        rows = roll_errors(video, frames)
        e = np.array([r["error_deg"] for r in rows] or [np.nan])
        out[name] = {
            "n": len(rows),
            "median_deg": float(np.median(e)),
            "p90_deg": float(np.percentile(e, 90)),
            "mean_deg": float(e.mean()),
            "rows": rows,
        }
    return out


# --------------------------------------------------------------------------------------------
# The whole experiment: fake webcam -> page -> scores
# --------------------------------------------------------------------------------------------


def python_rotations(
    checkpoint: Path,
    points: dict[int, np.ndarray],
    cam: tuple[float, ...],
    size: tuple[int, int],
    refine_iters: int,
    cost: str,
) -> dict[int, np.ndarray]:
    """pnpjax in Python (`pnpjax predict --refine N --refine-cost C`) on the page's landmarks."""
    from pnpjax import camera, checkpoint as ckpt, inference, refine

    solver = ckpt.load(checkpoint)
    codes = sorted(points)
    x = np.stack([points[c] for c in codes]).astype(np.float32)
    noise = refine.noise_model_of(solver.config.realistic)
    y = inference.predict_poses(solver, x, camera.parse_camera([*cam, *size]), refine_iters, cost, noise)
    return {c: quat_to_matrix(q) for c, q in zip(codes, y[:, :4])}


def js_rotations(
    module: Path, points: dict[int, np.ndarray], cam: tuple[float, ...], work: Path, options: dict | None = None
) -> dict[int, np.ndarray]:
    """An exported JS module in Node on the page's landmarks (camera in pixels, OpenCV frame out)."""
    codes = sorted(points)
    inp, out = work / f"{module.parent.name}-in.json", work / f"{module.parent.name}-out.json"
    fx, fy, cx, cy = cam
    inp.write_text(
        json.dumps(
            {
                "landmarks": [points[c].tolist() for c in codes],
                "camera": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
                **({"options": options} if options else {}),
            }
        )
    )
    proc = subprocess.run(
        ["node", str(WEB / "tools" / "js_predict.mjs"), str(module), str(inp), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    res = json.loads(out.read_text())
    frame = res["metadata"]["frame"]
    rots = {}
    for c, p in zip(codes, res["poses"]):
        r = quat_to_matrix(p[:4])
        rots[c] = np.diag([1.0, -1.0, -1.0]) @ r if frame.startswith("OpenGL") else r
    return rots


def webcam_experiment(
    work: Path,
    *,
    detections: dict,
    angles_deg: list[float],
    checkpoint: Path,
    module: Path,
    fps: int = 5,
    hfov_deg: float = 60.0,
    distance_cm: float = 60.0,
    refine_iters: int = 5,
    costs: tuple[str, ...] = ("image", "ml"),
    timeout_s: float = 120,
    query: dict | None = None,
) -> dict:
    """Make the roll video from the best face of each image of `detections` (detect_faces on
    sample photos), run web/demo/faces.html on it in headless Chromium with `module` (a faceapi10
    JS export, served at /models/<its dir>/<its name>), then score the rotation changes of every
    solver on the page's landmarks. Returns everything measured."""
    from urllib.parse import urlencode

    from pnpjax import layouts

    work.mkdir(parents=True, exist_ok=True)
    det = detections
    faces = [(k, best_face(det, k)) for k in range(len(det["images"]))]
    video, _ = make_roll_video(
        work / "roll.y4m", det, faces=faces, angles_deg=angles_deg, fps=fps, hfov_deg=hfov_deg, distance_cm=distance_cm
    )
    server = WebServer(module.parent.parent)
    try:
        q = {
            "framecode": 1,
            "frames": len(video.frames),
            "fov": hfov_deg,
            "js": f"/models/{module.parent.name}/{module.name}",
            **(query or {}),
        }
        report = run_faces_page(
            server.url + "demo/faces.html?" + urlencode(q),
            work / "page.json",
            work / "page.png",
            video=video.path,
            timeout_s=timeout_s,
        )
    finally:
        server.close()
    record = report["record"]
    frames, counts = page_frames(video, record)
    points = {c: np.asarray(e["face"]["points"], np.float64) for c, e in frames.items()}
    layout = layouts.FACEAPI10
    pts3d = np.asarray(layout.points, np.float64)
    cam = video.camera
    rotations = {
        "pnpjax JS module in the page": {c: quat_to_matrix(e["face"]["pose"]["quaternion"]) for c, e in frames.items()},
        "cv2 SQPnP": {c: sqpnp(pts3d, p, cam) for c, p in points.items()},
    }
    if points:
        for cost in costs:
            rotations[f"pnpjax Python, refine {refine_iters} ({cost})"] = python_rotations(
                checkpoint, points, cam, (video.width, video.height), refine_iters, cost
            )
    scores = score_rolls(video, rotations)
    ms = np.array([[e["ms"]["detect"], e["ms"]["solve"], e["ms"]["total"]] for e in record["frames"]])
    return {
        "roll": video,
        "video": dataclasses.asdict(video) | {"path": video.path.name, "camera": cam},
        "counts": counts,
        "report": {k: v for k, v in report.items() if k != "record"},
        "config": record["config"],
        "errors": record["errors"],
        "record": record,
        "frames": frames,
        "points": points,
        "scores": scores,
        "ms": {
            "detect_median": float(np.median(ms[:, 0])),
            "solve_median": float(np.median(ms[:, 1])),
            "total_median": float(np.median(ms[:, 2])),
            "total_mean": float(ms[:, 2].mean()),
            "fps_median": float(1000 / np.median(ms[:, 2])),
            "n": len(ms),
        },
    }


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def mapping_figure(detections: dict, image: int, face: int, out: Path, *, size: int = 480) -> Path:
    """A face crop with face-api.js's 68 landmarks numbered and faceapi10's points named (its detector indices)."""
    from pnpjax import layouts

    layout = layouts.FACEAPI10
    src = cv2.imread(str(_image_path(detections, image)))
    lm = np.asarray(detections["images"][image]["faces"][face]["landmarks"], np.float64)
    lo, hi = lm.min(0), lm.max(0)
    centre, half = (lo + hi) / 2, 0.75 * max(hi - lo)
    scale = size / (2 * half)
    m = np.array([[scale, 0, size / 2 - scale * centre[0]], [0, scale, size / 2 - scale * centre[1]]])
    img = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    img = cv2.addWeighted(img, 0.6, np.full_like(img, 255), 0.4, 0)
    p = lm * scale + m[:, 2]
    for i, (x, y) in enumerate(p):
        cv2.circle(img, (round(x), round(y)), 2, (60, 60, 60), -1, cv2.LINE_AA)
        cv2.putText(
            img, str(i), (round(x) + 3, round(y) - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (40, 40, 40), 1, cv2.LINE_AA
        )
    panel = np.full((size, 300, 3), 255, np.uint8)
    cv2.putText(
        panel, "faceapi10 point = face-api.js index", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
    )
    for k, (name, i) in enumerate(zip(layout.point_names, layout.detector.indices)):
        x, y = p[i]
        cv2.circle(img, (round(x), round(y)), 6, (0, 128, 255), 2, cv2.LINE_AA)
        cv2.putText(
            img, str(k), (round(x) - 16, round(y) + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 70, 200), 2, cv2.LINE_AA
        )
        cv2.putText(
            panel, f"{k}: {name} = {i}", (8, 56 + 24 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 70, 200), 1, cv2.LINE_AA
        )
    cv2.putText(
        panel,
        "(left/right: as seen in the image)",
        (8, 56 + 24 * 10 + 8),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.42,
        (80, 80, 80),
        1,
        cv2.LINE_AA,
    )
    cv2.imwrite(str(out), np.hstack([img, panel]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


def facing_counts(detections: dict, hfov_deg: float = 60.0) -> dict[str, int]:
    """Faces that cv2 SQPnP turns towards the camera (forward axis within 60 degrees of the line of
    sight) with faceapi10's detector indices and with left and right swapped."""
    from pnpjax import layouts

    pts = np.asarray(layouts.FACEAPI10.points, np.float64)
    idx = list(layouts.FACEAPI10.detector.indices)
    variants = {"faceapi10 indices": idx, "left/right swapped": [idx[i] for i in (0, 1, 3, 2, 6, 7, 4, 5, 9, 8)]}
    out = {"faces": len(detections["landmarks"])}
    for name, sel in variants.items():
        n = 0
        for row, lm in zip(detections["faces"], np.asarray(detections["landmarks"], np.float64)):
            image = detections["images"][row["image"]]
            r, t = sqpnp_pose(pts, lm[sel], sqpnp_camera(image["width"], image["height"], hfov_deg))
            n += bool(r[:, 2] @ (-t / np.linalg.norm(t)) > np.cos(np.radians(60)))
        out[name] = n
    return out


# --------------------------------------------------------------------------------------------
# The report (experiments/faces_webcam.py)
# --------------------------------------------------------------------------------------------

ROLL_ANGLES = [0, 8, 16, 24, -8, -16, -24]


def faces_report(
    out: Path,
    work: Path,
    *,
    images: list[int],
    angles_deg: list[float],
    command: str,
    refine_iters: int = 5,
    distance_cm: float = 60.0,
    cpu_frames: int = 6,
    filmstrip_frames: list[int] | None = None,
) -> dict:
    """Every figure of issue 11 in `out` (README.md, results.json, PNGs): the index mapping on the
    photos, the roll test in headless Chromium (wasm backend; frame rate also on the cpu backend),
    photo mode."""
    import os
    import time
    from urllib.parse import urlencode

    from pnpjax import checkpoint, export, jsmodule

    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = REPO / "checkpoints" / "faceapi10"
    solver = checkpoint.load(ckpt)
    modules = {}
    for quant in ("uint8", "float32"):
        modules[quant] = work / "models" / f"faceapi10-{quant}" / "pnp.js"
        export.export_solver(
            solver,
            "js",
            modules[quant].parent,
            quantize=quant,
            source="checkpoints/faceapi10",
            force=True,
            tracker=True,
        )
    load = {"before": os.getloadavg()}
    # 1. The index mapping on every face of the photos.
    t = time.perf_counter()
    det = detect_faces([SAMPLES[i] for i in images], work / "samples.json")
    detect_s = time.perf_counter() - t
    facing = facing_counts(det)
    best = max(range(len(det["images"])), key=lambda k: det["images"][k]["faces"][best_face(det, k)]["score"])
    mapping_figure(det, best, best_face(det, best), out / "mapping.png")
    # 2. The roll video in the page (wasm), scored against cv2 SQPnP on the same landmarks.
    res = webcam_experiment(
        work / "wasm",
        detections=det,
        angles_deg=angles_deg,
        checkpoint=ckpt,
        module=modules["uint8"],
        refine_iters=refine_iters,
        distance_cm=distance_cm,
        timeout_s=300,
    )
    cam = tuple(res["video"]["camera"])
    node_rows = {
        "pnpjax JS module uint8, network alone (Node, same landmarks)": js_rotations(
            modules["uint8"], res["points"], cam, work, options={"refine": 0}
        ),
        "pnpjax JS module float32, its default refinement (Node, same landmarks)": js_rotations(
            modules["float32"], res["points"], cam, work
        ),
    }
    scores = res["scores"] | score_rolls(res["roll"], node_rows)
    shots = save_shots(res["record"], work / "shots")
    codes = filmstrip_frames or sorted(
        (c for c, (s, a) in enumerate(res["roll"].frames) if s == 0 and a in (-24, -16, 0, 16, 24)),
        key=lambda c: res["roll"].frames[c][1],
    )
    codes = [c for c in codes if c in shots]
    filmstrip(
        [shots[c] for c in codes],
        out / "filmstrip.png",
        width=200,
        captions=[f"roll {res['roll'].frames[c][1]:+.0f} deg" for c in codes],
    )
    # 3. Frame rate on the cpu backend (a few frames).
    cpu = webcam_experiment(
        work / "cpu",
        detections=det,
        angles_deg=angles_deg,
        checkpoint=ckpt,
        module=modules["uint8"],
        distance_cm=distance_cm,
        costs=(),
        timeout_s=300,
        query={"backend": "cpu", "frames": cpu_frames},
    )
    # 4. The tiny 68-landmark net (wasm): speed and accuracy against the full one.
    tiny = webcam_experiment(
        work / "tiny",
        detections=det,
        angles_deg=angles_deg,
        checkpoint=ckpt,
        module=modules["uint8"],
        refine_iters=refine_iters,
        distance_cm=distance_cm,
        costs=("ml",),
        timeout_s=300,
        query={"landmarks": "tiny"},
    )
    # 5. Photo mode on one sample photo.
    server = WebServer(modules["uint8"].parent.parent)
    try:
        q = {
            "mode": "photo",
            "photo": f"/node_modules/@vladmandic/face-api/demo/{SAMPLES[images[best]].name}",
            "js": "/models/faceapi10-uint8/pnp.js",
        }
        photo = run_faces_page(
            server.url + "demo/faces.html?" + urlencode(q), work / "photo.json", work / "photo.png", timeout_s=300
        )
    finally:
        server.close()
    shutil.copy(save_shots(photo["record"], work / "photo")["photo"], out / "photo.jpg")
    load["after"] = os.getloadavg()
    summary = {
        "command": command,
        "load_average": load,
        "detect_faces_seconds": detect_s,
        "facing": facing,
        "video": {k: v for k, v in res["video"].items() if k != "frames"} | {"angles_deg": angles_deg},
        "counts": res["counts"],
        "offsite_requests": res["report"]["offsite"]
        + cpu["report"]["offsite"]
        + tiny["report"]["offsite"]
        + photo["offsite"],
        "page_config": res["config"],
        "scores": {k: {m: v[m] for m in ("n", "median_deg", "p90_deg", "mean_deg")} for k, v in scores.items()},
        "runs": [
            {
                "config": r["config"],
                "ms": r["ms"],
                "counts": r["counts"],
                "median_deg": {k: v["median_deg"] for k, v in r["scores"].items()},
                "pairs": r["scores"]["cv2 SQPnP"]["n"],
            }
            for r in (res, cpu, tiny)
        ],
        "photo": {"faces": len(photo["record"]["photo"]["faces"]), "ms": photo["record"]["photo"]["ms"]},
        "refine_iters": refine_iters,
        "module_refine": [jsmodule.DEFAULT_REFINE_ITERS, jsmodule.DEFAULT_REFINE_COST],
        "distance_cm": distance_cm,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    (out / "README.md").write_text(_report_markdown(summary))
    return summary


def _report_markdown(s: dict) -> str:
    from experiments.lib import report

    v, c, sc = s["video"], s["counts"], s["scores"]
    sq = sc["cv2 SQPnP"]["median_deg"]
    lines = [
        "# Real faces: face-api.js -> pnpjax in headless Chromium with a fake webcam",
        "",
        f"Generated by `{s['command']}` (load average {s['load_average']['before'][0]:.1f} before, "
        f"{s['load_average']['after'][0]:.1f} after, on this 2-core CPU).",
        "",
        "## The index mapping (faceapi10 <- face-api.js's 68 points)",
        "",
        f"cv2 SQPnP (60° FOV) turns {s['facing']['faceapi10 indices']} of {s['facing']['faces']} detected faces "
        f"of the sample photos towards the camera with faceapi10's indices, {s['facing']['left/right swapped']} "
        "with left and right swapped. [mapping.png](mapping.png) draws them on a face.",
        "",
        "![mapping](mapping.png)",
        "",
        "## The fake webcam: a photo turned about the frame centre (= a camera roll)",
        "",
        f"{len(v['segments'])} faces ({', '.join(v['segments'])}), each zoomed so that its outer eye corners sit "
        f"{s['distance_cm']:g} cm away at {v['hfov_deg']:.0f}° horizontal FOV in {v['width']}x{v['height']}, turned by "
        f"{', '.join(f'{a:+g}' for a in v['angles_deg'])}° ({c['frames']} frames at {v['fps']} fps, .y4m). "
        f"The page processed {c['processed']} frames, found the zoomed face on {c['with_face']} "
        f"(another face was the largest on {c['other_face']}). Error of the estimated rotation change between two "
        "frames of the same face against the known roll, over every pair (degrees):",
        "",
        report.md_table(
            ["solver (same landmarks)", "pairs", "median", "p90", "mean", "median / SQPnP's"],
            [
                [
                    name,
                    r["n"],
                    f"{r['median_deg']:.2f}",
                    f"{r['p90_deg']:.2f}",
                    f"{r['mean_deg']:.2f}",
                    f"{r['median_deg'] / sq:.2f}",
                ]
                for name, r in sc.items()
            ],
        ),
        "",
        "The JS module in the page is `pnpjax export --format js` of `checkpoints/faceapi10` with its defaults "
        f"(uint8 weights, {s['module_refine'][0]} Levenberg-Marquardt step{'' if s['module_refine'][0] == 1 else 's'} on the `{s['module_refine'][1]}` cost "
        "after the network);",
        f'"pnpjax Python, refine {s["refine_iters"]}" is `pnpjax predict --refine {s["refine_iters"]} '
        "--refine-cost C` on the landmarks the page used.",
        "",
        "## Frame rate of the whole pipeline in headless Chromium",
        "",
        "Per processed frame: draw the video frame, face-api.js (tiny face detector 320 + 68 landmarks), "
        "select, solve, draw the overlay.",
        "",
        report.md_table(
            [
                "TF.js backend",
                "68-landmark net",
                "frames",
                "detect median ms",
                "solve median ms",
                "total median ms",
                "frames / s (1000 / median)",
                "pairs",
                "SQPnP median error °",
                "page's JS module median error °",
            ],
            [
                [
                    r["config"]["backend"],
                    r["config"]["landmarks"],
                    r["ms"]["n"],
                    f"{r['ms']['detect_median']:.0f}",
                    f"{r['ms']['solve_median']:.2f}",
                    f"{r['ms']['total_median']:.0f}",
                    f"{r['ms']['fps_median']:.1f}",
                    r["pairs"],
                    f"{r['median_deg']['cv2 SQPnP']:.2f}",
                    f"{r['median_deg']['pnpjax JS module in the page']:.2f}",
                ]
                for r in s["runs"]
            ],
        ),
        "",
        "(The cpu run stops after a few frames, so it has few or no pairs of frames of one face to score.)",
        "",
        f"Requests that left 127.0.0.1: {len(s['offsite_requests'])}.",
        "",
        "![filmstrip](filmstrip.png)",
        "",
        f"Photo mode ({s['photo']['faces']} faces found, tiny face detector at 608): ![photo](photo.jpg)",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Scoring detections on image files (experiments/score_detections.py)
# --------------------------------------------------------------------------------------------


def reprojection_rmse(points_3d: np.ndarray, uv: np.ndarray, r: np.ndarray, t: np.ndarray, cam) -> float:
    """RMS distance (pixels) between landmarks and the layout projected with pose (r, t)."""
    fx, fy, cx, cy = cam
    x = points_3d @ r.T + t
    proj = np.stack([fx * x[:, 0] / x[:, 2] + cx, fy * x[:, 1] / x[:, 2] + cy], -1)
    return float(np.sqrt(np.mean(np.sum((proj - uv) ** 2, -1))))


def score_detections(
    detections: dict, checkpoint: Path, *, hfov_deg: float = 60.0, refine_iters: int = 5, cost: str = "ml"
) -> dict:
    """pnpjax (network, and + refinement) against cv2 SQPnP on every face of detect_faces.mjs output:
    rotation difference to SQPnP (degrees), reprojection RMSE of each (pixels and % of the outer-eye
    distance), and whether each turns the face towards the camera. No ground truth: SQPnP is the anchor."""
    from pnpjax import camera, checkpoint as ckpt, detectors, inference, refine

    solver = ckpt.load(checkpoint)
    layout = solver.layout
    if layout.detector is None or layout.detector.name != detections.get("detector"):
        raise ValueError(f"the checkpoint's layout {layout.name} does not take {detections.get('detector')} landmarks")
    pts = np.asarray(layout.points, np.float64)
    lm = np.asarray(detections["landmarks"], np.float64)
    x = detectors.select(lm, layout)
    noise = refine.noise_model_of(solver.config.realistic)
    rows = []
    by_size: dict[tuple[int, int], list[int]] = {}
    for n, row in enumerate(detections["faces"]):
        image = detections["images"][row["image"]]
        by_size.setdefault((image["width"], image["height"]), []).append(n)
    poses: dict[str, dict[int, np.ndarray]] = {"network": {}, f"refine {refine_iters} ({cost})": {}}
    for (w, h), idx in by_size.items():
        cam = camera.parse_camera(f"hfov={hfov_deg},{w}x{h}")
        for name, iters in (("network", 0), (f"refine {refine_iters} ({cost})", refine_iters)):
            y = inference.predict_poses(solver, x[idx].astype(np.float32), cam, iters, cost, noise)
            poses[name].update(dict(zip(idx, y)))
    for n, row in enumerate(detections["faces"]):
        image = detections["images"][row["image"]]
        cam = sqpnp_camera(image["width"], image["height"], hfov_deg)
        eyes = float(np.linalg.norm(lm[n, LEFT_EYE_OUTER] - lm[n, RIGHT_EYE_OUTER]))
        r_sq, t_sq = sqpnp_pose(pts, x[n], cam)
        out = {
            "image": image["file"],
            "face": row["face"],
            "eyes_px": eyes,
            "cv2 SQPnP": {
                "reproj_px": reprojection_rmse(pts, x[n], r_sq, t_sq, cam),
                "depth": float(t_sq[2]),
                "facing_deg": float(np.degrees(np.arccos(np.clip(r_sq[:, 2] @ (-t_sq / np.linalg.norm(t_sq)), -1, 1)))),
            },
        }
        for name, p in poses.items():
            r, t = quat_to_matrix(p[n][:4]), np.asarray(p[n][4:], np.float64)
            out[name] = {
                "reproj_px": reprojection_rmse(pts, x[n], r, t, cam),
                "depth": float(t[2]),
                "rot_vs_sqpnp_deg": angle_deg(r @ r_sq.T),
                "facing_deg": float(np.degrees(np.arccos(np.clip(r[:, 2] @ (-t / np.linalg.norm(t)), -1, 1)))),
            }
        rows.append(out)
    summary = {}
    for name in ("cv2 SQPnP", *poses):
        reproj = np.array([r[name]["reproj_px"] / r["eyes_px"] * 100 for r in rows])
        s = {
            "faces": len(rows),
            "reproj_median_pct_eyes": float(np.median(reproj)),
            "facing_camera": int(sum(r[name]["facing_deg"] < 60 for r in rows)),
        }
        if name != "cv2 SQPnP":
            s["rot_vs_sqpnp_median_deg"] = float(np.median([r[name]["rot_vs_sqpnp_deg"] for r in rows]))
        summary[name] = s
    return {"checkpoint": str(checkpoint.name), "hfov_deg": hfov_deg, "summary": summary, "faces": rows}
