using System;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>Kernel Inception distance: the mean and standard deviation of the unbiased MMD² over random subsets.</summary>
/// <param name="Mean">The mean of MMD² over subsets.</param>
/// <param name="StandardDeviation">Its standard deviation over subsets (numpy's, population form).</param>
/// <param name="SubsetSize">Samples drawn from each set per subset (without replacement).</param>
/// <param name="Subsets">The number of subsets.</param>
public sealed record KernelDistance(double Mean, double StandardDeviation, int SubsetSize, int Subsets);

/// <summary>Improved precision and recall (Kynkäänniemi et al. 2019).</summary>
/// <param name="Precision">The share of generated samples inside the real manifold.</param>
/// <param name="Recall">The share of real samples inside the generated manifold.</param>
/// <param name="NearestNeighbors">k of the k-th nearest neighbour radius.</param>
public sealed record PrecisionRecall(double Precision, double Recall, int NearestNeighbors);

/// <summary>Distances between two sets of feature rows besides FID: KID and improved precision/recall.</summary>
public static class FeatureMetrics
{
    private static readonly Scalar Cubic = 3.ToScalar();

    /// <summary>
    /// KID (Bińkowski et al. 2018) as torch-fidelity and clean-fid define it: the polynomial kernel
    /// k(x, y) = (xᵀy / d + 1)³ and the unbiased MMD² estimate
    /// (Σ_{i≠j} k(xᵢ, xⱼ) + Σ_{i≠j} k(yᵢ, yⱼ)) / (m(m − 1)) − 2 Σ_{i,j} k(xᵢ, yⱼ) / m², averaged over
    /// <paramref name="subsets"/> subsets of m = min(<paramref name="subsetSize"/>, N_real, N_generated) samples of each set.
    /// </summary>
    /// <param name="real">N×D real features.</param>
    /// <param name="generated">M×D generated features.</param>
    /// <param name="subsets">Subsets (torch-fidelity and clean-fid: 100).</param>
    /// <param name="subsetSize">Samples per subset (torch-fidelity and clean-fid: 1000).</param>
    /// <param name="seed">The seed of the subset draws.</param>
    /// <returns>Mean and standard deviation of MMD² with the subset size and count.</returns>
    public static KernelDistance KernelInceptionDistance(Tensor real, Tensor generated, int subsets = 100, int subsetSize = 1000, long seed = 0)
    {
        CheckPair(real, generated);
        if (subsets < 1 || subsetSize < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(subsets), "KID needs at least one subset of at least 2 samples.");
        }

        int m = (int)Math.Min(subsetSize, Math.Min(real.shape[0], generated.shape[0]));
        if (m < 2)
        {
            throw new ArgumentException("KID needs at least 2 samples in each set.", nameof(real));
        }

        using var scope = NewDisposeScope();
        var x = real.to(float64);
        var y = generated.to(float64).to(x.device);
        using Scalar dimension = x.shape[1].ToScalar();
        using Scalar pairs = ((double)m * (m - 1)).ToScalar();
        using Scalar squares = ((double)m * m).ToScalar();
        using var generator = new Generator(unchecked((ulong)seed), CPU);
        var values = new double[subsets];
        for (int s = 0; s < subsets; s++)
        {
            using var step = NewDisposeScope();
            var a = x.index_select(0, DeviceRandom.Permutation(x.shape[0], CPU, generator)[..m].to(x.device));
            var b = y.index_select(0, DeviceRandom.Permutation(y.shape[0], CPU, generator)[..m].to(x.device));
            var kxx = Kernel(a, a, dimension);
            var kyy = Kernel(b, b, dimension);
            var kxy = Kernel(a, b, dimension);
            var within = kxx.sum().sub(kxx.trace()).Plus(kyy.sum().sub(kyy.trace())).div(pairs);
            var across = kxy.sum().div(squares).mul(Scalars.Two);
            values[s] = within.sub(across).item<double>();
        }

        double mean = 0;
        foreach (double v in values)
        {
            mean += v;
        }

        mean /= subsets;
        double variance = 0;
        foreach (double v in values)
        {
            variance += (v - mean) * (v - mean);
        }

        return new KernelDistance(mean, Math.Sqrt(variance / subsets), m, subsets);
    }

    /// <summary>
    /// Improved precision and recall (Kynkäänniemi et al. 2019): each sample's radius is the distance to its k-th nearest
    /// neighbour within its own set; precision is the share of generated samples within the radius of at least one real
    /// sample, recall the share of real samples within the radius of at least one generated sample. Euclidean distances
    /// in double precision, in blocks of rows.
    /// </summary>
    /// <param name="real">N×D real features (N &gt; k).</param>
    /// <param name="generated">M×D generated features (M &gt; k).</param>
    /// <param name="k">The neighbour (the paper: 3).</param>
    /// <returns>Precision and recall.</returns>
    public static PrecisionRecall ImprovedPrecisionRecall(Tensor real, Tensor generated, int k = 3)
    {
        CheckPair(real, generated);
        if (k < 1 || real.shape[0] <= k || generated.shape[0] <= k)
        {
            throw new ArgumentException($"Precision and recall with k = {k} need more than k samples in each set; got {real.shape[0]} and {generated.shape[0]}.", nameof(k));
        }

        using var scope = NewDisposeScope();
        var x = real.to(float64);
        var y = generated.to(float64).to(x.device);
        var realRadii = Radii(x, k);
        var generatedRadii = Radii(y, k);
        double precision = Covered(y, x, realRadii);
        double recall = Covered(x, y, generatedRadii);
        return new PrecisionRecall(precision, recall, k);
    }

    private static Tensor Kernel(Tensor a, Tensor b, Scalar dimension) => a.matmul(b.t()).div(dimension).Plus(Scalars.OneReal).pow(Cubic);

    private const long Block = 1024;

    // Distance of each row to its k-th nearest other row of the same set (the row itself, at distance 0, is the first).
    private static Tensor Radii(Tensor x, int k)
    {
        long n = x.shape[0];
        var radii = empty(new[] { n }, float64, x.device);
        for (long start = 0; start < n; start += Block)
        {
            using var scope = NewDisposeScope();
            long end = Math.Min(n, start + Block);
            var distances = cdist(x.narrow(0, start, end - start), x);
            radii.narrow(0, start, end - start).copy_(distances.topk(k + 1, dim: 1, largest: false).values[.., k]);
        }

        return radii;
    }

    // The share of query rows within the radius of at least one reference row.
    private static double Covered(Tensor queries, Tensor references, Tensor radii)
    {
        long n = queries.shape[0];
        long inside = 0;
        for (long start = 0; start < n; start += Block)
        {
            using var scope = NewDisposeScope();
            long end = Math.Min(n, start + Block);
            var distances = cdist(queries.narrow(0, start, end - start), references);
            inside += distances.le(radii.unsqueeze(0)).any(1).sum().item<long>();
        }

        return (double)inside / n;
    }

    private static void CheckPair(Tensor real, Tensor generated)
    {
        ArgumentNullException.ThrowIfNull(real);
        ArgumentNullException.ThrowIfNull(generated);
        if (real.dim() != 2 || generated.dim() != 2 || real.shape[1] != generated.shape[1])
        {
            throw new ArgumentException($"Expected two N×D feature sets of the same D; got [{string.Join(", ", real.shape)}] and [{string.Join(", ", generated.shape)}].", nameof(generated));
        }
    }

}
