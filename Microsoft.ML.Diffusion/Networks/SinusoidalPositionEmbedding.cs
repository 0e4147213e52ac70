using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>Sinusoidal embedding of the timestep (Vaswani et al. 2017): [sin(t·ω_k), cos(t·ω_k)], ω_k = θ^(−k/(d/2 − 1)).</summary>
/// <remarks>
/// The frequencies are computed in <see cref="forward"/> on the timesteps' device rather than kept as a tensor: TorchSharp
/// 0.107 leaves a non-persistent buffer out of <c>named_buffers()</c>, so <c>.to(device)</c> never moved it and the table
/// stayed on the CPU (a CUDA or meta forward failed), and a persistent buffer would enter the saved weights. No tensor
/// field means nothing to move and nothing saved; the values are the same as before, bit for bit.
/// </remarks>
internal sealed class SinusoidalPositionEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly int half;
    private readonly double step;

    public SinusoidalPositionEmbedding(int dim, double theta = 10000)
        : base(nameof(SinusoidalPositionEmbedding))
    {
        if (dim < 4 || dim % 2 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(dim), dim, "The sinusoidal embedding needs an even size of at least 4.");
        }

        half = dim / 2;
        step = Math.Log(theta) / (half - 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor time)
    {
        using var scope = NewDisposeScope();
        var frequencies = exp(arange(half, dtype: float32, device: time.device) * -step);
        var args = time.to(float32).unsqueeze(1) * frequencies.unsqueeze(0);
        return cat(new[] { args.sin(), args.cos() }, 1).MoveToOuterDisposeScope();
    }
}
