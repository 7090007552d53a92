"""How few weight bits does the default JS module's network need? (experiments/web_bits_study.py)

The default module stores the 64-64 blazeface6 network's trunk (input standardisation folded into
the first layer, `pnpjax.stack.js_weights`) as uint8: per tensor (each kernel and each bias) the
tensorflowjs_converter's affine scheme, codes 0..255 with 0.0 on a code, scale and min rounded to
float32, decoded as fround(code * scale + min). This study keeps that scheme and only changes the
number of codes to 2^b (`quantize_bits`), dequantises back to float, puts the weights back into the
checkpoint's parameters (`unfold_trunk`, the inverse of the fold) and measures, with the Python
refinement the module runs (`pnpjax.inference.refined_prediction`: 1 `ml` Levenberg-Marquardt step
and the export's retry), on bench_web's realistic draws: the network alone, and refined against
OpenCV.js SQPnP's figures on the same draws.

Bytes: the codes as text in the module's JS-string alphabet (`jsmodule.ALPHABET`), two honest
packings, each actually encoded and decoded (`pack`, `unpack`):

  * ``char``: one character per code: the code's offset from the tensor's zero code, zigzag-coded
    and folded where one side of the range is exhausted (`fold`), so the frequent small weights
    are the few frequent characters gzip codes short. When 2^b codes do not fit the 89-character
    alphabet (b >= 7) it is the export's own text (`jsmodule.encode_uint8`: one or two characters),
    so b = 8 reproduces today's weights text exactly.
  * ``dense``: the folded codes of all tensors as one base-2^b digit stream, groups of g codes
    written as c base-89 characters (the g, c with 2^(g b) <= 89^c, c <= 7, fewest characters per
    code): fewer raw bytes, at the cost of gzip's view of single codes.

A second scheme (`bias_corrected`) keeps the biases at 8 bits and shifts each layer's bias by the
mean change of its pre-activations on calibration draws before quantising it (a mean correction
of what the quantised kernels shift), to see whether the lost accuracy is a systematic offset.

The would-be module is today's default module (`web_bench.default_module_data`, filled into
today's minified code) with its weights text and per-tensor (scale, min, zero) replaced by the
b-bit ones, plus `bits` and `packing` fields unless every tensor is 8 bits packed as today, with
and without the tracker.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from experiments.lib import web_bench
from experiments.lib.report import write_results
from pnpjax import camera, inference, jsmodule, model, protocols, refine, stack, tfjs
from pnpjax.textsafe import md_cell, md_code

BITS = (8, 7, 6, 5, 4, 3)
# The second scheme: kernels at b bits, biases at 8, each layer's bias shifted by the mean change
# of its pre-activations on calibration draws (`bias_corrected`): the draws of the checkpoint's
# training protocol under a key none of bench_web's draws use (theirs: 100 key + level).
BIAS_BITS = 8
CALIBRATION_KEY = 9_001
CALIBRATION_N = 20_000
PACKINGS = ("char", "dense")
ALPHABET = jsmodule.ALPHABET
BASE = len(ALPHABET)
MAX_GROUP_CHARS = 7
SQPNP = "OpenCV.js SQPNP"
# The network studied: the 64-64 blazeface6 (the web checkpoint when the study was made; the web
# module has since moved to the 32-32 blazeface6-web, web_bench.WEB_CHECKPOINT).
STUDIED = web_bench.REPO / "checkpoints" / "blazeface6"
COMMITTED_BENCH = web_bench.REPO / "experiments" / "results" / "bench_web" / "results.json"


# --------------------------------------------------------------------------------------------
# Quantiser
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Quantized:
    """One tensor at b bits: codes in [0, 2^b - 1], float32-rounded scale and min, the zero's code."""

    codes: np.ndarray  # int64, the tensor's shape
    scale: float
    min: float
    zero: int
    bits: int

    def dequantize(self) -> np.ndarray:
        """float32 fround(code * scale + min), the module's (and TF.js's) uint8 decode."""
        return tfjs.dequantize_tensor(self.codes, {"dtype": "uint8", "scale": self.scale, "min": self.min})


