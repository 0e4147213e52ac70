using System;
using Microsoft.ML.Diffusion.Core.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>The live objects of a training run that a checkpoint saves and restores.</summary>
internal sealed class TrainingState : IDisposable
{
    public TrainingState(Denoiser network, FusedAdamW optimizer, ExponentialMovingAverage? ema, Generator noiseGenerator, Generator orderGenerator, Tensor order, string fingerprint)
    {
        Network = network;
        Optimizer = optimizer;
        Ema = ema;
        NoiseGenerator = noiseGenerator;
        OrderGenerator = orderGenerator;
        Order = order;
        Fingerprint = fingerprint;
    }

    public Denoiser Network { get; }

    public FusedAdamW Optimizer { get; }

    public ExponentialMovingAverage? Ema { get; }

    /// <summary>Gets or sets the mixed-precision policy, whose loss scale a checkpoint saves, or null.</summary>
    public MixedPrecision? MixedPrecision { get; set; }

    public Generator NoiseGenerator { get; }

    public Generator OrderGenerator { get; }

    public string Fingerprint { get; }

    /// <summary>Gets the current permutation of the training rows.</summary>
    public Tensor Order { get; private set; }

    /// <summary>Gets or sets the position in <see cref="Order"/>.</summary>
    public long Cursor { get; set; }

    /// <summary>Gets or sets the number of optimizer steps done.</summary>
    public int Step { get; set; }

    public void ReplaceOrder(Tensor order, long cursor)
    {
        Order.Dispose();
        Order = order;
        Cursor = cursor;
    }

    public void Dispose() => Order.Dispose();
}
