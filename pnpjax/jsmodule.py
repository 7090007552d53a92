"""The standalone JS module (`pnpjax export --format js`): `pnpjax/js/pnp.mjs` with its one
injection point filled.

The module's source is a real ES module file (formatted, linted and unit-tested in Node: see
web/package.json). Its line ``const GENERATED = null;`` is the only place an export writes, and
it writes data: ``const GENERATED = JSON.parse('<json>');`` where the JSON holds the weights
(uint8: `encode_uint8`; float16/float32: base64 of the little-endian values), layer shapes,
standardisation, the recipe (inputs, translation, roll weights), camera, layout points, the
refinement's and the tracker's defaults and the public metadata. Every string of a checkpoint (layout and point names, units, config name)
reaches the module only inside that JSON text, escaped so that it cannot end the string literal,
the script element or the line (``\\``, ``'``, ``<``, ``>``, ``&`` and, by ``ensure_ascii``,
U+2028/U+2029 are escaped). Non-finite values are refused before anything is written.

The exported text is ``pnp.notrack.min.mjs`` (the default) or, with ``--tracker``, ``pnp.min.mjs``:
the source minified after its injection line by terser, without or with ``createTracker``'s code
(``node web/tools/build_module.mjs``; `npm test` checks that both are current), to keep the
download small. An installed pnpjax needs no Node to export.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from importlib import resources
from typing import Any

import numpy as np

from pnpjax import camera as camlib
from pnpjax.tfjs import ExportError

SOURCE_NAME = "pnp.mjs"  # the readable source (web/ lints, formats and unit-tests it)
BUILT_NAME = "pnp.min.mjs"  # the same, minified after the injection line (web/tools/build_module.mjs)
# The same without the tracker's code (its createTracker throws, naming --tracker): the default export.
# The tracker is opt-in because issue 9's size target (16 KB / 9 KB gzip for the default module, with
# the refinement) leaves no room for it: it adds ~2 KB raw (experiments/module_size.py).
NO_TRACKER_NAME = "pnp.notrack.min.mjs"
TYPES_NAME = "pnp.d.ts"  # TypeScript declarations of every module (static: no export data in them)
INJECTION_LINE = "const GENERATED = JSON.parse('null');"
REFINE_COSTS = ("image", "object", "ml")
# `pnpjax export --refine` default: the smallest number of ml-cost LM steps with which the
# default module (blazeface6, uint8, pixel camera) has a median rotation error within 1.01x of
# OpenCV.js SQPnP's at every realistic noise level (experiments/bench_web.py: 1 step with the
# checkpoints of issue 13's recipe; the earlier checkpoints needed 2).
DEFAULT_REFINE_ITERS = 1
DEFAULT_REFINE_COST = "ml"
# `pnpjax export --refine-retry` default: ml steps added for a gross fit (refine.refine_pose's
# `retry`): the off-axis faces whose network start is > 30 degrees off need up to ~30 steps in all
# (experiments/bench_web.py: with it the default module has no failure where SQPnP has none).
DEFAULT_REFINE_RETRY = 20
MAX_REFINE_ITERS = 100  # the module's MAX_ITERATIONS
# The optional parts of pnp.mjs (web/tools/build_module.mjs puts each on a line of pnp.min.mjs that
# starts with /*NAME*/): the uint8 or the float16/float32 weight decoder, the 6d head, the perspective roll.
OPTIONAL_PARTS = ("uint8", "float", "6d", "perspective")


def source_text(name: str = BUILT_NAME) -> str:
    """The module's source (``pnp.mjs``), a minified build (``pnp.min.mjs``, ``pnp.notrack.min.mjs``)
    or its TypeScript declarations (``pnp.d.ts``), as shipped with the package."""
    return resources.files("pnpjax").joinpath("js", name).read_text(encoding="utf-8")


def float32_number(v: float) -> float:
    """The shortest decimal that rounds back to the same float32 (the JS side applies Math.fround)."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-"))


def _check_finite(name: str, values: Any) -> None:
    a = np.asarray(values, np.float64)
    if not np.all(np.isfinite(a)):
        raise ExportError(
            f"cannot export: the checkpoint's {name} has {int(np.sum(~np.isfinite(a)))} non-finite values (NaN or inf)"
        )


def check_solver_finite(solver) -> None:
    """Refuse a checkpoint whose params, standardisation statistics or layout are not finite."""
    import jax

    for path, leaf in jax.tree_util.tree_flatten_with_path(solver.params)[0]:
        _check_finite("parameter " + "/".join(str(getattr(k, "key", k)) for k in path), leaf)
    for field, value in zip(solver.stats._fields, solver.stats):
        if value is not None:
            _check_finite(f"statistic {field}", value)
    _check_finite("layout points", solver.layout.array)
    y_std = np.asarray(solver.stats.y_std, np.float64)
    if np.any(y_std == 0) or (solver.stats.x_std is not None and np.any(np.asarray(solver.stats.x_std) == 0)):
        raise ExportError("cannot export: the checkpoint's standardisation has a zero standard deviation")