def quantize_bits(values: np.ndarray, bits: int) -> Quantized:
    """tensorflowjs_converter's uint8 scheme (`pnpjax.tfjs.quantize_tensor`) with 2^bits codes, and
    scale / min rounded to float32 and the zero code as `jsmodule.module_data` stores them."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in [1, 8], got {bits}")
    data = np.asarray(values, np.float32).astype(np.float64)
    quant_max = (1 << bits) - 1
    lo, hi = float(data.min()), float(data.max())
    if lo == hi:  # the converter's convention for a constant tensor
        return Quantized(np.zeros(data.shape, np.int64), 1.0, float(np.float32(lo)), 0, bits)
    scale = (hi - lo) / quant_max
    if lo <= 0.0 <= hi:  # nudge the range so that 0.0 is a code
        zero_point = float(np.round(-lo / scale))
        lo = -zero_point * scale
        hi = quant_max * scale + lo
    codes = np.round((np.clip(data, lo, hi) - lo) / scale).astype(np.int64)
    s32, m32 = float(np.float32(scale)), float(np.float32(lo))
    zero = int(np.clip(np.round(-m32 / s32), 0, quant_max)) if s32 > 0 else 0
    return Quantized(codes, s32, m32, zero, bits)


def trunk_tensors(solver) -> list[np.ndarray]:
    """The tensors the module stores, in its order (kernel, bias per layer): the trunk with the
    input standardisation folded into the first layer (`stack.trunk_layers` at unit intrinsics)."""
    return [t for d in stack.trunk_layers(solver, (1, 1, 0, 0)) for t in (d.kernel, d.bias)]


def unfold_trunk(solver, tensors: list[np.ndarray]) -> dict:
    """The checkpoint's params with the trunk `tensors` (folded, float) put back: the inverse of
    `stack._trunk_f64`'s fold, w0 = w0' x_std, b0 = b0' + x_mean w0' (float64, then float32)."""
    x_mean = np.asarray(solver.stats.x_mean, np.float64)
    x_std = np.asarray(solver.stats.x_std, np.float64)
    names = sorted(solver.params, key=lambda n: int(n.split("_")[-1]))
    if len(tensors) != 2 * len(names):
        raise ValueError(f"{len(tensors)} tensors for {len(names)} layers")
    out = {}
    for i, name in enumerate(names):
        w, b = (np.asarray(a, np.float64) for a in tensors[2 * i : 2 * i + 2])
        if i == 0:
            w, b = w * x_std[:, None], b + x_mean @ w
        out[name] = {"kernel": jnp.asarray(w, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}
    return out


def mlp_inputs(solver, xy: ArrayLike) -> np.ndarray:
    """(N, F) float64: the features the folded trunk takes for (N, K, 2) normalised landmarks (after
    the model's roll canonicalisation, before the standardisation: as `model.compute_stats` sees them)."""
    cfg, stats = solver.config.model, solver.stats
    xy = jnp.asarray(xy, jnp.float32)
    if cfg.roll == "none":
        return np.asarray(model.features(cfg, xy), np.float64)
    xy_c, _, _, axis = model.upright(cfg, xy, stats.roll_weights)
    return np.asarray(model.features(cfg, xy_c, axis), np.float64)


def calibration_inputs(solver, n: int = CALIBRATION_N, key: int = CALIBRATION_KEY) -> np.ndarray:
    """`mlp_inputs` of n draws of the checkpoint's training protocol (realistic) under `key`."""
    b = protocols.sample_jit(solver.config.realistic, jax.random.key(key), solver.layout, n)
    return mlp_inputs(solver, np.asarray(b.xy)[np.asarray(b.valid)])


def bias_corrected(tensors: list[np.ndarray], bits: int, x: np.ndarray, bias_bits: int = BIAS_BITS) -> list[Quantized]:
    """The folded trunk with kernels at `bits` and biases at `bias_bits`, layer by layer: each bias
    first shifted by the mean change of the layer's pre-activations on inputs `x` (N, F) that the
    already quantised layers before it and its quantised kernel cause, then quantised (float64)."""
    out = []
    h_float = h_quant = np.asarray(x, np.float64)
    last = len(tensors) // 2 - 1
    for i in range(0, len(tensors), 2):
        w, b = (np.asarray(t, np.float64) for t in tensors[i : i + 2])
        wq = quantize_bits(w, bits)
        w_deq = wq.dequantize().astype(np.float64)
        bq = quantize_bits(b + np.mean(h_float @ w - h_quant @ w_deq, 0), bias_bits)
        a_float, a_quant = h_float @ w + b, h_quant @ w_deq + bq.dequantize().astype(np.float64)
        h_float, h_quant = (a_float, a_quant) if i // 2 == last else (np.maximum(a_float, 0), np.maximum(a_quant, 0))
        out += [wq, bq]
    return out


# --------------------------------------------------------------------------------------------
# Packer
# --------------------------------------------------------------------------------------------


def fold(codes: np.ndarray, zero: int, bits: int) -> np.ndarray:
    """Codes -> 0..2^b - 1 by distance from `zero`: zigzag (0, +1, -1, +2, ...) while both sides
    have codes, then the longer side alone. A bijection for every zero in range."""
    top = (1 << bits) - 1
    d = np.asarray(codes, np.int64) - int(zero)
    m = min(int(zero), top - int(zero))
    zig = np.where(d >= 0, 2 * d, -2 * d - 1)
    return np.where(np.abs(d) <= m, zig, m + np.abs(d))


def unfold(z: np.ndarray, zero: int, bits: int) -> np.ndarray:
    """The inverse of `fold`."""
    top = (1 << bits) - 1
    z = np.asarray(z, np.int64)
    m = min(int(zero), top - int(zero))
    d = np.where(z % 2 == 0, z // 2, -(z + 1) // 2)
    side = 1 if top - zero > zero else -1  # the side that continues past m
    d = np.where(z <= 2 * m, d, side * (z - m))
    return d + int(zero)


def group_shape(bits: int) -> tuple[int, int]:
    """(g codes, c characters) of the dense packing: 2^(g bits) <= 89^c, c <= 7, fewest chars per code
    (ties: the shorter group)."""
    best = (1, math.ceil(bits / math.log2(BASE)))  # one code in as few characters as it needs
    for c in range(1, MAX_GROUP_CHARS + 1):
        g = int(math.floor(c * math.log2(BASE) / bits + 1e-12))
        while g > 0 and (1 << (g * bits)) > BASE**c:
            g -= 1
        if g > 0 and c / g < best[1] / best[0] - 1e-12:
            best = (g, c)
    return best


def _char_text(t: Quantized) -> str:
    if (1 << t.bits) > BASE:  # the export's own text (one or two characters per code)
        return jsmodule.encode_uint8(t.codes.ravel(), t.zero)
    return "".join(ALPHABET[z] for z in fold(t.codes.ravel(), t.zero, t.bits))


def pack(tensors: list[Quantized], packing: str) -> str:
    """The weights text of quantised tensors (``dense``: all of the same bits): see the module docstring."""
    if packing == "char":
        return "".join(_char_text(t) for t in tensors)
    if packing != "dense":
        raise ValueError(f"unknown packing {packing!r}; expected one of {PACKINGS}")
    bits = {t.bits for t in tensors}
    if len(bits) != 1:
        raise ValueError("the dense packing needs all tensors at the same bits")
    (bits,) = bits
    z = np.concatenate([fold(t.codes.ravel(), t.zero, bits) for t in tensors])
    g, c = group_shape(bits)
    z = np.concatenate([z, np.zeros(-len(z) % g, np.int64)])
    out = []
    for group in z.reshape(-1, g):
        v = 0
        for x in group:
            v = (v << bits) | int(x)
        digits = []
        for _ in range(c):
            v, r = divmod(v, BASE)
            digits.append(ALPHABET[r])
        out.append("".join(reversed(digits)))
    return "".join(out)


def unpack(text: str, sizes: list[int], zeros: list[int], bits: int | list[int], packing: str) -> list[np.ndarray]:
    """The codes of each tensor (flat) from `pack`'s text, given the tensors' sizes, zero codes and bits."""
    bits = [bits] * len(sizes) if isinstance(bits, int) else list(bits)
    index = {ch: i for i, ch in enumerate(ALPHABET)}
    if packing == "char":
        out, pos = [], 0
        for size, zero, b in zip(sizes, zeros, bits):
            if (1 << b) > BASE:  # jsmodule.encode_uint8's text: zigzag, one or two characters
                vals = []
                while len(vals) < size:
                    h = index[text[pos]] if pos < len(text) else None
                    if h is None or (h >= jsmodule.ONE_CHAR and pos + 1 >= len(text)):
                        raise ValueError("the text ends before the last weight")
                    if h < jsmodule.ONE_CHAR:
                        vals.append(h)
                        pos += 1
                    else:
                        vals.append(jsmodule.ONE_CHAR + (h - jsmodule.ONE_CHAR) * BASE + index[text[pos + 1]])
                        pos += 2
                zig = np.asarray(vals, np.int64)
                out.append(np.where(zig % 2 == 0, zig // 2, -(zig + 1) // 2) + zero)
            else:
                z = np.asarray([index[ch] for ch in text[pos : pos + size]], np.int64)
                if len(z) != size:
                    raise ValueError("the text ends before the last weight")
                out.append(unfold(z, zero, b))
                pos += size
        if pos != len(text):
            raise ValueError(f"{len(text) - pos} characters after the last weight")
        return out
    if packing != "dense":
        raise ValueError(f"unknown packing {packing!r}; expected one of {PACKINGS}")
    if len(set(bits)) != 1:
        raise ValueError("the dense packing needs all tensors at the same bits")
    b = bits[0]
    g, c = group_shape(b)
    if len(text) != -(-sum(sizes) // g) * c:
        raise ValueError(f"{len(text)} characters for {sum(sizes)} weights")
    vals = []
    for i in range(0, len(text), c):
        v = 0
        for ch in text[i : i + c]:
            v = v * BASE + index[ch]
        vals += [(v >> (b * (g - 1 - j))) & ((1 << b) - 1) for j in range(g)]
    z = np.asarray(vals[: sum(sizes)], np.int64)
    return [unfold(part, zero, b) for part, zero in zip(np.split(z, np.cumsum(sizes)[:-1]), zeros)]


# --------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------


def would_be_data(data: dict, tensors: list[Quantized], packing: str) -> dict:
    """The default module's data (`web_bench.default_module_data`) with b-bit weights: the packed
    text, per tensor [scale, min, zero], and `bits` (one, or per tensor) and `packing` unless every
    tensor is 8 bits packed as today (a b-bit decoder needs them)."""
    bits = [t.bits for t in tensors]
    out = {**data, "weights": pack(tensors, packing)}
    out["quant"] = [[jsmodule.float32_number(t.scale), jsmodule.float32_number(t.min), t.zero] for t in tensors]
    if bits != [8] * len(bits) or packing != "char":
        out["bits"] = bits[0] if len(set(bits)) == 1 else bits
        out["packing"] = packing
    return out


def module_sizes(data: dict) -> dict[str, tuple[int, int]]:
    """(raw, gzip -9) of the module filled with `data` (today's minified code): "module" with the
    tracker (`pnpjax export --tracker`, as every module was when the study was made) and "without
    tracker" (today's default export); `web_bench.module_sizes` relabelled."""
    sizes = web_bench.module_sizes(data)
    return {"module": sizes["with tracker"], "without tracker": sizes["module"]}


@functools.partial(jax.jit, static_argnames=("fn", "iters", "noise", "retry"))
def _poses(fn, variables, xy, pts, *, iters, noise, retry):
    p = inference.refined_prediction(fn, variables, xy, pts, iters, "ml", noise, retry)
    return p.q, p.t


def poses(solver, params, xy: np.ndarray, iters: int, retry: int, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The network with `params` (the solver's recipe and statistics), then `iters` ml steps with
    `retry`; xy (N, K, 2) normalised, run padded to `pad` rows (one compilation for every level)."""
    fn, (_, stats) = solver.pure
    proto = solver.config.realistic
    noise = refine.noise_model_of(proto) if iters > 0 else None
    pts = jnp.asarray(solver.layout.array, jnp.float32)
    n = len(xy)
    x = np.asarray(xy, np.float32)
    x = np.concatenate([x, np.repeat(x[-1:], max(pad, n) - n, axis=0)], 0)  # finite padding rows
    q, t = _poses(fn, (params, stats), jnp.asarray(x), pts, iters=iters, noise=noise, retry=retry if iters else 0)
    return np.asarray(q, np.float64)[:n], np.asarray(t, np.float64)[:n]


def committed_sqpnp(n: int, key: int, web: Path) -> dict[str, dict] | None:
    """OpenCV.js SQPnP's rows of the committed bench_web run, if it ran these draws (n, key, checkpoint)."""
    if not COMMITTED_BENCH.is_file():
        return None
    res = json.loads(COMMITTED_BENCH.read_text())
    if (res.get("n"), res.get("key"), res.get("web_checkpoint")) != (n, key, Path(web).name):
        return None
    node = res["runtimes"]["Node"]
    return {name: rows[SQPNP] for name, rows in node.items() if name.startswith("realistic")}


def node_sqpnp(settings, points, log=print) -> dict[str, dict]:
    """OpenCV.js SQPnP on the draws (web/tools/bench_web.mjs in Node, no module): its rows per level."""
    inp = web_bench.payload(points, settings, [], None, 1, 0)
    log(f"running OpenCV.js on {len(settings)} settings in Node ...")
    with tempfile.TemporaryDirectory(prefix="pnpjax-web-bits-") as tmp:
        got = web_bench.run_js(inp, Path(tmp))
    return {s.name: web_bench.rows_of(got["results"][s.name], s)[SQPNP] for s in settings}


def run(
    n: int = 2000,
    key: int = 0,
    bits=BITS,
    web: Path = STUDIED,
    sqpnp: str = "auto",
    corrected: bool = True,
    log=print,
) -> dict[str, Any]:
    """Quantise the web checkpoint's trunk to each b in `bits` (and, `corrected`, for b < 8 also
    `bias_corrected`), measure accuracy and bytes (see the module docstring).

    sqpnp: "committed" (bench_web's results.json; its n, key and checkpoint must match), "node"
    (run OpenCV.js here), or "auto" (committed if it matches, else node)."""
    from pnpjax import checkpoint

    web = Path(web)
    solver = checkpoint.load(web)
    settings = web_bench.draws(n, key, web, seed=False)
    ref = committed_sqpnp(n, key, web) if sqpnp in ("auto", "committed") else None
    if ref is None and sqpnp == "committed":
        raise ValueError(f"the committed bench_web run is not n={n}, key={key}, checkpoint {web.name}")
    source = "committed bench_web results.json" if ref is not None else "OpenCV.js in Node, this run"
    if ref is None:
        ref = node_sqpnp(settings, solver.layout.array, log)
    cam = camera.parse_camera(web_bench.EXPORT_CAMERA)
    data = web_bench.default_module_data(solver, cam, web.name)
    iters, retry = jsmodule.DEFAULT_REFINE_ITERS, jsmodule.DEFAULT_REFINE_RETRY
    floats = trunk_tensors(solver)
    today = module_sizes(data)
    out: dict[str, Any] = {
        "n": n,
        "key": key,
        "web_checkpoint": web.name,
        "params": int(sum(t.size for t in floats)),
        "refine": {"iterations": iters, "cost": "ml", "retry": retry},
        "sqpnp_source": source,
        "sqpnp": {name: {k: r[k] for k in ("rot_median", "rot_p90", "failures", "n")} for name, r in ref.items()},
        "today": {
            "weights": web_bench.byte_sizes(data["weights"].encode()),
            **today,
        },
        "rows": {},
    }
    if corrected:
        out["calibration"] = {"key": CALIBRATION_KEY, "n": CALIBRATION_N, "bias_bits": BIAS_BITS}
    variants: list[tuple[str, str, list[Quantized] | None]] = [("float32", "float32", None)]
    variants += [(str(b), "uniform", [quantize_bits(t, b) for t in floats]) for b in bits]
    if corrected and any(b < 8 for b in bits):
        x = calibration_inputs(solver)
        variants += [
            (f"kernels {b} bit, biases {BIAS_BITS}, corrected", "bias-corrected", bias_corrected(floats, b, x))
            for b in bits
            if b < 8
        ]
    for label, scheme, q in variants:
        log(f"weights {label}: network alone and refined on {len(settings)} levels ...")
        tensors = floats if q is None else [t.dequantize() for t in q]
        params = unfold_trunk(solver, tensors)
        row: dict[str, Any] = {"scheme": scheme, "levels": {}}
        if q is not None:
            if scheme == "uniform":
                row["max_step_error"] = max(
                    float(np.max(np.abs(d.astype(np.float64) - f.astype(np.float64)) / qq.scale))
                    for d, f, qq in zip(tensors, floats, q)
                )
            row["bytes"] = {}
            for packing in PACKINGS if scheme == "uniform" else ("char",):
                wd = would_be_data(data, q, packing)
                zeros = [t.zero for t in q]
                back = unpack(wd["weights"], [t.codes.size for t in q], zeros, [t.bits for t in q], packing)
                assert all(np.array_equal(a, t.codes.ravel()) for a, t in zip(back, q)), "packing round trip"
                row["bytes"][packing] = {
                    "weights": web_bench.byte_sizes(wd["weights"].encode()),
                    **module_sizes(wd),
                }
        pad = max(len(s.xy) for s in settings)
        for s in settings:
            a = web_bench.metrics(*poses(solver, params, s.xy, 0, 0, pad), s)
            r = web_bench.metrics(*poses(solver, params, s.xy, iters, retry, pad), s)
            sq = ref[s.name]
            row["levels"][s.name] = {
                "alone_rot_median": a["rot_median"],
                "alone_failures": a["failures"],
                "rot_median": r["rot_median"],
                "rot_p90": r["rot_p90"],
                "failures": r["failures"],
                "ratio": r["rot_median"] / sq["rot_median"],
                "sqpnp_failures": sq["failures"],
            }
        lv = row["levels"].values()
        row["accurate"] = all(x["ratio"] <= web_bench.ACCURACY for x in lv) and all(
            x["sqpnp_failures"] > 0 or x["failures"] == 0 for x in lv
        )
        out["rows"][label] = row
    if "8" in out["rows"]:  # b = 8 with the char packing is today's module, byte for byte
        b8 = out["rows"]["8"]["bytes"]["char"]
        assert (b8["module"], b8["without tracker"]) == (today["module"], today["without tracker"])
    return out


def report(res: dict[str, Any], command: str) -> str:
    levels = list(res["sqpnp"])
    short = [name.split()[-1] for name in levels]
    yes = lambda b: "yes" if b else "**no**"  # noqa: E731
    t = res["today"]
    target = web_bench.MAX_BYTES
    lines = [
        "# How few weight bits does the default JS module need? (issue 9's size target)",
        "",
        f"Generated by {md_code(command)} (`experiments/lib/web_bits.py`).",
        "",
        f"The network {md_cell(res['web_checkpoint'])} ({res['params']:,} weights; the default module's network when "
        "the study was made, 64-64 blazeface6; since then the module's is the 32-32 blazeface6-web) with "
        "its trunk quantised per tensor to b bits by the uint8 export's affine scheme (2^b codes, 0.0 on a code, "
        "float32 scale and min), dequantised back to float32 and run in Python: the network alone, and refined "
        f"as the module does by default ({res['refine']['iterations']} `ml` Levenberg-Marquardt step, retry "
        f"{res['refine']['retry']}; `pnpjax.refine`, the algorithm the module runs in float64, here in float32). "
        f"{res['n']:,} of bench_web's realistic draws per noise level (key {res['key']}). OpenCV.js SQPnP on the same "
        f"draws: {md_cell(res['sqpnp_source'])}. Target (issue 9): refined median rotation <= {web_bench.ACCURACY}x "
        "SQPnP's at every level and no failure (> 30°) where SQPnP has none. Speed does not depend on b (the module "
        "decodes its weights once) and is not measured here.",
        "",
        "Bytes: the weights text actually encoded (and decoded back) in the module's 89-character JS-string "
        "alphabet, `char` = one character per code (b >= 7: the export's own text), `dense` = groups of codes as "
        "base-89 digits; the module is this network's default module (today's minified code and data) with that "
        "text and the b-bit per-tensor (scale, min, zero), raw / gzip -9, with the tracker (`pnpjax export "
        "--tracker`; every module had it when the study was made) and without it (today's default export). "
        f"Target {target[0]:,} / {target[1]:,} B. 8 bits: weights text {t['weights'][0]:,} / {t['weights'][1]:,}, "
        f"module {t['module'][0]:,} / {t['module'][1]:,}, "
        f"without the tracker {t['without tracker'][0]:,} / {t['without tracker'][1]:,}.",
        "",
        *(
            [
                f'Rows "kernels b bit, biases {res["calibration"]["bias_bits"]}, corrected": the same scheme with the kernels at b bits and the biases at '
                f"{res['calibration']['bias_bits']}, each bias first shifted by the mean change of its layer's "
                f"pre-activations (float against quantised, layer by layer) on {res['calibration']['n']:,} draws of the "
                f"checkpoint's training protocol (key {res['calibration']['key']}, not the test draws): a mean "
                "(bias) correction, to see whether the loss is a systematic shift. Bytes with one character per "
                "kernel code and the biases as today's text.",
                "",
            ]
            if "calibration" in res
            else []
        ),
        "| weights | worst refined median / SQPnP | refined failures where SQPnP has none | accuracy kept "
        "| network alone median° (" + ", ".join(short) + ") | weights text raw / gzip (char) | module (char) "
        "| w/o tracker (char) | weights text (dense) | module (dense) | w/o tracker (dense) |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda p: f"{p[0]:,} / {p[1]:,}"  # noqa: E731
    for label, row in res["rows"].items():
        lv = list(row["levels"].values())
        extra = sum(x["failures"] for x in lv if x["sqpnp_failures"] == 0)
        cells = [
            {"float32": "float32 (unquantised)", "uniform": f"{label} bit"}.get(row["scheme"], label),
            f"{max(x['ratio'] for x in lv):.4f}",
            str(extra),
            yes(row["accurate"]),
            ", ".join(f"{x['alone_rot_median']:.3f}" for x in lv),
        ]
        if "bytes" in row:
            for packing in PACKINGS:
                p = row["bytes"].get(packing)
                cells += [fmt(p["weights"]), fmt(p["module"]), fmt(p["without tracker"])] if p else ["–"] * 3
        else:
            cells += ["–"] * 6
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "![refined median / SQPnP's by bits, and bytes](bits.png)",
        "",
        "## Refined median rotation (°) / SQPnP's, by noise level (failures > 30°: refined / SQPnP)",
        "",
        "| weights | " + " | ".join(short) + " |",
        "|---|" + "---:|" * len(short),
        "| SQPnP median° | " + " | ".join(f"{res['sqpnp'][n]['rot_median']:.3f}" for n in levels) + " |",
    ]
    for label, row in res["rows"].items():
        cells = [
            f"{row['levels'][n]['rot_median']:.3f} ({row['levels'][n]['ratio']:.4f}x; "
            f"{row['levels'][n]['failures']}/{row['levels'][n]['sqpnp_failures']})"
            for n in levels
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Quantisation check: the largest |dequantised - float| over all weights, in quantisation steps "
        "(<= 0.5 plus float32 rounding): "
        + ", ".join(
            f"{label} bit {row['max_step_error']:.4f}" for label, row in res["rows"].items() if "max_step_error" in row
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(res["sqpnp"])
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(16, 4.5))

    def kernel_bits(label: str) -> int:
        return int(label.split()[1] if label.startswith("kernels") else label)

    for scheme, style in (("uniform", dict(marker="o")), ("bias-corrected", dict(marker="s", ls="--"))):
        rows = [(kernel_bits(k), r) for k, r in res["rows"].items() if r["scheme"] == scheme]
        if rows:
            name = "every tensor at b bits" if scheme == "uniform" else "kernels at b bits, biases 8, corrected"
            xs = [b for b, _ in rows]
            ys = [max(r["levels"][n]["ratio"] for n in levels) for _, r in rows]
            ax.plot(xs, ys, label=name, **style)
            for b, y, (_, r) in zip(xs, ys, rows):  # failures > 30 deg where SQPnP has none
                extra = sum(x["failures"] for x in r["levels"].values() if x["sqpnp_failures"] == 0)
                if extra:
                    ax.annotate(f"{extra} fails", (b, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if "float32" in res["rows"]:
        f32 = max(res["rows"]["float32"]["levels"][n]["ratio"] for n in levels)
        ax.axhline(f32, color="C2", lw=0.8, label=f"float32 weights ({f32:.4f}x)")
    ax.axhline(web_bench.ACCURACY, color="k", ls=":", lw=0.8, label=f"target {web_bench.ACCURACY}x")
    ax.set_xlabel("bits per weight (kernels)")
    ax.set_ylabel("worst level's refined median rotation / OpenCV.js SQPnP's")
    ax.set_title(f"{res['web_checkpoint']} trunk quantised, 1 ml step, {res['n']:,} draws a level", fontsize=9)
    ax.invert_xaxis()
    ax.legend(fontsize=7)
    bits = [label for label, row in res["rows"].items() if row["scheme"] == "uniform"]
    xs = [int(b) for b in bits]
    for axis, which, target, name in (
        (bx, 1, web_bench.MAX_BYTES[1], "gzip -9"),
        (cx, 0, web_bench.MAX_BYTES[0], "raw"),
    ):
        for packing, marker in (("char", "o"), ("dense", "s")):
            for part, ls in (("module", "-"), ("without tracker", "--")):
                axis.plot(
                    xs,
                    [res["rows"][b]["bytes"][packing][part][which] for b in bits],
                    marker=marker,
                    ls=ls,
                    label=f"{part}, {packing} packing",
                )
        axis.axhline(target, color="k", ls=":", lw=0.8, label=f"target {target:,} B")
        axis.set_xlabel("bits per weight")
        axis.set_ylabel(f"would-be module bytes, {name}")
        axis.invert_xaxis()
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(res: dict[str, Any], out_dir: Path, command: str) -> None:
    write_results(out_dir, res, report(res, command), plot, "bits.png")


__all__ = [
    "fold",
    "group_shape",
    "pack",
    "quantize_bits",
    "run",
    "trunk_tensors",
    "unfold",
    "unfold_trunk",
    "unpack",
    "would_be_data",
    "write",
]
