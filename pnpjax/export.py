"""Exports of a solver: a TF.js layers model, one dependency-free ES module, a TF SavedModel.

Every export takes landmarks in the image coordinates of an *export camera* and returns the pose
in that camera's frame, so its user needs no constants and no frame algebra:

  * ``seed`` (default): the original's coordinates, u = x_px / width to the right and
    v = 1 - y_px / height *up*, focal one image side, principal point 0.5; the pose is in the
    original's OpenGL-like frame (x right, y up, camera looking down -z), which is also three.js's
    camera frame. ``--format tfjs --camera seed`` is a drop-in for the original model.json, except
    that its output is already de-standardised.
  * pixel intrinsics ``fx,fy,cx,cy,width,height``: u, v in pixels (v down); the pose is in
    OpenCV's camera frame (x right, y down, z forward).

Both cameras map image coordinates to the solver's normalised coordinates by
``xy = (uv - c) / f``; the seed camera is ``f = (1, -1), c = (0.5, 0.5)``.

``--format tfjs`` writes a TF.js *layers* model for the plain recipe (standardised inputs, direct
translation, no roll, ``quat`` head), the one a Dense stack expresses, and a TF.js *graph* model
(`solver_graph`: `model.apply` as a GraphDef of standard ops) for every other recipe. The Dense
stack of the layers model is

    Flatten -> Dense relu ... -> Dense linear (standardised z) -> Dense linear 7x7 "pose layer"

The image->normalised->standardised map is affine and diagonal, so it is folded into the first
layer. The pose layer is ``y = z diag(y_std) P + y_mean P``: de-standardisation times ``P``, the
change of frame, which is linear in q (left multiplication by the constant quaternion of the 180°
frame rotation) and in t (a sign flip). It stays a separate float32 layer at every quantisation:
TF.js quantises per tensor, and a uint8 kernel holding both the quaternion's scale (~0.1-0.9) and
the translation's (~20 cm) loses the quaternion (SEED.md; `quantization_study` measures it). The
quaternion of the TF.js output is *not* normalised (normalise before use); its overall sign is
chosen so that w >= 0 for the average face.

The JS module carries the same trunk (input standardisation folded, normalised coordinates in),
de-standardises, decodes the head (normalise, or Gram-Schmidt for ``6d``), changes frame and
returns a unit quaternion with w >= 0; a ``camera`` argument takes other intrinsics. The
SavedModel (jax2tf, native serialisation, batch-polymorphic) runs the JAX solver itself with the
same pre/post-processing and returns the normalised pose (w >= 0), like ``pnpjax predict``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from pnpjax import camera as camlib, geometry, jsmodule, model, tfjs
from pnpjax.errors import PnpjaxError
from pnpjax.tfjs import ExportError
from pnpjax.stack import (  # noqa: F401  (re-exported: the stack is part of the export API)
    GL_QUAT,
    SEED_INTRINSICS,
    image_intrinsics,
    frame_of,
    export_metadata,
    trunk_layers,
    precise_trunk_layers,
    precise_trunk_f64,
    output_map,
    pose_layer_f64,
    dense_layers,
    layer_quantizations,
    quantization_label,
    LayersSolver,
    js_weights,
)

__all__ = [
    "FORMATS",
    "JS_FILE",
    "JS_TYPES_FILE",
    "GraphSolver",
    "LayersSolver",
    "dense_layers",
    "export_checkpoint",
    "export_solver",
    "image_intrinsics",
    "needs_graph_model",
    "pose_function",
    "read_tfjs_solver",
    "solver_graph",
]

FORMATS: tuple[str, ...] = ("tfjs", "js", "savedmodel")
JS_FILE = "pnp.js"
JS_TYPES_FILE = "pnp.d.ts"  # beside JS_FILE: editors and tsc read the module's types from it
SAVEDMODEL_META = "pnpjax_export.json"


# --------------------------------------------------------------------------------------------
# Output directories
# --------------------------------------------------------------------------------------------


def _check_not_the_source(src: Path, out: Path) -> None:
    """--out must not be, contain or lie inside the checkpoint it is made from (--force would delete it)."""
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents or o in s.parents:
        raise ExportError(f"--out {out} is, contains or lies inside the checkpoint {src}; choose another directory")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ExportError(f"output path {out} exists and is not a directory")
        if any(out.iterdir()) and not force:
            raise ExportError(f"output directory {out} is not empty (use --force to replace it)")


@contextlib.contextmanager
def _staged_dir(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary sibling of ``out``; on success it replaces ``out`` by renames, else vanishes."""
    from pnpjax import fsio

    _check_out(out, force)
    tmp = fsio.make_temp_dir(out, ExportError)  # also removes temp dirs of killed exports of `out`
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        _check_out(out, force)  # again: the export may have taken a while
        try:
            tfjs.replace_dir(tmp, out)
        except OSError as e:
            raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------------------------
