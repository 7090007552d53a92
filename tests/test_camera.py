"""pnpjax.camera: projection against cv2.projectPoints, round trips, and the seed/OpenGL adapters."""

from __future__ import annotations

import math

import cv2
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pnpjax import camera, geometry, layouts
from pnpjax.camera import Camera, CameraError

PTS = layouts.BLAZEFACE6.array.astype(np.float64)  # (6, 3) cm


def posed_in_front(seed: int, n: int, depth=(30.0, 120.0)) -> tuple[Rotation, np.ndarray]:
    """n random OpenCV-frame poses that put the layout in front of the camera."""
    rng = np.random.default_rng(seed)
    r = Rotation.random(n, random_state=seed)
    z = rng.uniform(*depth, n)
    t = np.stack([rng.uniform(-0.3, 0.3, n) * z, rng.uniform(-0.3, 0.3, n) * z, z], -1)
    return r, t


@pytest.mark.usefixtures("x64")
def test_project_pixels_matches_cv2_projectPoints():
    cam = Camera(612.3, 598.7, 331.2, 236.9, 640, 480)
    r, t = posed_in_front(0, 16)
    uv = np.asarray(camera.project_pixels(geometry.transform_points(r.as_matrix(), t, PTS), cam.intrinsics))
    for i in range(len(t)):
        ref, _ = cv2.projectPoints(PTS, r[i].as_rotvec(), t[i], cam.matrix, None)
        np.testing.assert_allclose(uv[i], ref[:, 0, :], atol=1e-9)


@pytest.mark.usefixtures("x64")
def test_per_sample_intrinsics_match_cv2():
    """A (B, 4) intrinsics array applies one camera per sample to (B, K, 2) points."""
    r, t = posed_in_front(1, 5)
    cams = [
        Camera.from_hfov(h, w, ht)
        for h, w, ht in [(40, 640, 480), (60, 1280, 720), (75, 480, 480), (90, 720, 1280), (55, 480, 640)]
    ]
    intr = np.stack([c.intrinsics for c in cams])
    uv = np.asarray(camera.project_pixels(geometry.transform_points(r.as_matrix(), t, PTS), intr))
    for i, c in enumerate(cams):
        ref, _ = cv2.projectPoints(PTS, r[i].as_rotvec(), t[i], c.matrix, None)
        np.testing.assert_allclose(uv[i], ref[:, 0, :], atol=1e-9)


@pytest.mark.usefixtures("x64")
def test_project_unproject_round_trips():
    rng = np.random.default_rng(2)
    cam = Camera(800.0, 780.0, 300.0, 250.0, 640, 480)
    xy = rng.uniform(-0.6, 0.6, (7, 6, 2))
    uv = camera.normalized_to_pixels(xy, cam.intrinsics)
    np.testing.assert_allclose(camera.pixels_to_normalized(uv, cam.intrinsics), xy, atol=1e-14)
    uv2 = rng.uniform(0, 640, (7, 6, 2))
    np.testing.assert_allclose(
        camera.normalized_to_pixels(camera.pixels_to_normalized(uv2, cam.intrinsics), cam.intrinsics), uv2, atol=1e-10
    )
    # Per-sample intrinsics (B, 4) with (B, K, 2) points.
    intr = np.stack([cam.intrinsics * s for s in rng.uniform(0.5, 2, 7)])
    uv3 = camera.normalized_to_pixels(xy, intr)
    np.testing.assert_allclose(uv3[3], camera.normalized_to_pixels(xy[3], intr[3]), atol=1e-12)
    np.testing.assert_allclose(camera.pixels_to_normalized(uv3, intr), xy, atol=1e-14)
    # Unprojection: normalised coords times depth are the camera-frame points again.
    r, t = posed_in_front(3, 4)
    X = np.asarray(geometry.transform_points(r.as_matrix(), t, PTS))
    xy4 = camera.pixels_to_normalized(camera.project_pixels(X, cam.intrinsics), cam.intrinsics)
    np.testing.assert_allclose(np.concatenate([xy4 * X[..., 2:], X[..., 2:]], -1), X, atol=1e-10)


