"""The demo page (web/demo/) in headless Chromium, and the local file server (web/tools/serve.mjs).

The page loads an exported JS module and TF.js model, makes landmarks from a slider pose, runs
both runtimes and prints the poses; the test recomputes them with JAX from the printed (float32)
landmarks. Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from experiments.lib.node import WebServer
from pnpjax import export
from helpers import ATOL, PIXEL_CAMERA, assert_float32_accurate, assert_matches_jax, random_solver

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
GRAPH_RECIPE = ("centroid", "ray", "canonical")  # issue 13's recipe: exported as a TF.js graph model

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make chromium)")


@pytest.fixture(scope="module")
def solvers():
    from test_tfjs_graph import recipe_solver

    return {"seed": random_solver(), "pixels": random_solver(seed=5), "graph": recipe_solver(GRAPH_RECIPE)}


@pytest.fixture(scope="module")
def server(tmp_path_factory, solvers):
    """Exports (float32) of a seed-camera and a pixel-camera solver, served with web/."""
    models = tmp_path_factory.mktemp("models")
    export.export_solver(solvers["seed"], "js", models / "seed" / "js", refine_iters=0)  # compared with TF.js
    export.export_solver(solvers["seed"], "tfjs", models / "seed" / "tfjs")
    export.export_solver(solvers["pixels"], "js", models / "pixels" / "js", camera=PIXEL_CAMERA, refine_iters=0)
    export.export_solver(solvers["pixels"], "tfjs", models / "pixels" / "tfjs", camera=PIXEL_CAMERA)
    export.export_solver(solvers["graph"], "tfjs", models / "graph" / "tfjs")  # a TF.js graph model
    (models / "outside").symlink_to("/etc")  # a symlink out of a served directory is not followed
    if shutil.which("node") is None:
        pytest.skip("Node.js (`node`) is not installed")
    s = WebServer(models)
    yield s
    s.close()


@needs_node
@pytest.mark.node
def test_server_serves_web_and_models_only(server):
    status, body = server.get("/demo/")
    assert status == 200 and b'<pre id="pose">' in body
    assert server.get("/models/seed/js/pnp.js")[0] == 200
    assert server.get("/node_modules/@tensorflow/tfjs/dist/tf.min.js")[0] == 200
    for path in [
        "/models/../../../etc/passwd",
        "/../../etc/passwd",
        "/models/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/models/outside/passwd",
        "/demo/nope.js",
        "/%E0%A4%A",
    ]:
        assert server.get(path)[0] == 404, path


def run_page(server, name: str, **query) -> dict:
    ARTIFACTS.mkdir(exist_ok=True)
    out, shot = ARTIFACTS / f"{name}.json", ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    url = server.url + "demo/?" + urlencode(query)
    proc = subprocess.run(
        ["node", str(WEB / "tools" / "run_demo.mjs"), url, str(out), str(shot), "--chromium", str(CHROMIUM)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["pageErrors"] == [] and report["console"] == [] and report["failedRequests"] == [], report
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    return report["pose"]


@needs_node
@needs_chromium
@pytest.mark.node
@pytest.mark.chromium
@pytest.mark.parametrize(
    "cam_name, sliders",
    [
        ("seed", {"yaw": 25, "pitch": -15, "roll": 8, "distance": 45, "x": 3, "y": -2}),
        ("pixels", {"yaw": -35, "pitch": 20, "roll": -10, "distance": 70, "x": -4, "y": 5}),
    ],
)
def test_demo_page_runs_both_runtimes_like_jax(server, solvers, cam_name, sliders):
    cam = None if cam_name == "seed" else PIXEL_CAMERA
    pose = run_page(
        server,
        f"demo-{cam_name}",
        js=f"/models/{cam_name}/js/pnp.js",
        tfjs=f"/models/{cam_name}/tfjs/model.json",
        **sliders,
    )
    assert pose["camera"] == cam_name and pose["layout"] == "blazeface6"
    assert pose["sliders"] == sliders
    uv = np.asarray(pose["landmarks"], np.float64)
    assert uv.shape == (6, 2) and np.array_equal(uv.astype(np.float32), uv)  # float32 values, printed exactly
    # The page projects the slider pose with the export camera: the landmarks are that projection.
    truth_q, truth_t = np.asarray(pose["truth"]["quaternion"]), np.asarray(pose["truth"]["translation"])
    expected_t = [sliders["x"], sliders["y"], -sliders["distance"]]
    assert np.allclose(truth_t, expected_t if cam is None else np.multiply(expected_t, [1, -1, -1]))
    assert np.isclose(np.linalg.norm(truth_q), 1.0)
    for runtime in ("js", "tfjs"):
        got = pose[runtime]
        assert "error" not in got, got
        y = np.asarray([got["quaternion"] + got["translation"]], np.float64)
        assert_matches_jax(y, solvers[cam_name], uv.astype(np.float32)[None], cam)
    assert pose["tfjs"]["backend"] == "cpu"
    assert np.abs(np.asarray(pose["js"]["quaternion"]) - pose["tfjs"]["quaternion"]).max() <= ATOL


@needs_node
@needs_chromium
@pytest.mark.node
@pytest.mark.chromium
def test_demo_page_runs_a_graph_model_like_jax(server, solvers):
    """The page loads a `--format tfjs` graph model (centroid + ray + roll) with the same code as a
    layers model (`loadPnpjaxModel`) and TF.js in Chromium returns JAX's pose."""
    sliders = {"yaw": 20, "pitch": 10, "roll": -25, "distance": 40, "x": -3, "y": 4}
    pose = run_page(server, "demo-graph", js="none", tfjs="/models/graph/tfjs/model.json", **sliders)
    assert pose["camera"] == "seed" and pose["layout"] == "blazeface6"
    got = pose["tfjs"]
    assert "error" not in got and got["backend"] == "cpu", got
    uv = np.asarray(pose["landmarks"], np.float32)[None]
    assert np.isclose(np.linalg.norm(got["raw"][:4]), 1.0, atol=1e-6)  # a graph model's quaternion is unit
    assert_float32_accurate(np.asarray([got["quaternion"] + got["translation"]]), solvers["graph"], uv, None)


@needs_node
@needs_chromium
@pytest.mark.node
@pytest.mark.chromium
def test_demo_page_reports_a_missing_model(server):
    pose = run_page_allowing_404(server, js="/models/nope/pnp.js", tfjs="/models/seed/tfjs/model.json")
    assert "error" in pose["js"] and "cannot load the JS module" in pose["js"]["error"]
    assert "quaternion" in pose["tfjs"]


def run_page_allowing_404(server, **query) -> dict:
    """Like run_page, but the missing file's 404 is expected in the console."""
    ARTIFACTS.mkdir(exist_ok=True)
    out, shot = ARTIFACTS / "demo-missing.json", ARTIFACTS / "demo-missing.png"
    url = server.url + "demo/?" + urlencode(query)
    proc = subprocess.run(
        ["node", str(WEB / "tools" / "run_demo.mjs"), url, str(out), str(shot), "--chromium", str(CHROMIUM)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["pageErrors"] == []
    return report["pose"]