# tfjs
# --------------------------------------------------------------------------------------------


def write_tfjs(
    out_dir: Path, layers: list[tfjs.Dense], num_points: int, quantizations: list[str], metadata: dict
) -> dict:
    """Write a TF.js layers model with per-layer storage dtypes into an empty ``out_dir``.

    `tfjs.write_layers_model` takes one dtype for all tensors; the manifest format allows one per
    tensor, so the float32 model it writes is re-encoded here tensor by tensor.
    """
    model_json = tfjs.write_layers_model(
        out_dir, layers, (num_points, 2), quantize="float32", metadata=metadata, force=True
    )
    if set(quantizations) == {"float32"}:
        return model_json
    entries = model_json["weightsManifest"][0]["weights"]
    chunks = []
    for i, (layer, q) in enumerate(zip(layers, quantizations)):
        for entry, values in zip(entries[2 * i : 2 * i + 2], (layer.kernel, layer.bias)):
            try:
                stored, qinfo = tfjs.quantize_tensor(values, q)
            except ValueError as e:
                raise ExportError(f"{entry['name']}: {e}") from e
            entry.pop("quantization", None)
            if qinfo is not None:
                entry["quantization"] = qinfo
            chunks.append(stored.tobytes(order="C"))
    (out_dir / tfjs.SHARD_NAME).write_bytes(b"".join(chunks))
    (out_dir / tfjs.MODEL_JSON).write_text(json.dumps(model_json, allow_nan=False), encoding="utf-8")
    tfjs.read_layers_model(out_dir)  # the manifest and shard agree (raises ModelFormatError if not)
    return model_json


def needs_graph_model(model_cfg) -> bool:
    """True for recipes a Dense stack cannot express (nonlinear inputs, ray translation, roll, the
    6d head's Gram-Schmidt)."""
    return (
        model_cfg.inputs,
        model_cfg.translation,
        getattr(model_cfg, "roll", "none"),
        getattr(model_cfg, "rotation", "quat"),
    ) != ("standardized", "direct", "none", "quat")


# Quaternion algebra as constant matrices on row vectors q = (x, y, z, w):
#   q @ _QZ_CROSS = (-y, x, w, -z), so (0, 0, s, c) * q (Hamilton product) = c q + s (q @ _QZ_CROSS);
#   t_xy @ _ROT90 = (-t_y, t_x), so Rz(theta) t_xy = cos t_xy + sin (t_xy @ _ROT90).
_QZ_CROSS = np.array([[0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, -1], [0, 0, 1, 0]], np.float64)
_ROT90 = np.array([[0, 1], [-1, 0]], np.float64)
#   q @ _QX_CROSS = (w, -z, y, -x) and q @ _QY_CROSS = (z, w, -x, -y): (a, b, 0, c) * q = c q +
#   a (q @ _QX_CROSS) + b (q @ _QY_CROSS) (the perspective turn, about an axis in the image plane).
_QX_CROSS = np.array([[0, 0, 0, -1], [0, 0, 1, 0], [0, -1, 0, 0], [1, 0, 0, 0]], np.float64)
_QY_CROSS = np.array([[0, 0, -1, 0], [0, 0, 0, -1], [1, 0, 0, 0], [0, 1, 0, 0]], np.float64)


def _unit(g: tfjs.Graph, v: str) -> str:
    """(N, D) rows / their norm, as geometry.safe_norm (sqrt(sum v^2 + 1e-12))."""
    return g.op(
        "RealDiv", v, g.op("Sqrt", g.op("AddV2", g.reduce("Sum", g.op("Square", v), 1, keep_dims=True), g.const(1e-12)))
    )


