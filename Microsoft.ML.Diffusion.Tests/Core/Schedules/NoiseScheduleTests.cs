using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Core.Schedules;

[TestClass]
public sealed class NoiseScheduleTests
{
    [TestMethod]
    public void LinearAlphaBarAtThousandStepsIsAboutFourTimesTenToTheMinusFive()
    {
        var s = NoiseSchedule.Linear(1000);
        Assert.AreEqual(1e-4, s.Betas[0], 1e-15);
        Assert.AreEqual(0.02, s.Betas[999], 1e-15);
        Assert.AreEqual(4.0358e-5, s.AlphasCumprod[999], 0.01e-5);
    }

    [TestMethod]
    public void CosineAlphaBarMatchesItsFormula()
    {
        const int T = 1000;
        var s = NoiseSchedule.Cosine(T);
        static double F(double t) => Math.Pow(Math.Cos(((t / T) + 0.008) / 1.008 * Math.PI / 2), 2);
        foreach (int t in new[] { 1, 10, 100, 500, 900 })
        {
            Assert.AreEqual(F(t) / F(0), s.AlphasCumprod[t - 1], 1e-12, $"t = {t}");
        }

        Assert.IsTrue(s.Betas.All(b => b <= 0.999));
    }

    [TestMethod]
    public void EveryScheduleIsValidMonotoneAndEndsInNoise()
    {
        foreach (BetaSchedule kind in new[] { BetaSchedule.Linear, BetaSchedule.Cosine, BetaSchedule.Sigmoid, BetaSchedule.Geometric })
        {
            foreach (int T in new[] { 10, 100, 1000 })
            {
                var s = NoiseSchedule.Create(kind, T);
                Assert.AreEqual(T, s.Timesteps);
                Assert.IsTrue(s.Betas.All(b => b > 0 && b < 1), $"{kind} T={T}: β out of (0, 1)");
                for (int i = 1; i < T; i++)
                {
                    Assert.IsTrue(s.AlphasCumprod[i] < s.AlphasCumprod[i - 1], $"{kind} T={T}: ᾱ not decreasing at {i}");
                }

                Assert.IsTrue(s.AlphasCumprod[T - 1] < 1e-3, $"{kind} T={T}: ᾱ_T = {s.AlphasCumprod[T - 1]}");
            }
        }
    }

    [TestMethod]
    public void GeometricBetasGrowByAConstantRatio()
    {
        var s = NoiseSchedule.Geometric(50, 1e-3, 0.1);
        Assert.AreEqual(1e-3, s.Betas[0], 1e-15);
        Assert.AreEqual(0.1, s.Betas[49], 1e-12);
        double ratio = s.Betas[1] / s.Betas[0];
        for (int i = 2; i < 50; i++)
        {
            Assert.AreEqual(ratio, s.Betas[i] / s.Betas[i - 1], 1e-12);
        }
    }

    [TestMethod]
    public void PosteriorCoefficientsFollowBayesRuleForTwoGaussians()
    {
        var s = NoiseSchedule.Cosine(50);
        for (int t = 1; t < 50; t++)
        {
            // q(x_{t−1} | x₀) = N(√ᾱ_{t−1} x₀, 1 − ᾱ_{t−1}); q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t).
            double precision = (1 / (1 - s.AlphasCumprodPrev[t])) + (s.Alphas[t] / s.Betas[t]);
            double variance = 1 / precision;
            Assert.AreEqual(variance, s.PosteriorVariance[t], 1e-12 * Math.Max(1, variance));
            Assert.AreEqual(variance * Math.Sqrt(s.AlphasCumprodPrev[t]) / (1 - s.AlphasCumprodPrev[t]), s.PosteriorMeanCoef1[t], 1e-10);
            Assert.AreEqual(variance * Math.Sqrt(s.Alphas[t]) / s.Betas[t], s.PosteriorMeanCoef2[t], 1e-10);
            Assert.AreEqual(Math.Log(s.PosteriorVariance[t]), s.PosteriorLogVarianceClipped[t], 1e-12);
        }

        Assert.AreEqual(0.0, s.PosteriorVariance[0]);
        Assert.AreEqual(Math.Log(s.PosteriorVariance[1]), s.PosteriorLogVarianceClipped[0], 1e-12);
    }

    [TestMethod]
    public void CustomBetasAreValidatedWithTheOffendingIndex()
    {
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NoiseSchedule.Custom(new[] { 0.1, 0.2, 1.0 }));
        StringAssert.Contains(ex.Message, "index 2");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NoiseSchedule.Custom(new[] { 0.1, double.NaN }));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NoiseSchedule.Custom(new[] { 0.0, 0.1 }));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NoiseSchedule.Custom(new[] { 0.1 }));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NoiseSchedule.Linear(1));
        Assert.ThrowsExactly<ArgumentException>(() => NoiseSchedule.Create(BetaSchedule.Custom, 10));
        var ok = NoiseSchedule.Custom(new[] { 0.1, 0.2, 0.3 });
        Assert.AreEqual(0.9 * 0.8 * 0.7, ok.AlphasCumprod[2], 1e-15);
    }
}
