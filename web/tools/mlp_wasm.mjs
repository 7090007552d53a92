// The JS module's Dense layer as a WebAssembly SIMD function, assembled here as bytes
// (web/tools/build_module.mjs writes their base64 into pnpjax/js/pnp.mjs; `--check` verifies it).
//
// layer(x, n, w, b, g, y, relu): y = [relu](x W + b), float64 (f64x2), x n dense values at byte
// offset x; W and b in groups of 8 outputs: for group j, the n x 8 block W[:, 8j:8j+8] row by row
// at w + j*n*64, then b[8j:8j+8] at b + j*64 (zero padded past the layer's width); y gets g*8
// values. The inputs that are 0 (relu zeros: about half the hidden units) are skipped: first
// listed at byte 0 ({value f64, row offset i32} per non-zero input, branch-free), then every
// group sums its 4 f64x2 accumulators over the list. The same products and sums in the same
// order as a scalar float64 loop (no fused multiply-add in wasm SIMD): bit-identical results.

const LEB = (v) => {
  const out = [];
  for (;;) {
    const b = v & 127;
    v >>= 7;
    if ((v === 0 && !(b & 64)) || (v === -1 && b & 64)) return [...out, b];
    out.push(b | 128);
  }
};
const vec = (items) => [items.length, ...items.flat()];
const section = (id, body) => [id, ...LEB(body.length), ...body];
const name = (s) => [s.length, ...[...s].map((c) => c.charCodeAt(0))];

// locals: params x n w b g y relu; i c p q (i32); v (f64); xs a0 a1 a2 a3 zero (v128)
const [x, n, w, b, g, y, relu, i, c, p, q, v, xs] = [...Array(13).keys()];
export const NA = 4; // f64x2 accumulators per group: 8 outputs (more measured no faster)
const a = [...Array(NA).keys()].map((k) => 13 + k);
const zero = 13 + NA;
const GB = 16 * NA; // bytes of a group's row

const get = (l) => [0x20, l];
const set = (l) => [0x21, l];
const tee = (l) => [0x22, l];
const i32 = (k) => [0x41, ...LEB(k)];
const add = 0x6a;
const shl = 0x74;
const simd = (op, ...imm) => [0xfd, ...LEB(op), ...imm];
const v128load = (off) => simd(0x00, 4, ...LEB(off));
const v128store = (off) => simd(0x0b, 4, ...LEB(off));
const [splat, f64x2add, f64x2mul, f64x2max] = [0x14, 0xf0, 0xf2, 0xf5];
const loop = 0x03;
const block = 0x02;
const end = 0x0b;
const empty = 0x40;

const body = [
  // list the non-zero inputs: c advances by 16 bytes only past a non-zero value
  [loop, empty],
  [get(c), get(x), get(i), i32(3), shl, add, 0x2b, 3, 0, tee(v), 0x39, 3, 0], // list[c].value = v = x[i]
  [get(c), get(i), i32(GB), 0x6c, 0x36, 2, 8], // list[c].row = 64 i
  [get(c), get(v), 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0x62, i32(4), shl, add, set(c)], // c += 16 (v != 0)
  [get(i), i32(1), add, tee(i), get(n), 0x49, 0x0d, 0], // while (++i < n)
  end,
  // groups of 8 outputs
  [loop, empty],
  a.map((l, k) => [get(b), v128load(16 * k), set(l)]),
  [i32(0), set(p)],
  [block, empty, loop, empty],
  [get(p), get(c), 0x4f, 0x0d, 1], // if (p >= c) break
  [get(p), 0x2b, 3, 0, simd(splat), set(xs)],
  [get(w), get(p), 0x28, 2, 8, add, set(q)],
  a.map((l, k) => [get(l), get(xs), get(q), v128load(16 * k), simd(f64x2mul), simd(f64x2add), set(l)]),
  [get(p), i32(16), add, set(p), 0x0c, 0],
  [end, end],
  [get(relu), 0x04, empty, a.map((l) => [get(l), get(zero), simd(f64x2max), set(l)]), end],
  a.map((l, k) => [get(y), get(l), v128store(16 * k)]),
  [get(y), i32(GB), add, set(y), get(b), i32(GB), add, set(b)],
  [get(w), get(n), i32(GB), 0x6c, add, set(w)],
  [get(g), i32(1), 0x6b, tee(g), 0x0d, 0], // while (--g)
  end,
  end,
].flat(Infinity);

const locals = vec([
  [4, 0x7f],
  [1, 0x7c],
  [2 + NA, 0x7b],
]);
const code = [...locals, ...body];

/** The wasm module's bytes: imports memory e.m, exports the function l. */
export const MLP_WASM = Uint8Array.from([
  ...[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
  ...section(1, vec([[0x60, ...vec(Array(7).fill(0x7f)), 0]])),
  ...section(2, vec([[...name('e'), ...name('m'), 2, 0, 1]])),
  ...section(3, vec([[0]])),
  ...section(7, vec([[...name('l'), 0, 0]])),
  ...section(10, vec([[...LEB(code.length), ...code]])),
]);
