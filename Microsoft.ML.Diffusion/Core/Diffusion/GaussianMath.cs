using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>Closed forms for Gaussians used by the variational bound. Every function works elementwise in the inputs' dtype.</summary>
public static class GaussianMath
{
    private const double BucketHalfWidth = 1.0 / 255.0;

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
        var kl = 0.5 * (-1.0 + logVariance2 - logVariance1 + (logVariance1 - logVariance2).exp() + (diff * diff * (-logVariance2).exp()));
        return kl.MoveToOuterDisposeScope();
    }

    /// <summary>The standard normal CDF Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³))), elementwise.</summary>
    /// <param name="x">The argument.</param>
    /// <returns>The approximate CDF.</returns>
    public static Tensor ApproxStandardNormalCdf(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inner = Math.Sqrt(2.0 / Math.PI) * (x + (0.044715 * x.pow(3)));
        return (0.5 * (1.0 + inner.tanh())).MoveToOuterDisposeScope();
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
        var cdfPlus = ApproxStandardNormalCdf(invStdv * (centered + BucketHalfWidth));
        var cdfMin = ApproxStandardNormalCdf(invStdv * (centered - BucketHalfWidth));
        var logCdfPlus = cdfPlus.clamp_min(1e-12).log();
        var logOneMinusCdfMin = (1.0 - cdfMin).clamp_min(1e-12).log();
        var logCdfDelta = (cdfPlus - cdfMin).clamp_min(1e-12).log();
        var result = where(x < -0.999, logCdfPlus, where(x > 0.999, logOneMinusCdfMin, logCdfDelta));
        return result.MoveToOuterDisposeScope();
    }
}
