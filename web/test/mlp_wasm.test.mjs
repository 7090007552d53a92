// The module's WebAssembly Dense layer (web/tools/mlp_wasm.mjs) against a scalar float64 loop.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { MLP_WASM } from '../tools/mlp_wasm.mjs';
import { rng } from './synthetic.mjs';

/** y = [relu](x W + b) in float64, the same products and sums in the same order (inputs 0 skipped). */
function reference(x, W, b, n, m, relu) {
  const y = Float64Array.from(b);
  for (let i = 0; i < n; i++) {
    if (x[i] === 0) continue;
    for (let j = 0; j < m; j++) y[j] += x[i] * W[i * m + j];
  }
  return relu ? y.map((v) => (v < 0 ? 0 : v)) : y;
}

function layerOf(memory) {
  return new WebAssembly.Instance(new WebAssembly.Module(MLP_WASM), { e: { m: memory } }).exports.l;
}

test('the wasm layer equals the scalar float64 loop bit for bit (zero inputs, padding, relu)', () => {
  const random = rng(11);
  const memory = new WebAssembly.Memory({ initial: 2 });
  const layer = layerOf(memory);
  const heap = new Float64Array(memory.buffer);
  for (const [n, m] of [
    [1, 1],
    [15, 64],
    [64, 7],
    [23, 13],
    [64, 64],
  ]) {
    for (const relu of [0, 1]) {
      const g = (m + 7) >> 3;
      const W = Float64Array.from({ length: n * m }, () => random() - 0.5);
      const b = Float64Array.from({ length: m }, () => random() - 0.5);
      // x: a third zeros, one -0, the rest of both signs
      const x = Float64Array.from({ length: n }, (_, i) => (i % 3 === 1 ? 0 : i === 2 ? -0 : 4 * (random() - 0.5)));
      const list = 0;
      const xo = list + 16 * n;
      const yo = xo + 8 * n;
      const wo = yo + 64 * g;
      const bo = wo + 64 * n * g;
      heap.fill(0);
      heap.set(x, xo / 8);
      heap.fill(NaN, yo / 8, yo / 8 + 8 * g); // every output is written
      for (let i = 0; i < n * m; i++) heap[wo / 8 + ((i % m) >> 3) * n * 8 + Math.floor(i / m) * 8 + ((i % m) & 7)] = W[i];
      heap.set(b, bo / 8);
      layer(xo, n, wo, bo, g, yo, relu);
      const want = reference(x, W, b, n, m, relu);
      const got = heap.subarray(yo / 8, yo / 8 + m);
      assert.deepEqual([...got], [...want], `n=${n} m=${m} relu=${relu}`);
      assert.ok(
        heap.subarray(yo / 8 + m, yo / 8 + 8 * g).every((v) => v === 0),
        'padding outputs are 0',
      );
    }
  }
});

test('a NaN input propagates (the module then falls back as for any non-finite network output)', () => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const layer = layerOf(memory);
  const heap = new Float64Array(memory.buffer);
  heap.set([NaN, 1], 4); // x at byte 32
  heap.fill(1, 16, 32); // W: 2 x 8 at byte 128
  layer(32, 2, 128, 256, 1, 512, 1);
  assert.ok(heap.subarray(64, 72).every(Number.isNaN));
});

test('the source holds the bytes web/tools/mlp_wasm.mjs assembles', () => {
  const source = readFileSync(new URL('../../pnpjax/js/pnp.mjs', import.meta.url), 'utf8');
  assert.ok(source.includes(`'${Buffer.from(MLP_WASM).toString('base64')}'`));
  assert.ok(WebAssembly.validate(MLP_WASM));
});
