using System;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Tools.Evaluation;

[TestClass]
public sealed class FrechetDistanceTests
{
    [TestMethod]
    public void OneDimensionalGaussiansHaveTheClosedForm()
    {
        using var scope = NewDisposeScope();
        // (μ₁ − μ₂)² + σ₁² + σ₂² − 2σ₁σ₂ = 1 + 4 + 1 − 4 = 2.
        double d = FrechetDistance.Compute(tensor(new[] { 0.0 }), tensor(new[,] { { 4.0 } }), tensor(new[] { 1.0 }), tensor(new[,] { { 1.0 } }));
        Assert.AreEqual(2.0, d, 1e-12);
    }

    [TestMethod]
    public void NonCommutingCovariancesMatchTheTwoByTwoClosedForm()
    {
        using var scope = NewDisposeScope();
        var s1 = new[,] { { 2.0, 0.5 }, { 0.5, 1.0 } };
        var s2 = new[,] { { 1.0, -0.3 }, { -0.3, 3.0 } };
        // For 2×2 matrices Tr √(Σ₁Σ₂) = √(tr(Σ₁Σ₂) + 2√det(Σ₁Σ₂)).
        double tr = (s1[0, 0] * s2[0, 0]) + (s1[0, 1] * s2[1, 0]) + (s1[1, 0] * s2[0, 1]) + (s1[1, 1] * s2[1, 1]);
        double det = ((s1[0, 0] * s1[1, 1]) - (s1[0, 1] * s1[1, 0])) * ((s2[0, 0] * s2[1, 1]) - (s2[0, 1] * s2[1, 0]));
        double expected = (0.5 * 0.5) + (2.0 * 2.0) + (3.0 + 4.0) - (2 * Math.Sqrt(tr + (2 * Math.Sqrt(det))));
        double d = FrechetDistance.Compute(tensor(new[] { 0.5, 0.0 }), tensor(s1), tensor(new[] { 0.0, 2.0 }), tensor(s2));
        Assert.AreEqual(expected, d, 1e-10);
    }

    [TestMethod]
    public void IdenticalFeatureSetsAreAtDistanceZeroAndShiftsAddTheirSquaredLength()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var a = randn(500, 6, dtype: float64);
        Assert.AreEqual(0.0, FrechetDistance.Compute(a, a), 1e-8);
        var shift = tensor(new[] { 1.0, 0, 0, 2, 0, 0 });
        Assert.AreEqual(5.0, FrechetDistance.Compute(a, a + shift), 1e-8);
        var b = randn(500, 6, dtype: float64) * 2;
        Assert.AreEqual(FrechetDistance.Compute(a, b), FrechetDistance.Compute(b, a), 1e-8);
    }

    [TestMethod]
    public void StatisticsAreTheUnbiasedMeanAndCovariance()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new[,] { { 1.0, 2.0 }, { 3.0, 2.0 }, { 5.0, 8.0 } });
        var (mean, covariance) = FrechetDistance.Statistics(x);
        CollectionAssert.AreEqual(new[] { 3.0, 4.0 }, mean.data<double>().ToArray());
        Assert.AreEqual(4.0, covariance[0, 0].item<double>(), 1e-12);
        Assert.AreEqual(6.0, covariance[0, 1].item<double>(), 1e-12);
        Assert.AreEqual(12.0, covariance[1, 1].item<double>(), 1e-12);
    }
}
