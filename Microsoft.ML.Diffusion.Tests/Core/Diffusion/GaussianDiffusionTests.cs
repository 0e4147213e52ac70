using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Diffusion;

[TestClass]
public sealed class GaussianDiffusionTests
{
    [TestMethod]
    public void BuildingAModelMakesGlibcServeLargeBlocksFromTheHeap()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Inconclusive("The allocator tuning applies to glibc on Linux only.");
        }

        if (Environment.GetEnvironmentVariable("MLDIFFUSION_TUNE_ALLOCATOR") == "0")
        {
            Assert.Inconclusive("MLDIFFUSION_TUNE_ALLOCATOR=0 turns the tuning off in this process.");
        }

        using var d = TinyModels.Diffusion(timesteps: 10);
        Assert.IsTrue(DiffusionRuntime.IsNativeAllocatorTuned);
        // The effect, not the flag: glibc maps any block above its largest dynamic mmap threshold (32 MiB) with a fresh mmap
        // unless M_MMAP_MAX is 0. mallinfo2's hblks counts the mapped blocks of the whole process.
        var before = Glibc.mallinfo2();
        IntPtr block = Glibc.malloc((nuint)(40 << 20));
        Assert.AreNotEqual(IntPtr.Zero, block);
        var during = Glibc.mallinfo2();
        Glibc.free(block);
        Assert.AreEqual(before.hblks, during.hblks, "a 40 MiB block was mapped on its own, so M_MMAP_MAX = 0 is not in force");
        Assert.IsTrue(during.uordblks >= before.uordblks + (39u << 20), $"the heap's bytes in use grew by {((long)during.uordblks - (long)before.uordblks) >> 20} MiB, not by the block");
    }

    [TestMethod]
    public void NoiseStartAndVelocityConversionsInvert()
    {
        using var d = TinyModels.Diffusion(timesteps: 100, schedule: BetaSchedule.Cosine);
        using var scope = NewDisposeScope();
        manual_seed(3);
        var x0 = randn(4, 1, 8, 8, dtype: float64);
        var eps = randn(4, 1, 8, 8, dtype: float64);
        var t = tensor(new long[] { 0, 7, 50, 99 });
        var xt = d.QSample(x0, t, eps);
        Assert.IsTrue(allclose(d.PredictStartFromNoise(xt, t, eps), x0, rtol: 0, atol: 1e-9));
        Assert.IsTrue(allclose(d.PredictNoiseFromStart(xt, t, x0), eps, rtol: 0, atol: 1e-6));
        var v = d.PredictVelocity(x0, t, eps);
        Assert.IsTrue(allclose(d.PredictStartFromVelocity(xt, t, v), x0, rtol: 0, atol: 1e-9));

        // Against the formulas, with ᾱ from the schedule on the host: x_t = √ᾱ x₀ + √(1 − ᾱ) ε, v = √ᾱ ε − √(1 − ᾱ) x₀.
        long[] steps = t.data<long>().ToArray();
        for (int i = 0; i < steps.Length; i++)
        {
            double a = d.Schedule.AlphasCumprod[(int)steps[i]];
            Assert.IsTrue(allclose(xt[i], (Math.Sqrt(a) * x0[i]) + (Math.Sqrt(1 - a) * eps[i]), rtol: 0, atol: 1e-12), $"x_t at t = {steps[i]}");
            Assert.IsTrue(allclose(v[i], (Math.Sqrt(a) * eps[i]) - (Math.Sqrt(1 - a) * x0[i]), rtol: 0, atol: 1e-12), $"v at t = {steps[i]}");
        }
    }

    [TestMethod]
    public void QPosteriorMatchesTheScheduleCoefficients()
    {
        using var d = TinyModels.Diffusion(timesteps: 30, schedule: BetaSchedule.Sigmoid);
        using var scope = NewDisposeScope();
        var x0 = full(new long[] { 1, 1, 8, 8 }, 0.25, dtype: float64);
        var xt = full(new long[] { 1, 1, 8, 8 }, -0.5, dtype: float64);
        var s = d.Schedule;
        foreach (int step in new[] { 0, 1, 15, 29 })
        {
            var (mean, variance, logVariance) = d.QPosterior(x0, xt, tensor(new long[] { step }));
            double expected = (s.PosteriorMeanCoef1[step] * 0.25) + (s.PosteriorMeanCoef2[step] * -0.5);
            Assert.AreEqual(expected, mean[0, 0, 3, 3].item<double>(), 1e-12);
            Assert.AreEqual(s.PosteriorVariance[step], variance.item<double>(), 1e-15);
            Assert.AreEqual(s.PosteriorLogVarianceClipped[step], logVariance.item<double>(), 1e-12);
        }
    }

    [TestMethod]
    public void QSampleHasTheForwardProcessMoments()
    {
        using var d = TinyModels.Diffusion(timesteps: 10);
        using var scope = NewDisposeScope();
        manual_seed(5);
        var x0 = full(new long[] { 4000, 1, 8, 8 }, 0.6, dtype: float64);
        var t = full(4000, 4, dtype: int64);
        var xt = d.QSample(x0, t, randn_like(x0));
        double ac = d.Schedule.AlphasCumprod[4];
        Assert.AreEqual(Math.Sqrt(ac) * 0.6, xt.mean().item<double>(), 0.005);
        Assert.AreEqual(1 - ac, xt.var().item<double>(), 0.01);
    }

    [TestMethod]
    public void LossIsFiniteForEveryObjectiveLossAndVariance()
    {
        using var scope = NewDisposeScope();
        var images = TinyModels.Patterns().repeat(2, 1, 1, 1);
        foreach (PredictionTarget objective in Enum.GetValues<PredictionTarget>())
        {
            foreach (DiffusionLoss loss in Enum.GetValues<DiffusionLoss>())
            {
                foreach (VarianceType variance in Enum.GetValues<VarianceType>())
                {
                    using var d = TinyModels.Diffusion(objective: objective, loss: loss, variance: variance);
                    using var value = d.Loss(images);
                    Assert.AreEqual(0, value.dim());
                    double v = value.item<float>();
                    Assert.IsTrue(double.IsFinite(v) && v > 0, $"{objective}/{loss}/{variance}: {v}");
                }
            }
        }
    }

    [TestMethod]
    public void MinSnrWeightingScalesThePerSampleLoss()
    {
        using var d = TinyModels.Diffusion(timesteps: 50);
        using var scope = NewDisposeScope();
        var images = TinyModels.Patterns();
        var t = tensor(new long[] { 0, 49 });
        manual_seed(9);
        var noise = randn_like(images);
        var plain = d.LossPerSample(images, t, noise).data<float>().ToArray();
        d.MinSnrGamma = 5;
        var weighted = d.LossPerSample(images, t, noise).data<float>().ToArray();
        d.MinSnrGamma = null;
        // ε objective: weight min(SNR, γ)/SNR; SNR at t = 0 is huge (weight γ/SNR), at t = T−1 tiny (weight 1).
        double snr0 = d.Schedule.SignalToNoiseRatio[0];
        Assert.AreEqual(plain[0] * 5 / snr0, weighted[0], 1e-6 * plain[0]);
        Assert.AreEqual(plain[1], weighted[1], 1e-6);
    }

    [TestMethod]
    public void LearnedVarianceNeedsAMatchingNetwork()
    {
        using var unet = new UNet(TinyModels.Options());
        Assert.ThrowsExactly<ArgumentException>(() => new GaussianDiffusion(unet, imageSize: 8, timesteps: 10, variance: VarianceType.LearnedRange));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new GaussianDiffusion(unet, imageSize: 7, timesteps: 10));
    }

    [TestMethod]
    public void LossRejectsImagesOfTheWrongShape()
    {
        using var d = TinyModels.Diffusion();
        using var wrong = zeros(2, 3, 8, 8);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => d.Loss(wrong));
        StringAssert.Contains(ex.Message, "N×1×8×8");
    }

    [TestMethod]
    public void PriorTermIsAboutZeroWhenAlphaBarEndsNearZero()
    {
        var unet = new UNet(TinyModels.Options());
        using var d = new GaussianDiffusion(unet, imageSize: 8, timesteps: 1000);
        using var scope = NewDisposeScope();
        var prior = d.PriorBitsPerDim(TinyModels.Patterns());
        Assert.IsTrue(prior.max().item<float>() < 1e-4, prior.max().item<float>().ToString());
    }

    [TestMethod]
    public void TheBoundOfAModelPredictingZeroHasItsClosedForm()
    {
        // x₀-prediction from a network whose every weight is 0: x̂₀ = 0 at every step, so each KL term and the prior term
        // have closed forms (ClosedForms); the schedule keeps ᾱ_T ≈ 0.31 so that the prior is far from 0.
        manual_seed(1);
        using var d = new GaussianDiffusion(new UNet(TinyModels.Options()), NoiseSchedule.Custom(ClosedForms.ModerateBetas), 8, 8, PredictionTarget.Start);
        using (no_grad())
        {
            foreach (var p in d.parameters())
            {
                p.zero_();
            }
        }

        using var scope = NewDisposeScope();
        var images = cat(new[] { TinyModels.Patterns(), full(new long[] { 1, 1, 8, 8 }, 0.5) }, 0);
        using var generator = new Generator(4, CPU);
        using var bound = d.BitsPerDim(images, generator: generator);
        CollectionAssert.AreEqual(new long[] { 3, 10 }, bound.Terms.shape);
        double[] terms = bound.Terms.data<double>().ToArray();
        double[] prior = bound.Prior.data<double>().ToArray();
        double[] total = bound.Total.data<double>().ToArray();
        for (int i = 0; i < 3; i++)
        {
            float[] pixels = images[i].flatten().data<float>().ToArray();
            Assert.AreEqual(ClosedForms.Prior(d.Schedule, pixels), prior[i], 1e-5, $"prior of image {i}");
            Assert.IsTrue(prior[i] > 0.05, $"a prior term far from 0: {prior[i]}");
            for (int t = 1; t < 10; t++)
            {
                double expected = ClosedForms.KlOfZeroStartPrediction(d.Schedule, t, pixels);
                Assert.AreEqual(expected, terms[(i * 10) + t], 1e-3 * expected, $"L_{t} of image {i}");
            }

            // Summed on the host, so that a wrong reduction on the device cannot agree with itself.
            Assert.AreEqual(terms.Skip(i * 10).Take(10).Sum() + prior[i], total[i], 1e-9);
        }
    }

    private static class Glibc
    {
        [System.Runtime.InteropServices.DllImport("libc.so.6")]
        public static extern MallInfo2 mallinfo2();

        [System.Runtime.InteropServices.DllImport("libc.so.6")]
        public static extern IntPtr malloc(nuint size);

        [System.Runtime.InteropServices.DllImport("libc.so.6")]
        public static extern void free(IntPtr block);
    }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint arena;
        public nuint ordblks;
        public nuint smblks;
        public nuint hblks;
        public nuint hblkhd;
        public nuint usmblks;
        public nuint fsmblks;
        public nuint uordblks;
        public nuint fordblks;
        public nuint keepcost;
    }
}
