"""The standalone JS module (pnpjax/js/pnp.mjs, filled by pnpjax.jsmodule): its refinement
against `pnpjax predict --refine N --refine-cost C` (float64 JAX), hostile strings as data, refused
non-finite checkpoints, the size of the default module. The module's own unit tests, the three.js
test and the fuzzer run in Node (web/test/, `npm test`).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.lib import node, precision, web_bench
from experiments.lib.precision import pose_error
from helpers import random_solver, recipe_solver
from pnpjax import camera, checkpoint, cli, export, jsmodule, layouts, model, refine
from pnpjax.tfjs import ExportError

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-5
SHIPPED = sorted(p for p in (REPO / "checkpoints").iterdir() if (p / "pnpjax.json").is_file())
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")


def predict64(solver, uv: np.ndarray, cam: camera.Camera | None, iters: int, cost: str, retry: int = 0) -> np.ndarray:
    """`pnpjax predict --refine iters --refine-cost cost --refine-retry retry` (cli.predict_poses) in
    float64: the same adapters, network, refinement and noise model, on float64 copies of the float32 weights."""
    with jax.enable_x64(True):
        f64 = lambda a: jnp.asarray(a, jnp.float64)
        uv = f64(uv)
        if cam is None:
            xy = camera.pixels_to_normalized(camera.seed_to_pixels(uv), f64(camera.SEED_CAMERA.intrinsics))
        else:
            xy = camera.pixels_to_normalized(uv, f64(cam.intrinsics))
        stats = model.Stats(*(None if a is None else f64(a) for a in solver.stats))
        p = model.apply(solver.config.model, jax.tree_util.tree_map(f64, solver.params), stats, xy)
        pts = f64(solver.layout.array)
        cfg = solver.config
        noise = refine.noise_model_of(cfg.seed_test if cfg.protocol == "seed" else cfg.realistic)
        if cost == "ml":
            q, t = refine.refine_ml(xy, pts, p.q, p.t, noise, iters=iters, retry=retry)
        else:
            q, t = refine.refine_pose(xy, pts, p.q, p.t, iters=iters, cost=cost)
        q, t = camera.pose_opencv_to_gl(q, t) if cam is None else (q * jnp.where(q[:, 3:] < 0, -1.0, 1.0), t)
        return np.concatenate([np.asarray(q), np.asarray(t)], -1)


def js_run(module: Path, uv: np.ndarray, options: dict | None = None) -> np.ndarray:
    payload = {"landmarks": np.asarray(uv, np.float64).tolist(), "options": options}
    return np.asarray(node.js_predict_in_node(module, payload)["poses"], np.float64).reshape(-1, 7)


# --------------------------------------------------------------------------------------------
# Refinement parity
# --------------------------------------------------------------------------------------------


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("ckpt", SHIPPED, ids=lambda p: p.name)
def test_refined_float32_module_equals_predict(ckpt, tmp_path):
    """float32 module + N LM steps == `pnpjax predict --refine N --refine-cost C` (float64 JAX) to
    1e-5, for the module's default (--refine, ml) and for the image and object costs."""
    solver, cam, uv = precision.shipped_inputs(ckpt, n=300)
    path = export.export_checkpoint(ckpt, "js", tmp_path / "js", quantize="float32", camera=cam or "seed")
    data = json.loads(_generated_json(path.read_text()))
    assert data["refine"]["iterations"] == jsmodule.DEFAULT_REFINE_ITERS and data["refine"]["cost"] == "ml"
    for iters, cost in [
        (jsmodule.DEFAULT_REFINE_ITERS, "ml"),
        (3, "image"),
        (3, "object"),
    ]:
        js = js_run(path, uv, None if cost == "ml" else {"refine": iters, "cost": cost})
        ref = predict64(solver, uv, cam, iters, cost, jsmodule.DEFAULT_REFINE_RETRY if cost == "ml" else 0)
        err = pose_error(js, ref)
        assert err.max() <= ATOL, (
            f"{cost}: max |JS - predict| = {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"
        )
        assert np.all(js[:, 3] >= 0) and np.allclose(np.linalg.norm(js[:, :4], axis=1), 1, atol=1e-12)
        net = predict64(solver, uv, cam, 0, cost)
        assert pose_error(net, ref).max() > 1e-3  # the refinement did something


