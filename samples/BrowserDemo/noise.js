// x_T from a seed as Microsoft.ML.Diffusion draws it (see Microsoft.ML.Diffusion.Onnx/TorchNoise.cs and docs/onnx.md):
// one MT19937 generator per image, seeded with (uint)seed + 0x9E3779B9·(uint)(seed >> 32); 24-bit uniform floats;
// Box–Muller in float over blocks of 16 (the last 16 redrawn when the size is not a multiple of 16); below 16 values a
// double-precision path with a cached second value. Float arithmetic is emulated with Math.fround; JavaScript's
// Math.log/sin/cos are double, so a value may differ from .NET's MathF in its last bit (far below a pixel level).
'use strict';

const TorchNoise = (() => {
  const N = 624, M = 397;

  function mt19937(seed) {
    const state = new Uint32Array(N);
    state[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const previous = state[i - 1] ^ (state[i - 1] >>> 30);
      state[i] = (Math.imul(1812433253, previous) + i) >>> 0;
    }

    let index = N;
    function twist() {
      for (let i = 0; i < N; i++) {
        const y = (state[i] & 0x80000000) | (state[(i + 1) % N] & 0x7fffffff);
        let next = state[(i + M) % N] ^ (y >>> 1);
        if (y & 1) {
          next ^= 0x9908b0df;
        }
        state[i] = next >>> 0;
      }
      index = 0;
    }

    return function next() {
      if (index >= N) {
        twist();
      }
      let y = state[index++];
      y ^= y >>> 11;
      y ^= (y << 7) & 0x9d2c5680;
      y ^= (y << 15) & 0xefc60000;
      y ^= y >>> 18;
      return y >>> 0;
    };
  }

  const mask64 = (1n << 64n) - 1n;

  // The generator's 32-bit seed from a 64-bit one (BigInt in, number out).
  function generatorSeed(seed) {
    const s = BigInt.asUintN(64, seed);
    const low = Number(s & 0xffffffffn);
    const high = Number(s >> 32n);
    return (low + Math.imul(0x9e3779b9 | 0, high)) >>> 0;
  }

  // SplitMix64: the seed of image `index` of a run with seed `runSeed` (BigInt), as DiffusionSampler.Generate draws it.
  function deriveSeed(runSeed, index) {
    let z = (BigInt.asUintN(64, runSeed) + 0x9e3779b97f4a7c15n * BigInt(index + 1)) & mask64;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask64;
    return (z ^ (z >> 31n)) & 0x7fffffffffffffffn;
  }

  const f = Math.fround;
  const twoPi = f(2 * f(Math.PI));
  const inv24 = f(1 / (1 << 24));

  function uniformFloat(next) {
    return f((next() & 0xffffff) * inv24);
  }

  function boxMuller16(data, offset) {
    for (let j = 0; j < 8; j++) {
      const u1 = f(1 - data[offset + j]);
      const u2 = data[offset + j + 8];
      const radius = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
      const theta = f(twoPi * u2);
      data[offset + j] = f(radius * f(Math.cos(theta)));
      data[offset + j + 8] = f(radius * f(Math.sin(theta)));
    }
  }

  function uniformDouble(next) {
    const high = BigInt(next());
    const low = BigInt(next());
    const bits = ((high << 32n) | low) & ((1n << 53n) - 1n);
    return Number(bits) / 2 ** 53;
  }

  // Fills data (a Float32Array view) with the standard normal values of one seed.
  function fill(seed, data) {
    const next = mt19937(generatorSeed(seed));
    const size = data.length;
    if (size < 16) {
      let cached = null;
      for (let i = 0; i < size; i++) {
        if (cached !== null) {
          data[i] = cached;
          cached = null;
          continue;
        }
        const u1 = uniformDouble(next);
        const u2 = uniformDouble(next);
        const r = Math.sqrt(-2 * Math.log(1 - u2));
        const theta = 2 * Math.PI * u1;
        cached = r * Math.sin(theta);
        data[i] = r * Math.cos(theta);
      }
      return;
    }

    for (let i = 0; i < size; i++) {
      data[i] = uniformFloat(next);
    }
    for (let i = 0; i + 16 <= size; i += 16) {
      boxMuller16(data, i);
    }
    if (size % 16 !== 0) {
      for (let i = 0; i < 16; i++) {
        data[size - 16 + i] = uniformFloat(next);
      }
      boxMuller16(data, size - 16);
    }
  }

  // N·imageSize values: image i from seeds[i] (BigInt).
  function batch(seeds, imageSize) {
    const result = new Float32Array(seeds.length * imageSize);
    seeds.forEach((seed, i) => fill(seed, result.subarray(i * imageSize, (i + 1) * imageSize)));
    return result;
  }

  return { generatorSeed, deriveSeed, batch };
})();