def _rot6d_quat(g: tfjs.Graph, x: str) -> str:
    """(N, 6) -> (N, 4) unit quaternion of geometry.rot6d_to_matrix (Gram-Schmidt, columns c1 c2
    c1 x c2), by Shepperd's method: of the four expressions of q (each 2 sqrt(t_i) q up to sign),
    the one with the largest t_i, normalised (the same choice as jaxlie's up to ties)."""
    c1 = _unit(g, g.slice(x, (0, 0), (-1, 3)))
    b = g.slice(x, (0, 3), (-1, 3))
    c2 = _unit(g, g.op("Sub", b, g.op("Mul", g.reduce("Sum", g.op("Mul", c1, b), 1, keep_dims=True), c1)))
    x1, y1, z1 = (g.slice(c1, (0, i), (-1, 1)) for i in range(3))
    x2, y2, z2 = (g.slice(c2, (0, i), (-1, 1)) for i in range(3))
    mul, add, sub = (lambda a, b, op=op: g.op(op, a, b) for op in ("Mul", "AddV2", "Sub"))
    x3, y3, z3 = sub(mul(y1, z2), mul(z1, y2)), sub(mul(z1, x2), mul(x1, z2)), sub(mul(x1, y2), mul(y1, x2))
    # m[i][j]: row i of column j
    m00, m10, m20, m01, m11, m21, m02, m12, m22 = x1, y1, z1, x2, y2, z2, x3, y3, z3
    one = g.const(1.0)
    t = [
        sub(sub(add(one, m00), m11), m22),
        sub(add(sub(one, m00), m11), m22),
        add(sub(sub(one, m00), m11), m22),
        add(add(add(one, m00), m11), m22),
    ]
    cands = [
        [t[0], add(m10, m01), add(m02, m20), sub(m21, m12)],
        [add(m10, m01), t[1], add(m21, m12), sub(m02, m20)],
        [add(m02, m20), add(m21, m12), t[2], sub(m10, m01)],
        [sub(m21, m12), sub(m02, m20), sub(m10, m01), t[3]],
    ]
    q = [g.concat(c, 1) for c in cands]
    q01 = g.select(g.op("Less", t[1], t[0]), q[0], q[1])
    q23 = g.select(g.op("Less", t[3], t[2]), q[2], q[3])
    t01, t23 = g.op("Maximum", t[0], t[1]), g.op("Maximum", t[2], t[3])
    return _unit(g, g.select(g.op("Less", t23, t01), q01, q23))


