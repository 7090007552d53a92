"""The bits study's quantiser and packer (experiments/lib/web_bits.py): codes survive the packing,
dequantised weights sit within half a step of the float ones, and b = 8 is the export's uint8 exactly."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.lib import web_bench, web_bits
from pnpjax import camera, checkpoint, jsmodule, stack

REPO = web_bench.REPO


@pytest.fixture(scope="module")
def solver():
    return checkpoint.load(REPO / "checkpoints" / "blazeface6")


@pytest.fixture(scope="module")
def tensors(solver):
    return web_bits.trunk_tensors(solver)


def _hostile_tensors(rng) -> list[np.ndarray]:
    """Ranges of every kind: both signs, all positive, all negative, constant, one outlier, tiny."""
    return [
        rng.normal(size=(15, 64)).astype(np.float32),
        rng.uniform(0.1, 2.0, 64).astype(np.float32),
        -rng.uniform(0.1, 2.0, 33).astype(np.float32),
        np.full(7, 0.25, np.float32),
        np.r_[rng.normal(scale=0.01, size=50), 40.0].astype(np.float32),
        np.r_[0.0, rng.uniform(0, 1e-30, 20)].astype(np.float32),
    ]


def test_eight_bits_is_the_exports_uint8(solver, tensors):
    """b = 8: the codes, (scale, min, zero) and decoded weights of jsmodule's export, and its text."""
    blob, quant, decoded = stack.js_weights(solver, "uint8")
    q8 = [web_bits.quantize_bits(t, 8) for t in tensors]
    sizes = [t.size for t in tensors]
    codes = np.split(np.frombuffer(blob, np.uint8), np.cumsum(sizes)[:-1])
    export_tensors = [a for d in decoded for a in (d.kernel, d.bias)]
    for q, c, (scale, mn), ref in zip(q8, codes, quant, export_tensors):
        np.testing.assert_array_equal(q.codes.ravel(), c)
        assert (q.scale, q.min) == (scale, mn)
        np.testing.assert_array_equal(q.dequantize(), ref)  # bit for bit: the module's own decode
    data = web_bench.default_module_data(solver, camera.parse_camera(web_bench.EXPORT_CAMERA))
    wd = web_bits.would_be_data(data, q8, "char")
    assert wd == data  # the would-be data of b = 8 is today's module data, weights text included


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
def test_dequantised_within_half_a_step(bits, tensors):
    rng = np.random.default_rng(bits)
    for t in [*tensors, *_hostile_tensors(rng)]:
        q = web_bits.quantize_bits(t, bits)
        assert q.codes.min() >= 0 and q.codes.max() <= (1 << bits) - 1
        got = q.dequantize().astype(np.float64)
        ref = np.asarray(t, np.float64)
        if ref.min() == ref.max():
            np.testing.assert_array_equal(got, np.float32(ref))
            continue
        # half a step, plus the float32 rounding of scale, min and the decoded value
        slack = 0.5 * q.scale + 1e-6 * (abs(q.min) + q.scale * ((1 << bits) - 1)) + 1e-37
        assert np.max(np.abs(got - ref)) <= slack
        if ref.min() <= 0 <= ref.max():  # 0.0 is a code: exact zeros stay exact
            assert q.dequantize()[np.asarray(t) == 0].tolist() == [0.0] * int(np.sum(np.asarray(t) == 0))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
def test_fold_is_a_bijection(bits):
    top = (1 << bits) - 1
    codes = np.arange(top + 1)
    for zero in range(top + 1):
        z = web_bits.fold(codes, zero, bits)
        assert sorted(z.tolist()) == codes.tolist()
        assert z[zero] == 0
        np.testing.assert_array_equal(web_bits.unfold(z, zero, bits), codes)
        dist = np.abs(codes - zero)
        assert np.all(np.diff(dist[np.argsort(z)]) >= 0)  # nearer codes get smaller values