@needs_node
@pytest.mark.node
def test_module_turns_back_a_half_turn_roll(tmp_path):
    """An upside-down face whose landmarks are exactly symmetric (roll of exactly 180 degrees: the
    roll's sine is 0, its cosine -1) and a slightly rolled one: the module's network alone and
    refined equal `pnpjax predict` (float64), as at every other roll. The module once turned the
    translation back but not the rotation when the sine was exactly 0."""
    from scipy.spatial.transform import Rotation

    ckpt = REPO / "checkpoints" / "blazeface6"
    solver, spec = checkpoint.load(ckpt), "hfov=60,640x480"
    cam = camera.parse_camera(spec)
    pts = solver.layout.array.astype(np.float64)
    K = np.asarray(cam.intrinsics, np.float64)
    uv = []
    # A face looking at the camera upside down (a half turn about y, OpenCV frame), turned about the
    # optical axis by 0 (exactly upside down), +-1 degree, and 180 (upright).
    for roll in (0.0, 1.0, -1.0, 180.0):
        R = Rotation.from_euler("z", roll, degrees=True) * Rotation.from_euler("y", 180.0, degrees=True)
        X = R.apply(pts) + [0.0, 0.0, 50.0]
        uv.append(np.stack([K[0] * X[:, 0] / X[:, 2] + K[2], K[1] * X[:, 1] / X[:, 2] + K[3]], -1))
    uv = np.stack(uv)
    assert uv[0, 0, 1] == uv[0, 1, 1]  # the eyes on one image row: the sine is exactly 0
    path = export.export_checkpoint(ckpt, "js", tmp_path / "js", quantize="float32", camera=spec)
    for iters in (0, 1):
        js = js_run(path, uv, {"refine": iters})
        ref = predict64(solver, uv, cam, iters, "ml", jsmodule.DEFAULT_REFINE_RETRY)
        sign = np.where(np.sum(js[:, :4] * ref[:, :4], -1, keepdims=True) < 0, -1.0, 1.0)  # w ~ 0 here
        np.testing.assert_allclose(js[:, :4] * sign, ref[:, :4], atol=ATOL, rtol=0, err_msg=f"refine {iters}")
        np.testing.assert_allclose(js[:, 4:], ref[:, 4:], atol=ATOL, rtol=0, err_msg=f"refine {iters}")


def _generated_json(text: str) -> str:
    """The JSON text of the module's injection line, unescaped from its JS string literal."""
    (line,) = [ln for ln in text.splitlines() if ln.startswith("const GENERATED = ")]
    literal = line[len("const GENERATED = JSON.parse('") : -len("');")]
    return json.loads(
        '"'
        + literal.replace('"', '\\"')
        .replace("\\'", "'")
        .replace("\\x3c", "<")
        .replace("\\x3e", ">")
        .replace("\\x26", "&")
        + '"'
    )


# --------------------------------------------------------------------------------------------
# Strings of a checkpoint are data
# --------------------------------------------------------------------------------------------

HOSTILE = [
    "x\nglobalThis.PWNED = 1; //",
    "*/ globalThis.PWNED = 2; /*",
    "</script><script>globalThis.PWNED = 3</script>",
    "'); globalThis.PWNED = 4; ('",
    '"quoted" \\ backslash',
    "line\u2028separator\u2029para",
    "__proto__",
    "0",
]


def hostile_solver() -> checkpoint.Solver:
    """An untrained blazeface6-sized solver whose layout name, units and point names are hostile."""
    s = random_solver()
    names = tuple(HOSTILE[:5]) + ("__proto__",)
    lay = layouts.Layout(HOSTILE[5] + HOSTILE[0], names, s.layout.points, units=HOSTILE[2])
    return dataclasses.replace(
        s,
        layout=lay,
        config=dataclasses.replace(s.config, name=HOSTILE[1] + HOSTILE[3]),
    )


