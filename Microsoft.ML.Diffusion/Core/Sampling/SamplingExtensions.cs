using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>Sampling conveniences on <see cref="GaussianDiffusion"/>.</summary>
public static class SamplingExtensions
{
    /// <summary>Generates a batch of images; image i uses a seed derived from (<paramref name="seed"/>, i).</summary>
    /// <param name="diffusion">The model.</param>
    /// <param name="batchSize">Number of images.</param>
    /// <param name="sampler">The reverse process; default DDPM through all T steps (run by a <see cref="SamplingLoop"/> with its defaults).</param>
    /// <param name="seed">The run seed.</param>
    /// <param name="classes">Labels for a class-conditional model, or null.</param>
    /// <returns>Images N×C×H×W in [−1, 1].</returns>
    public static Tensor Sample(this GaussianDiffusion diffusion, int batchSize, DiffusionScheduler? sampler = null, long seed = 0, Tensor? classes = null)
    {
        ArgumentNullException.ThrowIfNull(diffusion);
        if (batchSize < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "Batch size must be positive.");
        }

        var seeds = Enumerable.Range(0, batchSize).Select(i => SeededNoise.DeriveSeed(seed, i)).ToArray();
        return new SamplingLoop(sampler).Sample(diffusion, seeds, classes);
    }
}
