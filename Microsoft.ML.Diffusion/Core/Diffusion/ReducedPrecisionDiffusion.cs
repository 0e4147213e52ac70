using System;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;

namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>A diffusion whose network runs in 16 bits while its maths stays in float32 (mixed precision).</summary>
internal static class ReducedPrecisionDiffusion
{
    /// <summary>
    /// The same diffusion (schedule, objective, loss, variance, min-SNR γ, hybrid λ, device) around a 16-bit copy of
    /// <paramref name="source"/>'s network (<see cref="ReducedPrecisionDenoiser"/>). Its schedule buffers, losses, posterior
    /// and bound stay float32 (float64 for the buffers); only the network's convolutions, products and activations change.
    /// </summary>
    /// <param name="source">A diffusion that is not respaced.</param>
    /// <param name="precision">BFloat16 or Float16.</param>
    /// <returns>A new diffusion that owns its copy of the network (the caller disposes it).</returns>
    public static GaussianDiffusion WithReducedPrecisionNetwork(this GaussianDiffusion source, Precision precision)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.RespacedTimesteps is not null)
        {
            throw new ArgumentException("A respaced diffusion cannot be copied to 16 bits; copy the full diffusion, then respace the copy.", nameof(source));
        }

        var network = ReducedPrecisionDenoiser.Copy(source.Model, precision);
        try
        {
            var copy = new GaussianDiffusion(network, source.Schedule, source.ImageHeight, source.ImageWidth, source.Objective, source.LossType, source.Variance)
            {
                MinSnrGamma = source.MinSnrGamma,
                HybridLambda = source.HybridLambda,
            };
            copy.to(source.Device);
            copy.train(source.Model.training);
            return copy;
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }
}