@needs_node
@pytest.mark.node
def test_hostile_strings_stay_data(tmp_path):
    solver = hostile_solver()
    path = export.export_solver(solver, "js", tmp_path / "js", source=HOSTILE[6] + HOSTILE[2])
    text = path.read_text()
    assert "</script" not in text.lower() and "\u2028" not in text and "\u2029" not in text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("const GENERATED = ")]
    assert line.endswith("');")
    script = (
        f"const m = await import({json.dumps(path.as_uri())});"
        "const lm = Array.from({length: 6}, (_, k) => [0.5 + 0.02 * Math.cos(k), 0.5 + 0.02 * Math.sin(k)]);"
        "const pose = m.estimatePose(lm);"
        "console.log(JSON.stringify({pwned: globalThis.PWNED ?? null, meta: m.metadata,"
        " proto: Object.getPrototypeOf(m.metadata.layout.points) === Object.prototype,"
        " names: Object.keys(m.metadata.layout.points), ok: pose.translation.every(Number.isFinite)}));"
    )
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["pwned"] is None and out["ok"] and out["proto"]
    meta = out["meta"]
    assert (
        meta["layout"]["name"] == solver.layout.name and meta["units"] == solver.layout.units == meta["layout"]["units"]
    )
    assert meta["source"] == {
        "config": solver.config.name,
        "checkpoint": HOSTILE[6] + HOSTILE[2],
    }
    assert sorted(out["names"]) == sorted(solver.layout.point_names)
    assert meta["layout"]["points"]["__proto__"] == [float(v) for v in solver.layout.points[5]]


def test_nonfinite_checkpoints_are_refused(tmp_path):
    s = random_solver()
    bad_params = jax.tree_util.tree_map(lambda a: a, s.params)
    bad_params["Dense_1"]["kernel"] = bad_params["Dense_1"]["kernel"].at[3, 4].set(jnp.nan)
    cases = {
        "non-finite": dataclasses.replace(s, params=bad_params),
        "y_std": dataclasses.replace(s, stats=s.stats._replace(y_mean=s.stats.y_mean.at[2].set(jnp.inf))),
        "zero standard deviation": dataclasses.replace(s, stats=s.stats._replace(y_std=s.stats.y_std.at[0].set(0.0))),
    }
    for expected, solver in cases.items():
        with pytest.raises(ExportError) as e:
            export.export_solver(solver, "js", tmp_path / "js")
        assert "\n" not in str(e.value) and ("non-finite" in str(e.value) or expected in str(e.value)), str(e.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError, match="--refine must be an integer"):
        export.export_solver(s, "js", tmp_path / "js", refine_iters=-1)
    with pytest.raises(ExportError, match="apply to --format js only"):
        export.export_checkpoint(SHIPPED[0], "tfjs", tmp_path / "t", refine_iters=3)


# --------------------------------------------------------------------------------------------
# Source, build and size
# --------------------------------------------------------------------------------------------


def test_source_has_one_injection_line_and_the_build_keeps_it():
    for name in (jsmodule.SOURCE_NAME, jsmodule.BUILT_NAME, jsmodule.NO_TRACKER_NAME):
        lines = jsmodule.source_text(name).split("\n")
        assert lines.count(jsmodule.INJECTION_LINE) == 1, name
        assert sum(ln.startswith("const GENERATED") for ln in lines) == 1, name


def test_an_export_keeps_only_the_optional_parts_it_calls():
    """pnp.min.mjs holds each optional part on one marked line; an export keeps the parts its
    weights and head call (their use is tested by the exports' accuracy tests) and drops the rest."""
    for build in (jsmodule.BUILT_NAME, jsmodule.NO_TRACKER_NAME):
        built = jsmodule.source_text(build).split("\n")
        for name in jsmodule.OPTIONAL_PARTS:
            assert sum(ln.startswith(f"/*{name}*/") for ln in built) == 1, (build, name)
    functions = [("uint8", "pnpUint8"), ("float", "pnpFloat"), ("6d", "pnp6d"), ("perspective", "pnpPerspective")]
    defined = lambda text: {n for n, f in functions if f"function {f}(" in text}
    cam = camera.parse_camera("hfov=60,640x480")
    solver = checkpoint.load(REPO / "checkpoints" / "blazeface6")
    persp_part = {"perspective"} if solver.config.model.roll == "perspective" else set()
    for quantize, parts in [("uint8", {"uint8"}), ("float16", {"float"}), ("float32", {"float"})]:
        text = jsmodule.module_source(solver, cam, quantize, "x")
        assert defined(text) == parts | persp_part, quantize
        assert not any(f"/*{n}*/" in text for n in jsmodule.OPTIONAL_PARTS)
    assert defined(jsmodule.module_source(random_solver("6d", seed=4), None, "uint8", "x")) == {"uint8", "6d"}
    persp = recipe_solver("centroid", "ray", "perspective", seed=4)
    assert defined(jsmodule.module_source(persp, None, "float32", "x")) == {"float", "perspective"}
    assert defined(jsmodule.module_source(solver, cam, "uint8", "x", minified=False)) == set(jsmodule.OPTIONAL_PARTS)