def test_project_clamps_depth_behind_camera():
    p = jnp.array([[1.0, 2.0, 0.0], [1.0, 2.0, -5.0], [1.0, 2.0, 4.0]])
    xy = np.asarray(camera.project(p))
    assert np.all(np.isfinite(xy))
    np.testing.assert_allclose(xy[2], [0.25, 0.5])


def seed_project(q_gl: np.ndarray, t_gl: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """The original's projection, literally: u = X/Z + 0.5, v = Y/Z + 0.5, then 1 - u, 1 - v."""
    P = Rotation.from_quat(q_gl).as_matrix() @ pts.T + t_gl[:, None]  # (3, K), OpenGL-like frame
    u, v = P[0] / P[2] + 0.5, P[1] / P[2] + 0.5
    return np.stack([1 - u, 1 - v], -1)


def seed_poses(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Poses like the original's: Euler within 60 degrees, the camera looking down -z."""
    rng = np.random.default_rng(seed)
    q = Rotation.from_euler("xyz", rng.uniform(-np.pi / 3, np.pi / 3, (n, 3))).as_quat()
    t = np.stack([rng.uniform(-5, 5, n), rng.uniform(-5, 5, n), rng.uniform(-80, -30, n)], -1)
    return q, t


@pytest.mark.usefixtures("x64")
def test_seed_projection_agrees_with_opencv_through_the_adapters():
    q_gl, t_gl = seed_poses(4, 12)
    q_cv, t_cv = camera.pose_gl_to_opencv(q_gl, t_gl)
    K = camera.SEED_CAMERA.matrix
    for i in range(len(t_gl)):
        uv_seed = seed_project(q_gl[i], t_gl[i], PTS)
        assert np.all((uv_seed > 0) & (uv_seed < 1))  # sanity: the poses are in the seed's frame
        uv_px = np.asarray(
            camera.project_pixels(
                geometry.transform_points(geometry.quat_to_matrix(q_cv[i]), t_cv[i], PTS), camera.SEED_CAMERA.intrinsics
            )
        )
        np.testing.assert_allclose(camera.seed_to_pixels(uv_seed), uv_px, atol=1e-12)
        np.testing.assert_allclose(camera.pixels_to_seed(uv_px), uv_seed, atol=1e-12)
        ref, _ = cv2.projectPoints(
            PTS, Rotation.from_quat(np.asarray(q_cv[i])).as_rotvec(), np.asarray(t_cv[i]), K, None
        )
        np.testing.assert_allclose(uv_px, ref[:, 0, :], atol=1e-12)
    # What the network sees is the same either way.
    xy_from_seed = camera.pixels_to_normalized(
        camera.seed_to_pixels(seed_project(q_gl[0], t_gl[0], PTS)), camera.SEED_CAMERA.intrinsics
    )
    xy_cv = camera.project(geometry.transform_points(geometry.quat_to_matrix(q_cv[0]), t_cv[0], PTS))
    np.testing.assert_allclose(xy_from_seed, xy_cv, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_pose_adapters_are_inverse_and_flip_y_z():
    q_gl, t_gl = seed_poses(5, 32)
    q_cv, t_cv = camera.pose_gl_to_opencv(q_gl, t_gl)
    F = np.diag([1.0, -1.0, -1.0])
    np.testing.assert_allclose(geometry.quat_to_matrix(q_cv), F @ Rotation.from_quat(q_gl).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(t_cv, t_gl * [1, -1, -1], atol=0)
    assert np.all(np.asarray(q_cv)[:, 3] >= 0)
    q_back, t_back = camera.pose_opencv_to_gl(q_cv, t_cv)
    np.testing.assert_allclose(q_back, geometry.quat_canonical(q_gl), atol=1e-12)
    np.testing.assert_allclose(t_back, t_gl, atol=0)
    # The pose of a GL-frame point cloud is the pose of the OpenCV-frame one: X_cv = F X_gl.
    X_gl = geometry.transform_points(Rotation.from_quat(q_gl).as_matrix(), t_gl, PTS)
    X_cv = geometry.transform_points(geometry.quat_to_matrix(q_cv), t_cv, PTS)
    np.testing.assert_allclose(X_cv, np.asarray(X_gl) * [1, -1, -1], atol=1e-12)


def test_seed_to_pixels_is_an_involution():
    uv = np.random.default_rng(6).uniform(-0.1, 1.1, (3, 6, 2))
    np.testing.assert_allclose(camera.pixels_to_seed(camera.seed_to_pixels(uv)), uv, atol=1e-7)
    np.testing.assert_allclose(camera.seed_to_pixels(uv)[..., 1], 1 - uv[..., 1], atol=1e-7)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("seed", None),
        (" Seed ", None),
        (None, None),
        ("500,510,320,240,640,480", Camera(500, 510, 320, 240, 640, 480)),
        (" 500, 510 ,320,240,640,480 ", Camera(500, 510, 320, 240, 640, 480)),
        ([500, 510, 320, 240, 640, 480], Camera(500, 510, 320, 240, 640, 480)),
        ("hfov=90,640x480", Camera(320, 320, 320, 240, 640, 480)),
        ("HFOV=60,1280x720", Camera.from_hfov(60, 1280, 720)),
        (Camera(1, 1, 0.5, 0.5, 1, 1), Camera(1, 1, 0.5, 0.5, 1, 1)),
    ],
)
def test_parse_camera_good(spec, expected):
    got = camera.parse_camera(spec)
    if expected is None:
        assert got is None
    else:
        np.testing.assert_allclose(dataclasses_tuple(got), dataclasses_tuple(expected), rtol=1e-12)


def dataclasses_tuple(c: Camera) -> tuple:
    return (c.fx, c.fy, c.cx, c.cy, c.width, c.height)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "opencv",
        "1,2,3",
        "1,2,3,4,5,6,7",
        "500,500,320,240,640,x",
        "0,500,320,240,640,480",
        "-500,500,320,240,640,480",
        "500,500,320,240,0,480",
        "nan,500,320,240,640,480",
        "inf,500,320,240,640,480",
        "hfov=60",
        "hfov=abc,640x480",
        "hfov=60,640",
        "hfov=60,640x480x3",
        "hfov=0,640x480",
        "hfov=180,640x480",
        "hfov=-60,640x480",
        "hfov=nan,640x480",
        "hfov=60,0x480",
        [1, 2, 3],
        ["a"] * 6,
    ],
)
def test_parse_camera_bad(spec):
    with pytest.raises(CameraError) as e:
        camera.parse_camera(spec)
    assert "\n" not in str(e.value) and str(e.value)


