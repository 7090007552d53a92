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

The Dense stack written for TF.js (the ``quat`` head only: the ``6d`` head's Gram-Schmidt is not a
Dense layer) is

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

from pnpjax import camera as camlib, geometry, model, tfjs
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
    "LayersSolver",
    "dense_layers",
    "export_checkpoint",
    "export_solver",
    "image_intrinsics",
    "pose_function",
]

FORMATS: tuple[str, ...] = ("tfjs", "js", "savedmodel")
JS_FILE = "pnp.js"
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


# --------------------------------------------------------------------------------------------
# js: one ES module
# --------------------------------------------------------------------------------------------


def js_module_source(
    solver,
    cam: camlib.Camera | None,
    quantize: str,
    source: str,
    *,
    refine_iters: int | None = None,
    refine_cost: str | None = None,
) -> str:
    """The text of the standalone ES module: `pnpjax/js/pnp.mjs` with its data filled in (see `jsmodule`)."""
    from pnpjax import jsmodule

    return jsmodule.module_source(
        solver,
        cam,
        quantize,
        source,
        refine_iters=jsmodule.DEFAULT_REFINE_ITERS if refine_iters is None else refine_iters,
        refine_cost=refine_cost or jsmodule.DEFAULT_REFINE_COST,
    )


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
) -> Path:
    """Export a loaded `checkpoint.Solver`; returns the written directory (the module file for js)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if quantize not in tfjs.QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; expected one of {', '.join(tfjs.QUANTIZATIONS)}")
    if fmt == "savedmodel" and quantize != "float32":
        raise ExportError("a SavedModel stores float32 weights; --quantize applies to tfjs and js")
    if not all(hasattr(solver, a) for a in ("config", "params", "stats")):
        raise ExportError(
            f"{getattr(solver, 'name', 'this model')} is not a pnpjax checkpoint; only pnpjax checkpoints can be exported"
        )
    m = solver.config.model
    if fmt in ("tfjs", "js") and (m.inputs, m.translation, m.roll) != ("standardized", "direct", "none"):
        raise ExportError(
            f"--format {fmt} takes only model.inputs='standardized', model.translation='direct' and "
            f"model.roll='none' (a linear input map and direct translation, what a stack of Dense layers "
            f"expresses); this model has inputs='{m.inputs}', translation='{m.translation}', roll='{m.roll}': "
            f"export it as savedmodel"
        )
    from pnpjax import integrity

    try:
        integrity.check_solver(solver, source or "checkpoint")  # finite params, sane stats: never export NaN
    except PnpjaxError as e:
        raise ExportError(f"cannot export: {e}") from None
    cam = camlib.parse_camera(camera)
    out = Path(out)
    _check_out(out, force)
    if fmt == "tfjs":
        # float32 keeps the extra input layer that removes the folded first layer's rounding; for
        # uint8/float16 the quantisation error is ~1000x larger, so the smaller stack is kept.
        layers = dense_layers(solver, cam, precise=quantize == "float32")
        meta = export_metadata(solver, cam, fmt, quantization_label(quantize), source)
        with _staged_dir(out, force) as tmp:
            write_tfjs(tmp, layers, solver.layout.num_points, layer_quantizations(len(layers), quantize, False), meta)
        return out
    if fmt == "js":
        text = js_module_source(solver, cam, quantize, source, refine_iters=refine_iters, refine_cost=refine_cost)
        with _staged_dir(out, force) as tmp:
            (tmp / JS_FILE).write_text(text, encoding="utf-8")
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
) -> Path:
    """`pnpjax export`: load a checkpoint and write it as tfjs | js | savedmodel (see module docstring)."""
    from pnpjax import checkpoint as ckpt

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    if format != "js" and (refine_iters is not None or refine_cost is not None):
        raise ExportError("--refine and --refine-cost apply to --format js only")
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
    )
