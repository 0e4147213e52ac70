using System;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>
/// The Fréchet distance between two Gaussians fitted to feature vectors (the statistic behind FID; Heusel et al. 2017):
/// d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½), in double precision. The matrix square root is computed from the
/// eigen-decomposition of the symmetric product Σ₁^½ Σ₂ Σ₁^½, which has the same trace of square root as Σ₁Σ₂.
/// </summary>
/// <remarks>
/// The number depends on the feature network and on the sample count: distances are comparable only when both are the
/// same (the FID complaints in denoising-diffusion-pytorch #224/#226 come from comparing across either). Report the
/// distance between two disjoint real sets of the same size alongside (the floor).
/// </remarks>
public static class FrechetDistance
{
    /// <summary>The mean and covariance (unbiased, N − 1) of feature rows, in double precision.</summary>
    /// <param name="features">N×D features, N ≥ 2.</param>
    /// <returns>The mean (D) and covariance (D×D).</returns>
    public static (Tensor Mean, Tensor Covariance) Statistics(Tensor features)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (features.dim() != 2 || features.shape[0] < 2)
        {
            throw new ArgumentException($"Expected N×D features with N ≥ 2; got shape [{string.Join(", ", features.shape)}].", nameof(features));
        }

        using var scope = NewDisposeScope();
        var x = features.to(float64).cpu();
        var mean = x.mean(new long[] { 0 });
        var centered = x - mean;
        using Scalar degrees = (x.shape[0] - 1).ToScalar();
        var covariance = centered.t().matmul(centered) / degrees;
        return (mean.MoveToOuterDisposeScope(), covariance.MoveToOuterDisposeScope());
    }

    /// <summary>The Fréchet distance between two sets of features.</summary>
    /// <param name="a">N×D features.</param>
    /// <param name="b">M×D features.</param>
    /// <returns>d² (not its square root, as is customary for FID).</returns>
    public static double Compute(Tensor a, Tensor b)
    {
        var (m1, c1) = Statistics(a);
        var (m2, c2) = Statistics(b);
        using (m1)
        using (c1)
        using (m2)
        using (c2)
        {
            return Compute(m1, c1, m2, c2);
        }
    }

    /// <summary>The Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂).</summary>
    /// <param name="mean1">μ₁ (D).</param>
    /// <param name="covariance1">Σ₁ (D×D, symmetric positive semi-definite).</param>
    /// <param name="mean2">μ₂ (D).</param>
    /// <param name="covariance2">Σ₂ (D×D).</param>
    /// <returns>d².</returns>
    public static double Compute(Tensor mean1, Tensor covariance1, Tensor mean2, Tensor covariance2)
    {
        ArgumentNullException.ThrowIfNull(mean1);
        ArgumentNullException.ThrowIfNull(covariance1);
        ArgumentNullException.ThrowIfNull(mean2);
        ArgumentNullException.ThrowIfNull(covariance2);
        using var scope = NewDisposeScope();
        var mu1 = mean1.to(float64).cpu();
        var mu2 = mean2.to(float64).cpu();
        var s1 = Symmetric(covariance1.to(float64).cpu());
        var s2 = Symmetric(covariance2.to(float64).cpu());
        double meanTerm = (mu1 - mu2).Squared().sum().item<double>();
        double traceRoot = TraceOfRoot(s1, s2);
        if (!double.IsFinite(traceRoot))
        {
            // pytorch-fid's fallback for a singular product: add ε·I (ε = 10⁻⁶) to both covariances and take the root again.
            var offset = eye(s1.shape[0], dtype: float64, device: s1.device).mul(Epsilon);
            traceRoot = TraceOfRoot(s1.Plus(offset), s2.Plus(offset));
        }

        return meanTerm + s1.trace().item<double>() + s2.trace().item<double>() - (2 * traceRoot);
    }

    private static readonly Scalar Epsilon = 1e-6.ToScalar();

    // Tr((Σ₁Σ₂)^½) = Σ √λ over the eigenvalues of the symmetric Σ₁^½ Σ₂ Σ₁^½ (similar to Σ₁Σ₂, so the same eigenvalues):
    // the value pytorch-fid takes from scipy.linalg.sqrtm(Σ₁Σ₂) (its real part's trace), computed stably.
    private static double TraceOfRoot(Tensor s1, Tensor s2)
    {
        using var scope = NewDisposeScope();
        var root1 = SquareRoot(s1);
        var product = Symmetric(root1.matmul(s2).matmul(root1));
        return linalg.eigvalsh(product).clamp_min(Scalars.Zero).sqrt().sum().item<double>();
    }

    // The symmetric PSD square root from an eigen-decomposition (negative round-off eigenvalues clamped to 0).
    private static Tensor SquareRoot(Tensor symmetric)
    {
        var (values, vectors) = linalg.eigh(symmetric);
        return vectors.matmul(diag(values.clamp_min(Scalars.Zero).sqrt())).matmul(vectors.t());
    }

    private static Tensor Symmetric(Tensor m) => m.Plus(m.t()) / Scalars.Two;
}