# uint8 weights as text: per tensor, the byte's offset d from the tensor's zero code c (the code of
# 0.0, where trained weights cluster), zigzag-coded z = 2d (d >= 0) or -2d - 1, written as one
# character of ALPHABET when z < ONE_CHAR, else as two (ONE_CHAR + (z - ONE_CHAR) // 89, then the
# rest). Printable ASCII without the characters JSON or the JS string literal would escape: on the
# shipped blazeface6 weights 5,820 B (gzip 4,343 B) against base64's 7,520 B (5,573 B).
ALPHABET = "".join(chr(i) for i in range(32, 127) if chr(i) not in "\"'\\<>&")
ONE_CHAR = 84
assert len(ALPHABET) == 89 and ONE_CHAR + (len(ALPHABET) - ONE_CHAR) * len(ALPHABET) > 510


def encode_uint8(codes: np.ndarray, zero: int) -> str:
    """One tensor's uint8 codes as text (see ALPHABET; the module's decodeWeights inverts it)."""
    d = np.asarray(codes, np.int64) - int(zero)
    z = np.where(d >= 0, 2 * d, -2 * d - 1)
    one = z < ONE_CHAR
    hi = np.where(one, z, ONE_CHAR + (z - ONE_CHAR) // len(ALPHABET))
    lo = (z - ONE_CHAR) % len(ALPHABET)
    return "".join(ALPHABET[h] if o else ALPHABET[h] + ALPHABET[x] for h, x, o in zip(hi, lo, one))


def _recipe(solver) -> dict[str, Any] | None:
    """The model's geometric recipe (pnpjax.model.ModelConfig inputs / translation / roll) as the module reads it."""
    m = solver.config.model
    kind = getattr(m, "roll", "none")
    roll = kind != "none"
    weights = getattr(solver.stats, "roll_weights", None)
    if roll and weights is None:
        raise ExportError(f"cannot export: the model has roll='{kind}' but its statistics have no roll_weights")
    if (m.inputs, m.translation, roll) == ("standardized", "direct", False):
        return None
    return {
        "centroid": m.inputs in ("centroid", "axis"),
        "axis": m.inputs == "axis",
        "ray": m.translation == "ray",
        "roll": [float32_number(v) for v in np.asarray(weights, np.float64)] if roll else None,
        "perspective": kind == "perspective",
    }


def module_data(
    solver,
    cam: camlib.Camera | None,
    quantize: str,
    source: str,
    *,
    refine_iters: int,
    refine_cost: str,
    refine_retry: int = 0,
    tracker: bool = False,
) -> dict[str, Any]:
    """Everything the module needs, as JSON-ready data (the value of ``GENERATED``); the tracker's
    defaults (``track``) only for a module with the tracker."""
    from pnpjax import refine, stack

    if not (isinstance(refine_iters, int) and 0 <= refine_iters <= MAX_REFINE_ITERS):
        raise ExportError(f"--refine must be an integer in [0, {MAX_REFINE_ITERS}], got {refine_iters}")
    if not (isinstance(refine_retry, int) and 0 <= refine_retry <= MAX_REFINE_ITERS):
        raise ExportError(f"--refine-retry must be an integer in [0, {MAX_REFINE_ITERS}], got {refine_retry}")
    if not isinstance(tracker, bool):
        raise ExportError(f"tracker must be True or False, got {tracker!r}")
    if refine_cost not in REFINE_COSTS:
        raise ExportError(f"unknown refinement cost {refine_cost!r}; expected one of {', '.join(REFINE_COSTS)}")
    check_solver_finite(solver)
    blob, quant, layers = stack.js_weights(solver, quantize)
    cfg = solver.config
    proto = cfg.seed_test if cfg.protocol == "seed" else cfg.realistic
    noise = refine.noise_model_of(proto)
    f32 = lambda a: [float32_number(v) for v in np.asarray(a, np.float64).ravel()]
    x_standard = None
    weights = base64.b64encode(blob).decode("ascii")
    if quantize == "uint8":
        sizes = [n for d in layers for n in (d.kernel.size, d.bias.size)]
        codes = np.split(np.frombuffer(blob, np.uint8), np.cumsum(sizes)[:-1])
        zeros = [int(np.clip(np.round(-m / s), 0, 255)) if s > 0 else 0 for s, m in quant]
        weights = "".join(encode_uint8(c, z) for c, z in zip(codes, zeros))
        quant = [(s, m, z) for (s, m), z in zip(quant, zeros)]
    if quantize == "float32":  # the module applies the input standardisation (see export.js_weights)
        x_standard = [f32(solver.stats.x_mean), f32(solver.stats.x_std)]
    data = {
        "metadata": stack.export_metadata(solver, cam, "js", quantize, source),
        "k": solver.layout.num_points,
        "points": f32(solver.layout.array),
        # Full float64 intrinsics (JS numbers are doubles): a float32 fx alone moves far faces by ~1e-5 cm.
        "camera": [float(v) for v in stack.image_intrinsics(cam)],
        "gl": stack.frame_of(cam) == "opengl",
        "model": _recipe(solver),
        # (n_in, n_out) per Dense layer: relu on all but the last.
        "layers": [[int(d.kernel.shape[0]), int(d.kernel.shape[1])] for d in layers],
        "dtype": quantize,
        "quant": [[float32_number(q[0]), float32_number(q[1]), *q[2:]] for q in quant],
        "xStandard": x_standard,
        "yStd": f32(solver.stats.y_std),
        "yMean": f32(solver.stats.y_mean),
        "refine": {
            "iterations": refine_iters,
            "cost": refine_cost,
            "retry": refine_retry,
            "sigma3d": float(noise.sigma_3d),
            "noise2d": float(noise.noise_2d),
        },
        "weights": weights,
    }
    return tracker_data(data, tracker)


def tracker_data(data: dict[str, Any], tracker: bool) -> dict[str, Any]:
    """`data` (``GENERATED``) for a module with (`tracker`) or without createTracker: its
    ``metadata.tracker``, and the tracker's defaults (``track``) only with it."""
    out = {k: v for k, v in data.items() if k != "track"}
    out["metadata"] = {**data["metadata"], "tracker": tracker}
    return {**out, "track": tracker_defaults()} if tracker else out


def tracker_defaults() -> dict[str, float]:
    """pnpjax.track.TrackerConfig's defaults, camelCase: the JS tracker's (createTracker) options."""
    from pnpjax import track

    camel = lambda name: name.split("_")[0] + "".join(w.capitalize() for w in name.split("_")[1:])
    num = lambda v: int(v) if float(v).is_integer() else v  # 400 rather than 400.0: the same JS number
    return {camel(k): num(v) for k, v in dataclasses.asdict(track.TrackerConfig()).items()}


def js_string_literal_json(data: Any) -> str:
    """``JSON.parse('...')`` of ``data``: JSON text inside a single-quoted JS string literal.

    JSON.parse (unlike an object literal) keeps keys such as ``__proto__`` as plain data and the
    keys' order; the escapes keep the text inside the literal, the line and any <script> element.
    """
    try:
        text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except ValueError as e:
        raise ExportError(f"cannot export: {e}") from None
    for a, b in (
        ("\\", "\\\\"),
        ("'", "\\'"),
        ("<", "\\x3c"),
        (">", "\\x3e"),
        ("&", "\\x26"),
    ):
        text = text.replace(a, b)
    assert "\n" not in text and "\r" not in text
    return f"JSON.parse('{text}')"


def module_source(
    solver,
    cam: camlib.Camera | None,
    quantize: str,
    source: str,
    *,
    refine_iters: int | None = None,
    refine_cost: str | None = None,
    refine_retry: int | None = None,
    tracker: bool = False,
    minified: bool = True,
) -> str:
    """The text of the exported module (`pnpjax export --format js`): the minified build with
    (`tracker`) or without createTracker, its injection line replaced by the data. Not `minified`:
    the readable source, tracker included. A refinement default left None (or cost "") is the
    module's: DEFAULT_REFINE_ITERS, DEFAULT_REFINE_COST, DEFAULT_REFINE_RETRY."""
    data = module_data(
        solver,
        cam,
        quantize,
        source,
        refine_iters=DEFAULT_REFINE_ITERS if refine_iters is None else refine_iters,
        refine_cost=refine_cost or DEFAULT_REFINE_COST,
        refine_retry=DEFAULT_REFINE_RETRY if refine_retry is None else refine_retry,
        tracker=tracker or not minified,
    )
    return fill(source_text(built_name(tracker) if minified else SOURCE_NAME), data)


def built_name(tracker: bool) -> str:
    """The minified build an export fills: with the tracker's code or without it."""
    return BUILT_NAME if tracker else NO_TRACKER_NAME


def fill(text: str, data: dict[str, Any]) -> str:
    """A build of the module (or its source) with its injection line holding ``data`` and only the optional parts it calls."""
    lines = text.split("\n")
    if lines.count(INJECTION_LINE) != 1:
        raise ExportError(f"the module's source must contain the line {INJECTION_LINE!r} exactly once")
    lines[lines.index(INJECTION_LINE)] = f"const GENERATED = {js_string_literal_json(data)};"
    return "\n".join(_optional_parts(lines, needed_parts(data)))


def needed_parts(data: dict[str, Any]) -> set[str]:
    """The optional parts of the module (pnp.mjs `// (optional NAME)`) an export with this data calls."""
    parts = {"uint8" if data["dtype"] == "uint8" else "float"}
    parts |= {"6d"} if len(data["yStd"]) == 9 else set()
    return parts | ({"perspective"} if (data["model"] or {}).get("perspective") else set())


def _optional_parts(lines: list[str], needed: set[str]) -> list[str]:
    """The lines of the minified build without the optional parts not needed (each a line ``/*NAME*/...``)."""
    out = []
    for line in lines:
        m = re.match(r"/\*(\w+)\*/", line)
        if m and m.group(1) in OPTIONAL_PARTS:
            if m.group(1) in needed:
                out.append(line[m.end() :])
        else:
            out.append(line)
    return out
