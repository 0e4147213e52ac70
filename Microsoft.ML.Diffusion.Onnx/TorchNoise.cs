using System;
using System.Collections.Generic;

namespace Microsoft.ML.Diffusion.Onnx;

/// <summary>
/// The starting noise x_T of Microsoft.ML.Diffusion's samplers, drawn without TorchSharp: each image's noise is libtorch's
/// CPU <c>randn</c> of one C×H×W float32 tensor from a generator of its own seeded with the image's seed, so the same seed
/// gives the same x_T as the TorchSharp sampler (to within a few units in the last place: see remarks).
/// </summary>
/// <remarks>
/// <para>
/// libtorch's CPU generator is an MT19937 seeded with the low 32 bits of its seed; the library first folds the high half of
/// the 64-bit seed in (<see cref="GeneratorSeed"/>). For a tensor of at least 16 values libtorch fills it with uniform
/// floats u = (r &amp; (2²⁴ − 1))·2⁻²⁴ from successive 32-bit draws r, then turns each block of 16 into normals with the
/// Box–Muller transform (value j and j + 8 of a block from u₁ = 1 − u_j and u₂ = u_{j+8}: √(−2 ln u₁)·cos(2π u₂) and
/// √(−2 ln u₁)·sin(2π u₂)); when the size is not a multiple of 16 it draws 16 more uniforms and redoes the last 16 values.
/// Fewer than 16 values are drawn one by one in double precision (53-bit uniforms from two draws, Box–Muller with a cached
/// second value). This class does the same.
/// </para>
/// <para>
/// libtorch evaluates the logarithm, sine and cosine with its own vectorised (SLEEF) functions on CPUs with AVX2, .NET with
/// the C library's: the two agree to 1–2 units in the last place, so x_T agrees to about 1e-6 (tested against TorchSharp
/// for many seeds and shapes), far below what changes a generated image's 8-bit pixels in practice.
/// </para>
/// </remarks>
public static class TorchNoise
{
    /// <summary>The seed handed to libtorch's generator for a 64-bit image seed: (uint)seed + 0x9E3779B9·(uint)(seed ≫ 32), as the library computes it.</summary>
    /// <param name="seed">The image's seed.</param>
    /// <returns>The 32-bit generator seed.</returns>
    public static uint GeneratorSeed(long seed) => unchecked((uint)seed + (0x9E3779B9u * (uint)((ulong)seed >> 32)));

    /// <summary>
    /// The seed of image <paramref name="index"/> of a run (SplitMix64), as <c>DiffusionSampler.Generate</c> derives them
    /// from its options' seed.
    /// </summary>
    /// <param name="runSeed">The run's seed.</param>
    /// <param name="index">The image's index in the run.</param>
    /// <returns>A non-negative seed.</returns>
    public static long DeriveSeed(long runSeed, long index)
    {
        unchecked
        {
            ulong z = (ulong)runSeed + (0x9E3779B97F4A7C15UL * (ulong)(index + 1));
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return (long)((z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFUL);
        }
    }

    /// <summary>Draws one image's standard normal noise, <paramref name="count"/> = C·H·W values in C, H, W order.</summary>
    /// <param name="seed">The image's seed.</param>
    /// <param name="count">The number of values.</param>
    /// <returns>The values.</returns>
    public static float[] Normal(long seed, int count)
    {
        var result = new float[count];
        Fill(seed, result);
        return result;
    }

    /// <summary>Draws the noise of a batch, one image per seed, into one N·C·H·W array.</summary>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="imageSize">C·H·W.</param>
    /// <returns>The values, image after image.</returns>
    public static float[] Batch(IReadOnlyList<long> seeds, int imageSize)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imageSize);
        var result = new float[checked(seeds.Count * imageSize)];
        for (int i = 0; i < seeds.Count; i++)
        {
            Fill(seeds[i], result.AsSpan(i * imageSize, imageSize));
        }

        return result;
    }

    private static void Fill(long seed, Span<float> data)
    {
        var engine = new Mt19937(GeneratorSeed(seed));
        int size = data.Length;
        if (size < 16)
        {
            FillScalar(engine, data);
            return;
        }

        for (int i = 0; i < size; i++)
        {
            data[i] = UniformFloat(engine);
        }

        for (int i = 0; i + 16 <= size; i += 16)
        {
            BoxMuller16(data.Slice(i, 16));
        }

        if (size % 16 != 0)
        {
            var tail = data.Slice(size - 16, 16);
            for (int i = 0; i < 16; i++)
            {
                tail[i] = UniformFloat(engine);
            }

            BoxMuller16(tail);
        }
    }

    private static float UniformFloat(Mt19937 engine) => (engine.Next() & ((1u << 24) - 1)) * (1.0f / (1 << 24));

    private static void BoxMuller16(Span<float> data)
    {
        for (int j = 0; j < 8; j++)
        {
            float u1 = 1 - data[j];
            float u2 = data[j + 8];
            float radius = MathF.Sqrt(-2 * MathF.Log(u1));
            float theta = 2.0f * MathF.PI * u2;
            data[j] = radius * MathF.Cos(theta);
            data[j + 8] = radius * MathF.Sin(theta);
        }
    }

    private static void FillScalar(Mt19937 engine, Span<float> data)
    {
        double? cached = null;
        for (int i = 0; i < data.Length; i++)
        {
            if (cached is double value)
            {
                data[i] = (float)value;
                cached = null;
                continue;
            }

            double u1 = UniformDouble(engine);
            double u2 = UniformDouble(engine);
            double r = Math.Sqrt(-2.0 * Math.Log(1.0 - u2));
            double theta = 2.0 * Math.PI * u1;
            cached = r * Math.Sin(theta);
            data[i] = (float)(r * Math.Cos(theta));
        }
    }

    private static double UniformDouble(Mt19937 engine)
    {
        ulong high = engine.Next();
        ulong low = engine.Next();
        ulong bits = (high << 32) | low;
        return (bits & ((1UL << 53) - 1)) * (1.0 / (1UL << 53));
    }
}