def solver_graph(solver, cam: camlib.Camera | None, quantize: str = "float32") -> tuple[tfjs.Graph, str]:
    """The solver as a TF.js graph: export-camera image coords (N, K, 2) -> (N, 7) pose in its frame.

    The graph computes `model.apply` op by op in float32 (the spec of each recipe is there):
    image coords -> normalised; with ``roll='perspective'`` the landmarks moved to the image of the
    camera turned onto their mean viewing ray; with ``roll`` the roll (cos, sin) from the layout's
    ``roll_weights`` and the landmarks turned by -roll; the features (centroid inputs or the
    flat coordinates), standardised; the MLP (its weights stored as ``quantize``, everything
    else float32); de-standardised; the rotation head decoded (quat: normalised; 6d: Gram-Schmidt
    and Shepperd's matrix-to-quaternion); the ray decode of the translation; roll re-applied
    (q <- q_z(roll) q, t <- Rz t), then the perspective turn (q <- q_c q, t <- R_c t); the frame
    change of the camera. Unlike the layers model, the
    quaternion comes out unit with w >= 0 (the graph can normalise it).
    """
    m = solver.config.model
    roll = getattr(m, "roll", "none")
    k = solver.layout.num_points
    st = solver.stats
    g = tfjs.Graph()
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    uv = g.placeholder("landmarks", (-1, k, 2))
    fx, fy, cx, cy = (float(v) for v in image_intrinsics(cam))
    # The camera in float32 plus its rounding (zero for the seed camera: no extra ops): a focal of
    # 554.256... px stored as float32 is off by ~3e-8 of itself, a scale error of every normalised
    # coordinate that reaches the pose as ~1e-5 cm (about an eighth of a one-ulp change of the pixels).
    f_hi, c_hi = np.float32([fx, fy]), np.float32([cx, cy])
    f_rel = (np.array([fx, fy]) - f_hi) / f_hi  # f = f_hi (1 + f_rel)
    c_lo = np.array([cx, cy]) - c_hi
    f, pp = g.const(f_hi, "camera/f"), g.const(c_hi, "camera/c")
    pp_lo = g.const(c_lo, "camera/c_lo") if np.any(c_lo) else None
    f_lo = g.const(f_rel, "camera/f_rel") if np.any(f_rel) else None

    def centred(v: str) -> str:  # v - c, image units
        v = g.op("Sub", v, pp)
        return v if pp_lo is None else g.op("Sub", v, pp_lo)

    def normalised(v: str) -> str:  # v / f = (v / f_hi) (1 - f_rel) + O(f_rel^2)
        x = g.op("RealDiv", v, f)
        return x if f_lo is None else g.op("Sub", x, g.op("Mul", x, f_lo))

    # The landmarks as their centroid c (normalised) and their offsets from it, d_k = (uv_k - mean uv) / f:
    # in float32 the offsets are taken in image units, where points close together subtract nearly
    # exactly, instead of after normalising (xy - c), which would cancel the rounding of each xy;
    # every quantity below is a function of (c, d) alone (the roll turns both, being linear).
    # The float32 mean is off by up to half an ulp of the coordinates (3e-5 px at 600 px), which
    # would shift every offset alike; a second pass on the offsets' own (small) mean removes it.
    rel_inputs = m.inputs in ("centroid", "axis")  # landmarks centred and scaled (then 3 more inputs)
    need_c, need_d = m.inputs == "centroid" or m.translation == "ray", rel_inputs or roll != "none"
    if need_c or need_d:
        cu = g.reduce("Mean", uv, 1, keep_dims=True)  # (N, 1, 2)
    if need_c or roll == "perspective":  # (the perspective turn below is computed from (c, d))
        c = normalised(centred(cu))  # (N, 1, 2)
    if need_d:
        du = g.op("Sub", uv, cu)
        d = normalised(g.op("Sub", du, g.reduce("Mean", du, 1, keep_dims=True)))  # (N, K, 2)
    if roll == "perspective":
        # The camera turned onto the mean unit viewing ray u_k (model.perspective_frame, the same
        # float32-careful form: u_k - r/K from the small offsets d alone): rc = the rows of R_c as
        # (N, 1) entries, q_c = (qx, qy, 0, qw); then the landmarks of the turned camera replace
        # (c, d), in normalised coordinates (near the axis: no image-unit detour needed).
        mul, add, sub = (lambda a, b, op=op: g.op(op, a, b) for op in ("Mul", "AddV2", "Sub"))
        c1, d1 = g.reshape(c, (-1, 1, 2)), d
        cx, cy = g.slice(c1, (0, 0, 0), (-1, 1, 1)), g.slice(c1, (0, 0, 1), (-1, 1, 1))  # (N, 1, 1)
        dx, dy = g.slice(d1, (0, 0, 0), (-1, k, 1)), g.slice(d1, (0, 0, 1), (-1, k, 1))  # (N, K, 1)
        one, two = g.const(1.0), g.const(2.0)
        nc = g.op("Sqrt", add(one, add(mul(cx, cx), mul(cy, cy))))
        ux, uy = add(cx, dx), add(cy, dy)
        nk = g.op("Sqrt", add(one, add(mul(ux, ux), mul(uy, uy))))
        dn2 = add(mul(two, add(mul(cx, dx), mul(cy, dy))), add(mul(dx, dx), mul(dy, dy)))
        gk = g.op("Neg", g.op("RealDiv", dn2, mul(mul(nk, nc), add(nk, nc))))
        ex, ey, ez = add(g.op("RealDiv", dx, nk), mul(cx, gk)), add(g.op("RealDiv", dy, nk), mul(cy, gk)), gk
        mean = lambda e: g.reduce("Mean", e, 1, keep_dims=True)  # noqa: E731
        mx, my, mz = mean(ex), mean(ey), mean(ez)  # (N, 1, 1)
        rx, ry = add(g.op("RealDiv", cx, nc), mx), add(g.op("RealDiv", cy, nc), my)
        rz = add(g.op("RealDiv", one, nc), mz)
        ex, ey, ez = sub(ex, mx), sub(ey, my), sub(ez, mz)
        rn = g.op("Sqrt", add(add(mul(rx, rx), mul(ry, ry)), mul(rz, rz)))
        qv = g.concat([g.op("Neg", ry), rx, add(rn, rz)], 2)  # (N, 1, 3)
        qv = g.op("RealDiv", qv, g.op("Sqrt", g.reduce("Sum", g.op("Square", qv), 2, keep_dims=True)))
        qx, qy, qw = (g.reshape(g.slice(qv, (0, 0, i), (-1, 1, 1)), (-1, 1)) for i in range(3))  # (N, 1)
        rc = [
            [sub(one, mul(two, mul(qy, qy))), mul(two, mul(qx, qy)), mul(two, mul(qy, qw))],
            [mul(two, mul(qx, qy)), sub(one, mul(two, mul(qx, qx))), g.op("Neg", mul(two, mul(qx, qw)))],
            [
                g.op("Neg", mul(two, mul(qy, qw))),
                mul(two, mul(qx, qw)),
                sub(one, mul(two, add(mul(qx, qx), mul(qy, qy)))),
            ],
        ]
        e3 = [[g.reshape(v, (-1, 1, 1)) for v in row] for row in rc]
        px = add(add(mul(e3[0][0], ex), mul(e3[1][0], ey)), mul(e3[2][0], ez))
        py = add(add(mul(e3[0][1], ex), mul(e3[1][1], ey)), mul(e3[2][1], ez))
        z = g.op("RealDiv", add(add(mul(e3[0][2], ux), mul(e3[1][2], uy)), e3[2][2]), nk)
        z = g.op("Maximum", z, g.const(1e-6))
        xyp = g.concat([g.op("RealDiv", px, z), g.op("RealDiv", py, z)], 2)  # (N, K, 2)
        c = g.reduce("Mean", xyp, 1, keep_dims=True)
        dp = g.op("Sub", xyp, c)
        d = g.op("Sub", dp, g.reduce("Mean", dp, 1, keep_dims=True))

    if roll != "none":
        w = np.asarray(st.roll_weights, np.float64).reshape(1, k, 1)
        dr = g.reduce("Sum", g.op("Mul", d, g.const(w, "roll/weights")), 1)  # (N, 2): sum_k w_k (xy_k - c)
        norm = g.op("Sqrt", g.reduce("Sum", g.op("Square", dr), 1, keep_dims=True))  # (N, 1)
        cs = g.op("RealDiv", dr, g.op("Maximum", norm, g.const(1e-12)))
        cs = g.select(g.op("Equal", norm, g.const(0.0)), g.const([1.0, 0.0]), cs)  # |d| = 0: no turn
        cos, sin = g.slice(cs, (0, 0), (-1, 1)), g.slice(cs, (0, 1), (-1, 1))  # (N, 1)
        cos3, sin3 = g.reshape(cos, (-1, 1, 1)), g.reshape(sin, (-1, 1, 1))

        def turn(pts: str, n: int) -> str:  # (N, n, 2) points turned by -roll about the principal point
            x, y = g.slice(pts, (0, 0, 0), (-1, n, 1)), g.slice(pts, (0, 0, 1), (-1, n, 1))
            return g.concat(
                [
                    g.op("AddV2", g.op("Mul", cos3, x), g.op("Mul", sin3, y)),
                    g.op("Sub", g.op("Mul", cos3, y), g.op("Mul", sin3, x)),
                ],
                2,
            )

        if rel_inputs:
            d = turn(d, k)
        if need_c:
            c = turn(c, 1)
        if m.inputs == "axis":
            # model.frame_axis: the real optical axis seen from the turned frame, a = Rz^T R_c^T e_z
            # (the last row of R_c, turned by -roll), projected: O(1) numbers.
            a0, a1 = (g.reshape(v, (-1, 1, 1)) for v in rc[2][:2])
            az = g.op("Maximum", rc[2][2], g.const(1e-6))
            axis = g.op("RealDiv", g.reshape(turn(g.concat([a0, a1], 2), 1), (-1, 2)), az)
    else:

        def turn(pts: str, n: int) -> str:
            return pts

    if rel_inputs:
        spread = g.op(
            "Sqrt",
            g.op("AddV2", g.reduce("Mean", g.reduce("Sum", g.op("Square", d), 2), 1, keep_dims=True), g.const(1e-12)),
        )  # (N, 1)
        rel = g.reshape(g.op("RealDiv", d, g.reshape(spread, (-1, 1, 1))), (-1, 2 * k))
        extra = axis if m.inputs == "axis" else g.reshape(c, (-1, 2))
        feats = g.concat([rel, extra, g.op("Log", spread)], 1)
    else:  # the (turned) normalised coordinates themselves, from the image coordinates directly
        xy = xyp if roll == "perspective" else normalised(centred(uv))
        feats = g.reshape(turn(xy, k), (-1, 2 * k))
    h = g.op("RealDiv", g.op("Sub", feats, g.const(f32(st.x_mean), "x_mean")), g.const(f32(st.x_std), "x_std"))
    p = solver.params
    names = sorted(p, key=lambda n: int(n.split("_")[-1]))
    for i, n in enumerate(names):
        kernel = g.const(f32(p[n]["kernel"]), f"mlp/dense_{i}/kernel", quantize=quantize)
        bias = g.const(f32(p[n]["bias"]), f"mlp/dense_{i}/bias", quantize=quantize)
        h = g.op("BiasAdd", g.matmul(h, kernel), bias)
        if i < len(names) - 1:
            h = g.op("Relu", h)
    y = g.op("AddV2", g.op("Mul", h, g.const(f32(st.y_std), "y_std")), g.const(f32(st.y_mean), "y_mean"))
    r = 4 if m.rotation == "quat" else 6  # where t's entries start in the pose vector
    if m.translation == "ray":  # t = exp(a) (c + b, 1), a clamped as in model.apply
        # exp(a) with a = z y_std + y_mean computed as exp(z y_std) exp(y_mean), exp(y_mean) in
        # float64: rounding a (~4) to float32 would cost ~2.4e-7 relative depth, 1e-5 cm at 40 cm.
        a_mean, a_std = float(st.y_mean[-3]), float(st.y_std[-3])
        za = g.op("Mul", g.slice(h, (0, r), (-1, 1)), g.const(a_std))
        depth = g.op("Mul", g.op("Exp", g.clip(za, -20.0 - a_mean, 20.0 - a_mean)), g.const(np.exp(a_mean)))
        txy = g.op("Mul", depth, g.op("AddV2", g.reshape(c, (-1, 2)), g.slice(y, (0, r + 1), (-1, 2))))
        tz = depth
    else:
        txy, tz = g.slice(y, (0, r), (-1, 2)), g.slice(y, (0, r + 2), (-1, 1))
    if m.rotation == "quat":
        q = _unit(g, g.slice(y, (0, 0), (-1, 4)))  # geometry.quat_normalize
    else:
        q = _rot6d_quat(g, g.slice(y, (0, 0), (-1, 6)))
    if roll != "none":  # R = Rz R', t = Rz t'
        half = g.op("Mul", g.op("Atan2", sin, cos), g.const(0.5))
        q = g.op(
            "AddV2",
            g.op("Mul", g.op("Cos", half), q),
            g.op("Mul", g.op("Sin", half), g.matmul(q, g.const(_QZ_CROSS, "roll/qz_cross"))),
        )
        txy = g.op("AddV2", g.op("Mul", cos, txy), g.op("Mul", sin, g.matmul(txy, g.const(_ROT90, "roll/rot90"))))
    if roll == "perspective":  # R = R_c R, t = R_c t: q_c q = qw q + qx (q @ _QX_CROSS) + qy (q @ _QY_CROSS)
        q = add(
            add(mul(qw, q), mul(qx, g.matmul(q, g.const(_QX_CROSS, "perspective/qx_cross")))),
            mul(qy, g.matmul(q, g.const(_QY_CROSS, "perspective/qy_cross"))),
        )
        tx, ty = g.slice(txy, (0, 0), (-1, 1)), g.slice(txy, (0, 1), (-1, 1))
        t3 = [add(add(mul(rc[i][0], tx), mul(rc[i][1], ty)), mul(rc[i][2], tz)) for i in range(3)]
        txy, tz = g.concat(t3[:2], 1), t3[2]
    if frame_of(cam) == "opengl":
        q = g.matmul(q, g.const(GL_QUAT, "frame/quat"))
        txy = g.op("Mul", txy, g.const([1.0, -1.0], "frame/t_xy"))
        tz = g.op("Neg", tz)
    q = g.select(g.op("Less", g.slice(q, (0, 3), (-1, 1)), g.const(0.0)), g.op("Neg", q), q)  # w >= 0
    return g, g.op("Identity", g.concat([q, txy, tz], 1), name="pose")


