using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>RMS normalisation over channels: x / ‖x‖₂ · g · √C, with a learned gain g of shape (1, C, 1, 1).</summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter g;
    private readonly double scale;

    public RmsNorm(long channels)
        : base(nameof(RmsNorm))
    {
        g = new Parameter(ones(1, channels, 1, 1));
        scale = System.Math.Sqrt(channels);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var normalized = nn.functional.normalize(x, p: 2, dim: 1);
        using var gain = g * scale;
        return normalized * gain;
    }
}
