using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>Sinusoidal embedding of the timestep (Vaswani et al. 2017): [sin(t·ω_k), cos(t·ω_k)], ω_k = θ^(−k/(d/2 − 1)).</summary>
internal sealed class SinusoidalPositionEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Tensor frequencies;

    public SinusoidalPositionEmbedding(int dim, double theta = 10000)
        : base(nameof(SinusoidalPositionEmbedding))
    {
        if (dim < 4 || dim % 2 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(dim), dim, "The sinusoidal embedding needs an even size of at least 4.");
        }

        int half = dim / 2;
        double step = Math.Log(theta) / (half - 1);
        frequencies = exp(arange(half, dtype: float32) * -step);
        register_buffer(nameof(frequencies), frequencies, persistent: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor time)
    {
        using var scope = NewDisposeScope();
        var args = time.to(float32).unsqueeze(1) * frequencies.unsqueeze(0);
        return cat(new[] { args.sin(), args.cos() }, 1).MoveToOuterDisposeScope();
    }
}