class GraphSolver:
    """A graph-model export behind the solver interface: normalised coords -> OpenCV-frame Prediction.

    The graph runs in numpy float32 (`tfjs.run_graph`), an emulation of TF.js's arithmetic, like
    `LayersSolver` for a layers model; used to measure an export's accuracy on any protocol.
    """

    def __init__(self, graph: tfjs.Graph, cam: camlib.Camera | None):
        self.graph = graph
        self.intrinsics = np.asarray(image_intrinsics(cam), np.float32)
        self.gl = frame_of(cam) == "opengl"

    def __call__(self, xy) -> model.Prediction:
        xy = np.asarray(xy, np.float32)
        uv = xy * self.intrinsics[:2] + self.intrinsics[2:]
        y = jnp.asarray(tfjs.run_graph(self.graph, {"landmarks": uv}, "pose", dtype=np.float32))
        q, t = geometry.quat_normalize(y[:, :4]), y[:, 4:7]
        if self.gl:
            q, t = camlib.pose_gl_to_opencv(q, t)
        return model.Prediction(geometry.quat_to_matrix(q), q, t, y)


def read_tfjs_solver(model_dir: str | os.PathLike[str], cam: camlib.Camera | None) -> LayersSolver | GraphSolver:
    """A written `--format tfjs` export (layers or graph model), read back as TF.js decodes its
    weights, behind the solver interface (`LayersSolver` or `GraphSolver`)."""
    d = Path(model_dir)
    mj = tfjs.load_json(d / tfjs.MODEL_JSON)
    if mj.get("format") == tfjs.GRAPH_MODEL_FORMAT:
        return GraphSolver(tfjs.read_graph_model(d).graph, cam)
    return LayersSolver(tfjs.read_layers_model(d).layers, cam)