def default_module_text() -> bytes:
    """The default module: the web checkpoint's export for bench_web's camera (uint8, default refinement, no tracker)."""
    solver = checkpoint.load(web_bench.WEB_CHECKPOINT)
    data = web_bench.default_module_data(solver, camera.parse_camera(web_bench.EXPORT_CAMERA))
    text = jsmodule.fill(jsmodule.source_text(jsmodule.built_name(False)), data)
    cam = camera.parse_camera(web_bench.EXPORT_CAMERA)
    assert text == export.js_module_source(solver, cam, "uint8", web_bench.WEB_CHECKPOINT.name)  # `pnpjax export`'s
    return text.encode()


def test_default_module_size():
    """The default module (blazeface6-web, uint8, pixel camera, refinement included) <= 16 KB raw, <= 9 KB gzip."""
    text = default_module_text()
    assert len(text) <= 16 * 1024, len(text)
    assert len(gzip.compress(text, 9, mtime=0)) <= 9 * 1024


TRACKER_PROBE = """
const m = await import(process.argv[1]);
const out = {};
try {
  const t = m.createTracker();
  out.pose = t.update(JSON.parse(process.argv[2]), 0);
} catch (e) {
  out.error = e.message;
}
process.stdout.write(JSON.stringify(out));
"""


