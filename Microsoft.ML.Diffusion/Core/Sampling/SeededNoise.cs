using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// Gaussian noise with one generator per image, so that an image's noise depends only on its seed: never on the batch
/// it is drawn in, nor on the device (every row is drawn on the CPU by <see cref="DeviceRandom"/> and the batch is copied
/// to the device once). Samplers draw all their noise through it — the starting x_T and one draw per step.
/// </summary>
public sealed class SeededNoise : IDisposable
{
    private readonly Generator[] generators;
    private readonly long[] shape;
    private readonly Device device;
    private readonly ScalarType dtype;

    /// <summary>Initializes a new instance of the <see cref="SeededNoise"/> class.</summary>
    /// <param name="seeds">One seed per image (row).</param>
    /// <param name="shape">The shape of one image, for example C×H×W.</param>
    /// <param name="device">The device the batches are put on.</param>
    /// <param name="dtype">The element type of the batches.</param>
    public SeededNoise(IReadOnlyList<long> seeds, long[] shape, Device device, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(device);
        generators = seeds.Select(s => new Generator(GeneratorSeed(s), CPU)).ToArray();
        this.shape = shape.ToArray();
        this.device = device;
        this.dtype = dtype;
    }

    /// <summary>Gets the number of images (rows) of every draw.</summary>
    public int Count => generators.Length;

    /// <summary>
    /// The seed given to libtorch's CPU generator, whose mt19937 keeps only the low 32 bits of its seed: the high half is
    /// folded in (seeds in [0, 2³²) are used as they are), so that seeds differing only in their high bits give different
    /// images.
    /// </summary>
    internal static ulong GeneratorSeed(long seed) => unchecked((uint)seed + (0x9E3779B9u * (uint)((ulong)seed >> 32)));

    /// <summary>Draws N×shape standard normal noise, row i from generator i, on the device.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor Next()
    {
        using var scope = NewDisposeScope();
        var rows = generators.Select(g => DeviceRandom.Normal(shape, CPU, float32, g)).ToArray();
        return stack(rows).to(dtype, device).MoveToOuterDisposeScope();
    }

    /// <summary>Releases the generators.</summary>
    public void Dispose()
    {
        foreach (var g in generators)
        {
            g.Dispose();
        }
    }

    /// <summary>
    /// Derives the seed of image <paramref name="index"/> from a run seed (SplitMix64), so runs with nearby seeds do not
    /// share images.
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
}