# --------------------------------------------------------------------------------------------
# js: one ES module
# --------------------------------------------------------------------------------------------


# The text of the standalone ES module, `pnpjax/js/pnp.mjs` with its data filled in (refinement
# defaults left None are the module's; createTracker's code only with `tracker`).
js_module_source = jsmodule.module_source


# --------------------------------------------------------------------------------------------
# savedmodel: jax2tf
# --------------------------------------------------------------------------------------------


def pose_function(solver, cam: camlib.Camera | None):
    """JAX function (B, K, 2) export-camera image coords -> (B, 7) pose, unit quaternion with w >= 0."""
    intr = jnp.asarray(image_intrinsics(cam), jnp.float32)
    cfg, params, stats = solver.config.model, solver.params, solver.stats
    gl = frame_of(cam) == "opengl"

    def pose(uv: jax.Array) -> jax.Array:
        p = model.apply(cfg, params, stats, (uv - intr[2:]) / intr[:2])
        q, t = camlib.pose_opencv_to_gl(p.q, p.t) if gl else (geometry.quat_canonical(p.q), p.t)
        return jnp.concatenate([q, t], -1)

    return pose


def write_savedmodel(out_dir: Path, solver, cam: camlib.Camera | None, metadata: dict) -> None:
    """jax2tf (native serialisation, batch-polymorphic) -> tf.saved_model.save into ``out_dir``."""
    try:
        import tensorflow as tf
        from jax.experimental import jax2tf
    except ImportError as e:
        raise ExportError(
            f"--format savedmodel needs TensorFlow ({e}); install it with: pip install 'pnpjax[tf]'"
        ) from None
    k = solver.layout.num_points
    fn = jax2tf.convert(pose_function(solver, cam), polymorphic_shapes=[f"(b, {k}, 2)"], with_gradient=False)
    module = tf.Module()

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, k, 2], tf.float32, name="landmarks")])
    def pose(landmarks):
        return {"pose": fn(landmarks)}

    module.pose = pose
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": pose.get_concrete_function()})
    (out_dir / SAVEDMODEL_META).write_text(json.dumps(metadata, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def export_solver(
    solver,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    quantize: str = "float32",
    camera: str | camlib.Camera | None = "seed",
    force: bool = False,
    source: str = "",
    refine_iters: int | None = None,
    refine_cost: str | None = None,
    refine_retry: int | None = None,
    tracker: bool | None = None,
) -> Path:
    """Export a loaded `checkpoint.Solver`; returns the written directory (the module file for js).

    js only: `tracker` puts `createTracker` (pnpjax.track's tracker, ~2 KB) in the module."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if quantize not in tfjs.QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; expected one of {', '.join(tfjs.QUANTIZATIONS)}")
    if fmt != "js" and tracker is not None:
        raise ExportError("--tracker applies to --format js only")
    if fmt == "savedmodel" and quantize != "float32":
        raise ExportError("a SavedModel stores float32 weights; --quantize applies to tfjs and js")
    if not all(hasattr(solver, a) for a in ("config", "params", "stats")):
        raise ExportError(
            f"{getattr(solver, 'name', 'this model')} is not a pnpjax checkpoint; only pnpjax checkpoints can be exported"
        )
    m = solver.config.model
    # Every recipe exports: tfjs writes a graph model when Dense layers cannot express it
    # (needs_graph_model), the JS module computes the features, ray decode and roll itself.
    from pnpjax import integrity

    try:
        integrity.check_solver(solver, source or "checkpoint")  # finite params, sane stats: never export NaN
    except PnpjaxError as e:
        raise ExportError(f"cannot export: {e}") from None
    cam = camlib.parse_camera(camera)
    out = Path(out)
    _check_out(out, force)
    if fmt == "tfjs" and needs_graph_model(m):
        graph, pose = solver_graph(solver, cam, quantize)
        label = quantize if quantize == "float32" else f"{quantize} (MLP weights; the rest float32)"
        meta = export_metadata(solver, cam, fmt, label, source)
        meta["quaternion"] = "x y z w, unit, w >= 0"
        with _staged_dir(out, force) as tmp:
            tfjs.write_graph_model(tmp, graph, {pose: (pose, (-1, 7))}, metadata=meta, force=True)
        return out
    if fmt == "tfjs":
        # float32 keeps the extra input layer that removes the folded first layer's rounding; for
        # uint8/float16 the quantisation error is ~1000x larger, so the smaller stack is kept.
        layers = dense_layers(solver, cam, precise=quantize == "float32")
        meta = export_metadata(solver, cam, fmt, quantization_label(quantize), source)
        with _staged_dir(out, force) as tmp:
            write_tfjs(tmp, layers, solver.layout.num_points, layer_quantizations(len(layers), quantize, False), meta)
        return out
    if fmt == "js":
        text = jsmodule.module_source(
            solver,
            cam,
            quantize,
            source,
            refine_iters=refine_iters,
            refine_cost=refine_cost,
            refine_retry=refine_retry,
            tracker=bool(tracker),
        )
        with _staged_dir(out, force) as tmp:
            (tmp / JS_FILE).write_text(text, encoding="utf-8")
            (tmp / JS_TYPES_FILE).write_text(jsmodule.source_text(jsmodule.TYPES_NAME), encoding="utf-8")
        return out / JS_FILE
    meta = export_metadata(solver, cam, fmt, "float32", source)
    with _staged_dir(out, force) as tmp:
        write_savedmodel(tmp, solver, cam, meta)
    return out


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    format: str,
    out: str | os.PathLike[str],
    *,
    quantize: str = "float32",
    camera: str | camlib.Camera | None = "seed",
    force: bool = False,
    refine_iters: int | None = None,
    refine_cost: str | None = None,
    refine_retry: int | None = None,
    tracker: bool | None = None,
) -> Path:
    """`pnpjax export`: load a checkpoint and write it as tfjs | js | savedmodel (see module docstring)."""
    from pnpjax import checkpoint as ckpt

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    if format != "js" and (refine_iters is not None or refine_cost is not None or refine_retry is not None):
        raise ExportError("--refine, --refine-cost and --refine-retry apply to --format js only")
    if format != "js" and tracker is not None:
        raise ExportError("--tracker applies to --format js only")
    cam = camlib.parse_camera(camera)  # bad cameras and a non-empty --out fail before loading
    _check_not_the_source(Path(checkpoint), Path(out))
    _check_out(Path(out), force)
    solver = ckpt.load(checkpoint)
    return export_solver(
        solver,
        format,
        out,
        quantize=quantize,
        camera=cam,
        force=force,
        source=Path(checkpoint).absolute().name,
        refine_iters=refine_iters,
        refine_cost=refine_cost,
        refine_retry=refine_retry,
        tracker=tracker,
    )