@pytest.mark.parametrize("packing", web_bits.PACKINGS)
@pytest.mark.parametrize("bits", [3, 4, 5, 6, 8])
def test_pack_round_trip(bits, packing, tensors):
    rng = np.random.default_rng(10 + bits)
    qs = [web_bits.quantize_bits(t, bits) for t in [*tensors, *_hostile_tensors(rng)]]
    text = web_bits.pack(qs, packing)
    assert set(text) <= set(jsmodule.ALPHABET)
    assert jsmodule.js_string_literal_json(text) == f"JSON.parse('\"{text}\"')"  # nothing escaped
    back = web_bits.unpack(text, [q.codes.size for q in qs], [q.zero for q in qs], bits, packing)
    for got, q in zip(back, qs):
        np.testing.assert_array_equal(got, q.codes.ravel())
    n = sum(q.codes.size for q in qs)
    if packing == "char" and bits <= 6:
        assert len(text) == n  # one character per code
    if packing == "dense":
        g, c = web_bits.group_shape(bits)
        assert (1 << (g * bits)) <= len(jsmodule.ALPHABET) ** c
        assert len(text) == -(-n // g) * c


def test_char_packing_at_eight_bits_is_the_exports_text(tensors):
    q8 = [web_bits.quantize_bits(t, 8) for t in tensors]
    assert web_bits.pack(q8, "char") == "".join(jsmodule.encode_uint8(q.codes.ravel(), q.zero) for q in q8)


def test_unfold_trunk_inverts_the_fold(solver, tensors):
    """Float tensors put back into the params give the checkpoint's params (to float32 rounding)."""
    params = web_bits.unfold_trunk(solver, tensors)
    for name, layer in solver.params.items():
        for k in ("kernel", "bias"):
            a, b = np.asarray(params[name][k], np.float64), np.asarray(layer[k], np.float64)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.max(np.abs(b)))


def test_errors():
    with pytest.raises(ValueError):
        web_bits.quantize_bits(np.ones(3), 9)
    with pytest.raises(ValueError):
        web_bits.pack([web_bits.quantize_bits(np.arange(3.0), 4)], "base64")


@pytest.mark.parametrize(
    "args",
    [["--bits", "8", "9"], ["--bits", "0"], ["--n", "0"], ["--checkpoint", "no-such-dir\nx"]],
)
def test_study_user_errors(args, tmp_path, monkeypatch, capsys):
    """experiments/web_bits_study.py: a user error is one line on stderr, exit 2, nothing written."""
    monkeypatch.syspath_prepend(str(REPO / "experiments"))
    import web_bits_study

    out = tmp_path / "out"
    assert web_bits_study.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("web_bits_study.py: error: ")
    assert not out.exists()


def test_mixed_bits_char_round_trip(tensors):
    """Kernels at 5 bits (one character each), biases at 8 (the export's text): codes survive."""
    qs = [web_bits.quantize_bits(t, 5 if i % 2 == 0 else 8) for i, t in enumerate(tensors)]
    text = web_bits.pack(qs, "char")
    back = web_bits.unpack(text, [q.codes.size for q in qs], [q.zero for q in qs], [q.bits for q in qs], "char")
    for got, q in zip(back, qs):
        np.testing.assert_array_equal(got, q.codes.ravel())
    with pytest.raises(ValueError):
        web_bits.pack(qs, "dense")
    with pytest.raises(ValueError):  # a truncated text is refused, not read short
        web_bits.unpack(text[:-1], [q.codes.size for q in qs], [q.zero for q in qs], [q.bits for q in qs], "char")


def test_bias_correction_restores_the_mean_output(solver, tensors):
    """bias_corrected: on its calibration inputs, the quantised trunk's mean output equals the float
    trunk's up to the last bias's own 8-bit rounding (numpy float64 forward pass as reference)."""
    rng = np.random.default_rng(0)
    x = web_bits.mlp_inputs(solver, rng.normal(scale=0.2, size=(400, solver.layout.num_points, 2)))

    def forward(ts):
        h = x
        for i in range(0, len(ts), 2):
            h = h @ np.asarray(ts[i], np.float64) + np.asarray(ts[i + 1], np.float64)
            h = np.maximum(h, 0) if i < len(ts) - 2 else h
        return h

    ref = forward(tensors)
    qs = web_bits.bias_corrected(tensors, 5, x)
    assert [q.bits for q in qs] == [5, 8] * (len(tensors) // 2)
    got = forward([q.dequantize() for q in qs])
    last = qs[-1]
    np.testing.assert_array_less(np.abs(got.mean(0) - ref.mean(0)), 0.5 * last.scale + 1e-5)
    plain = forward([web_bits.quantize_bits(t, 5 if i % 2 == 0 else 8).dequantize() for i, t in enumerate(tensors)])
    assert np.abs(got.mean(0) - ref.mean(0)).max() < np.abs(plain.mean(0) - ref.mean(0)).max()
