using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// RMS normalisation over channels: x / ‖x‖₂ · g · √C, with a learned gain g of shape (1, C, 1, 1). A 16-bit input is
/// normalised in float32 and returned in its own type (mixed precision keeps normalisations in float32).
/// </summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter g;
    private static readonly Scalar Tiny = 1e-24.ToScalar();
    private readonly Scalar scale;

    public RmsNorm(long channels)
        : base(nameof(RmsNorm))
    {
        g = new Parameter(ones(1, channels, 1, 1));
        scale = System.Math.Sqrt(channels).ToScalar();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        // x / max(‖x‖₂, 1e-12) · g · √C over the channel axis, as F.normalize does, in three kernels instead of its six.
        using var scope = NewDisposeScope();
        if (x.IsReduced())
        {
            // A 16-bit network (mixed precision): the statistics and the scaling in float32, the result in the input's type.
            var wide = x.to(ScalarType.Float32);
            var inverse = wide.Squared().sum(new long[] { 1 }, keepdim: true).clamp_min(Tiny).rsqrt();
            return (wide * inverse * (g.to(ScalarType.Float32) * scale)).to(x.dtype).MoveToOuterDisposeScope();
        }

        var inverseNorm = x.Squared().sum(new long[] { 1 }, keepdim: true).clamp_min(Tiny).rsqrt();
        return (x * inverseNorm * (g * scale)).MoveToOuterDisposeScope();
    }
}