def test_camera_from_hfov():
    for hfov, w, h in [(40, 640, 480), (60, 1280, 720), (90, 480, 640), (120, 100, 100)]:
        c = Camera.from_hfov(hfov, w, h)
        assert c.fx == c.fy and (c.cx, c.cy) == (w / 2, h / 2) and (c.width, c.height) == (w, h)
        # The image's left and right edges are hfov/2 either side of the optical axis.
        xy_edge = camera.pixels_to_normalized(np.array([[w, h / 2], [0, h / 2]]), c.intrinsics)
        np.testing.assert_allclose(np.degrees(np.arctan(np.asarray(xy_edge)[:, 0])), [hfov / 2, -hfov / 2], rtol=1e-6)
    np.testing.assert_allclose(Camera.from_hfov(90, 640, 480).fx, 320.0)
    np.testing.assert_allclose(Camera.from_hfov(60, 640, 480).fx, 320 / math.tan(math.radians(30)))


def test_camera_properties_and_validation():
    c = Camera(500, 510, 320, 240, 640, 480)
    np.testing.assert_array_equal(c.intrinsics, [500, 510, 320, 240])
    np.testing.assert_array_equal(c.matrix, [[500, 0, 320], [0, 510, 240], [0, 0, 1]])
    assert c.to_dict() == dict(fx=500, fy=510, cx=320, cy=240, width=640, height=480)
    for bad in [(0, 1, 0, 0, 1, 1), (1, 1, 0, 0, 1, -1), (1, float("nan"), 0, 0, 1, 1), (1, 1, float("inf"), 0, 1, 1)]:
        with pytest.raises(CameraError):
            Camera(*bad)
    # The seed camera: a 1 x 1 image, focal one image side, principal point at the centre.
    assert dataclasses_tuple(camera.SEED_CAMERA) == (1, 1, 0.5, 0.5, 1, 1)