@needs_node
@pytest.mark.node
def test_the_tracker_is_opt_in(tmp_path, capsys):
    """`pnpjax export --format js` leaves createTracker's code and defaults out: calling it throws one
    line naming --tracker. With --tracker the module tracks (a pose from the first frame), its data
    holds the tracker's defaults, and it is the default module plus at most 2 KB (issue 10). The
    command prints each module's bytes. Other formats refuse --tracker."""
    ckpt = str(REPO / "checkpoints" / "blazeface6")
    args = ["export", "--checkpoint", ckpt, "--format", "js", "--camera", "hfov=60,640x480"]
    assert cli.main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "tracked"), "--tracker"]) == 0
    printed = capsys.readouterr().out.splitlines()
    for line, name, what in zip(printed, ("plain", "tracked"), ("no tracker: --tracker adds", "with createTracker")):
        data = (tmp_path / name / export.JS_FILE).read_bytes()
        sizes = f"({len(data):,} B, {len(gzip.compress(data, 9, mtime=0)):,} B gzip; {what}"
        assert line.startswith(f"wrote js export to {tmp_path / name / export.JS_FILE} {sizes}"), line
    lm = [[300.0, 200.0], [340.0, 200.0], [320.0, 225.0], [320.0, 250.0], [280.0, 210.0], [360.0, 210.0]]
    got = {}
    for name in ("plain", "tracked"):
        path = tmp_path / name / export.JS_FILE
        run = subprocess.run(
            ["node", "--input-type=module", "-e", TRACKER_PROBE, path.resolve().as_uri(), json.dumps(lm)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        got[name] = (json.loads(run.stdout), json.loads(_generated_json(path.read_text())), path.read_bytes())
    (plain, plain_data, plain_bytes), (tracked, tracked_data, tracked_bytes) = got["plain"], got["tracked"]
    assert plain == {
        "error": "pnpjax createTracker: not in this module: export it with `pnpjax export --format js --tracker`"
    }
    assert "track" not in plain_data and tracked_data["track"] == jsmodule.tracker_defaults()
    assert plain_data["metadata"]["tracker"] is False and tracked_data["metadata"]["tracker"] is True
    tracked_data["metadata"]["tracker"] = False
    assert {k: v for k, v in tracked_data.items() if k != "track"} == plain_data
    q, t = (np.asarray(tracked["pose"][k], np.float64) for k in ("quaternion", "translation"))
    assert q.shape == (4,) and t.shape == (3,) and abs(np.linalg.norm(q) - 1) < 1e-6 and t[2] > 0
    assert 1000 < len(tracked_bytes) - len(plain_bytes) <= 2048
    capsys.readouterr()
    for fmt in ("tfjs", "savedmodel"):
        assert (
            cli.main(["export", "--checkpoint", ckpt, "--format", fmt, "--out", str(tmp_path / fmt), "--tracker"]) == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["pnpjax export: error: --tracker applies to --format js only"], err
        assert not (tmp_path / fmt).exists()


@needs_node
@pytest.mark.node
@pytest.mark.skipif(not (REPO / "web" / "node_modules" / "typescript").is_dir(), reason="run `cd web && npm ci`")
def test_typescript_declarations_match_the_exports(tmp_path):
    """Every js export writes pnp.d.ts (the package's, byte for byte) beside pnp.js, and each
    module's values match it (web/tools/dts.mjs: the exports, metadata names and value types, the
    poses, three.js settings, every declared refinement and tracker option read by the module) for
    a seed and a pixel camera, with and without the tracker; the declared tracker options are the
    export's tracker defaults; the calls of web/test/types/usage.ts run against the tracker export
    (its misuses throw)."""
    cases = {
        "web": (REPO / "checkpoints" / "blazeface6-web", "hfov=60,640x480", False),
        "web-tracker": (REPO / "checkpoints" / "blazeface6-web", "hfov=60,640x480", True),
        "faceapi10-seed": (REPO / "checkpoints" / "faceapi10", "seed", True),
    }
    for name, (ckpt, cam, tracker) in cases.items():
        js = export.export_checkpoint(ckpt, "js", tmp_path / name, camera=cam, tracker=tracker)
        dts = js.parent / export.JS_TYPES_FILE
        assert sorted(p.name for p in js.parent.iterdir()) == [export.JS_TYPES_FILE, export.JS_FILE]
        assert dts.read_text(encoding="utf-8") == jsmodule.source_text(jsmodule.TYPES_NAME)
        # The page's calls of web/test/types/usage.ts (blazeface6's landmarks, the tracker) run too.
        usage = ["--usage", str(REPO / "web" / "test" / "types" / "usage.ts")] if name == "web-tracker" else []
        run = subprocess.run(
            ["node", str(REPO / "web" / "tools" / "dts.mjs"), str(js), *usage],
            capture_output=True,
            text=True,
            timeout=120,
        )
        report = json.loads(run.stdout)
        assert run.returncode == 0 and report["ok"], (name, report, run.stderr[-2000:])
        assert report["trackerOptions"] == sorted(jsmodule.tracker_defaults()), name
    # A declaration that no longer matches the module is caught.
    dts = tmp_path / "web-tracker" / export.JS_TYPES_FILE
    dts.write_text(dts.read_text().replace("  tracker: boolean;\n", ""), encoding="utf-8")
    run = subprocess.run(
        ["node", str(REPO / "web" / "tools" / "dts.mjs"), str(tmp_path / "web-tracker" / export.JS_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1 and json.loads(run.stdout)["problems"] == ["metadata: tracker is not declared"]


def test_cli_export_refine_defaults(tmp_path, capsys):
    """`pnpjax export --refine N --refine-cost C --refine-retry M` writes the module's defaults; other
    formats refuse them."""
    ckpt = str(SHIPPED[0])
    args = ["export", "--checkpoint", ckpt, "--format", "js", "--camera", "hfov=60,640x480"]
    a = [*args, "--out", str(tmp_path / "a"), "--refine", "0", "--refine-cost", "image", "--refine-retry", "0"]
    assert cli.main(a) == 0
    data = json.loads(_generated_json((tmp_path / "a" / export.JS_FILE).read_text()))
    assert data["refine"]["iterations"] == 0 and data["refine"]["cost"] == "image" and data["refine"]["retry"] == 0
    assert cli.main([*args, "--out", str(tmp_path / "b")]) == 0
    data = json.loads(_generated_json((tmp_path / "b" / export.JS_FILE).read_text()))
    assert (data["refine"]["iterations"], data["refine"]["cost"], data["refine"]["retry"]) == (
        jsmodule.DEFAULT_REFINE_ITERS,
        "ml",
        jsmodule.DEFAULT_REFINE_RETRY,
    )
    capsys.readouterr()
    for bad in (
        ["--format", "tfjs", "--refine", "3"],
        ["--format", "tfjs", "--refine-retry", "3"],
        ["--format", "js", "--refine", "-1"],
        ["--format", "js", "--refine", "101"],
        ["--format", "js", "--refine-retry", "101"],
    ):
        argv = ["export", "--checkpoint", ckpt, "--out", str(tmp_path / "c"), *bad]
        assert cli.main(argv) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("pnpjax export: error: "), err
    assert not (tmp_path / "c").exists()
