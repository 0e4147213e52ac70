using System;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Diffusion;

[TestClass]
public sealed class GaussianMathTests
{
    private static Tensor D(params double[] v) => tensor(v, dtype: float64);

    [TestMethod]
    public void KlOfEqualGaussiansIsZero()
    {
        using var scope = NewDisposeScope();
        var kl = GaussianMath.NormalKl(D(0.3, -2), D(-1, 0.5), D(0.3, -2), D(-1, 0.5));
        Assert.AreEqual(0.0, kl.abs().max().item<double>(), 1e-15);
    }

    [TestMethod]
    public void KlMatchesTheClosedForm()
    {
        using var scope = NewDisposeScope();
        // KL(N(0, 1) ‖ N(1, 4)) = log 2 + (1 + 1)/(2·4) − ½.
        var kl = GaussianMath.NormalKl(D(0), D(0), D(1), D(Math.Log(4)));
        Assert.AreEqual(Math.Log(2) + 0.25 - 0.5, kl.item<double>(), 1e-12);
        // KL(N(2, 0.25) ‖ N(−1, 1)) = ½(−1 + 0 − log 0.25 + 0.25 + 9).
        var kl2 = GaussianMath.NormalKl(D(2), D(Math.Log(0.25)), D(-1), D(0));
        Assert.AreEqual(0.5 * (-1 - Math.Log(0.25) + 0.25 + 9), kl2.item<double>(), 1e-12);
    }

    [TestMethod]
    public void ApproximateCdfIsCloseToTheNormalCdf()
    {
        using var scope = NewDisposeScope();
        var cdf = GaussianMath.ApproxStandardNormalCdf(D(0, 1.959964, -1, 3));
        var values = cdf.data<double>().ToArray();
        Assert.AreEqual(0.5, values[0], 1e-15);
        Assert.AreEqual(0.975, values[1], 1e-3);
        Assert.AreEqual(0.158655, values[2], 1e-3);
        Assert.AreEqual(0.998650, values[3], 1e-3);
    }

    [TestMethod]
    public void DiscretizedLikelihoodSumsToOneOverTheBuckets()
    {
        using var scope = NewDisposeScope();
        var buckets = (arange(256, dtype: float64) * (2.0 / 255)) - 1; // the 8-bit grid in [−1, 1]
        foreach (double mean in new[] { -0.5, 0.0, 0.93 })
        {
            foreach (double sigma in new[] { 0.02, 0.3, 2.0 })
            {
                var logp = GaussianMath.DiscretizedGaussianLogLikelihood(buckets, full_like(buckets, mean), full_like(buckets, Math.Log(sigma)));
                Assert.AreEqual(1.0, logp.exp().sum().item<double>(), 1e-6, $"μ = {mean}, σ = {sigma}");
            }
        }
    }

    [TestMethod]
    public void DiscretizedLikelihoodEdgeBucketsExtendToInfinity()
    {
        using var scope = NewDisposeScope();
        // A mean far below −1 puts almost all mass in the lowest bucket.
        var logp = GaussianMath.DiscretizedGaussianLogLikelihood(D(-1, 1), D(-5, 5), D(Math.Log(0.1), Math.Log(0.1)));
        Assert.AreEqual(0.0, logp.abs().max().item<double>(), 1e-9);
    }
}
