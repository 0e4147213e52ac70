using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// Adaptive layer norm (Peebles &amp; Xie 2023, §3.2): LayerNorm over the token width without its own gain and bias, then
/// the gain and shift regressed from the conditioning: LN(x)·(1 + scale) + shift.
/// </summary>
/// <remarks>
/// A 16-bit input (mixed precision) is normalised and modulated in float32 and returned in its own type.
/// The normalisation is written out, (x − mean)/√(var + ε), rather than calling libtorch's <c>layer_norm</c>: outside the
/// CPU and CUDA that falls back to <c>native_batch_norm</c>, which has no meta-device kernel.
/// </remarks>
internal static class AdaptiveLayerNorm
{
    private static readonly Scalar Epsilon = 1e-6.ToScalar();

    /// <param name="x">Tokens N×T×D.</param>
    /// <param name="shift">N×D, one shift per image.</param>
    /// <param name="scale">N×D, one scale per image (0 = LayerNorm unchanged).</param>
    public static Tensor Modulate(Tensor x, Tensor shift, Tensor scale)
    {
        using var scope = NewDisposeScope();
        if (x.IsReduced())
        {
            // A 16-bit network (mixed precision): the normalisation and modulation in float32, the result in the input's type.
            return Modulate(x.to(ScalarType.Float32), shift.to(ScalarType.Float32), scale.to(ScalarType.Float32)).to(x.dtype).MoveToOuterDisposeScope();
        }

        var centred = x - x.mean(new long[] { -1 }, keepdim: true);
        var normalized = centred * centred.Squared().mean(new long[] { -1 }, keepdim: true).Plus(Epsilon).rsqrt();
        return (normalized * scale.unsqueeze(1).Plus(Scalars.One)).Plus(shift.unsqueeze(1)).MoveToOuterDisposeScope();
    }
}
