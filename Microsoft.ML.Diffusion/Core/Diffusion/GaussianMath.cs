using System;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>Closed forms for Gaussians used by the variational bound. Every function works elementwise in the inputs' dtype.</summary>
public static class GaussianMath
{
    // Held for the life of the process (see Core/Runtime/Scalars.cs).
    private static readonly Scalar HalfWidth = (1.0 / 255.0).ToScalar(); // half a bucket of the 8-bit grid on [−1, 1]
    private static readonly Scalar Tiny = 1e-12.ToScalar();
    private static readonly Scalar LowestBucket = (-0.999).ToScalar();
    private static readonly Scalar HighestBucket = 0.999.ToScalar();
    private static readonly Scalar MinusOne = (-1.0).ToScalar();
    private static readonly Scalar SqrtTwoOverPi = Math.Sqrt(2.0 / Math.PI).ToScalar();
    private static readonly Scalar CubicCoefficient = 0.044715.ToScalar();
    private static readonly Scalar Three = 3.ToScalar();

    /// <summary>KL(N(μ₁, e^{logσ²₁}) ‖ N(μ₂, e^{logσ²₂})) in nats, elementwise.</summary>
    /// <param name="mean1">μ₁.</param>
    /// <param name="logVariance1">log σ²₁.</param>
    /// <param name="mean2">μ₂.</param>
    /// <param name="logVariance2">log σ²₂.</param>
    /// <returns>½(−1 + log σ²₂ − log σ²₁ + σ²₁/σ²₂ + (μ₁ − μ₂)²/σ²₂).</returns>
    public static Tensor NormalKl(Tensor mean1, Tensor logVariance1, Tensor mean2, Tensor logVariance2)
    {
        using var scope = NewDisposeScope();
        var diff = mean1 - mean2;
        var kl = Scalars.Half * (logVariance2.Plus(MinusOne) - logVariance1).Plus((logVariance1 - logVariance2).exp()).Plus(diff * diff * (-logVariance2).exp());
        return kl.MoveToOuterDisposeScope();
    }

    /// <summary>The standard normal CDF Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³))), elementwise.</summary>
    /// <param name="x">The argument.</param>
    /// <returns>The approximate CDF.</returns>
    public static Tensor ApproxStandardNormalCdf(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inner = SqrtTwoOverPi * x.Plus(CubicCoefficient * x.pow(Three));
        return (Scalars.Half * inner.tanh().Plus(Scalars.OneReal)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// log-likelihood of 8-bit data scaled to [−1, 1] under a Gaussian discretised into 256 buckets of
    /// width 2/255 whose two edge buckets extend to ±∞ (Ho et al. 2020, eq. 13), elementwise.
    /// </summary>
    /// <param name="x">The data, values k·2/255 − 1 for k = 0…255.</param>
    /// <param name="means">The Gaussian means.</param>
    /// <param name="logScales">The log standard deviations.</param>
    /// <returns>The log-probability of each element's bucket, in nats.</returns>
    public static Tensor DiscretizedGaussianLogLikelihood(Tensor x, Tensor means, Tensor logScales)
    {
        using var scope = NewDisposeScope();
        var centered = x - means;
        var invStdv = (-logScales).exp();
        var cdfPlus = ApproxStandardNormalCdf(invStdv * centered.Plus(HalfWidth));
        var cdfMin = ApproxStandardNormalCdf(invStdv * (centered - HalfWidth));
        var logCdfPlus = cdfPlus.clamp_min(Tiny).log();
        var logOneMinusCdfMin = Scalars.OneReal.Minus(cdfMin).clamp_min(Tiny).log();
        var logCdfDelta = (cdfPlus - cdfMin).clamp_min(Tiny).log();
        var result = where(x < LowestBucket, logCdfPlus, where(x > HighestBucket, logOneMinusCdfMin, logCdfDelta));
        return result.MoveToOuterDisposeScope();
    }
}
