using System;
using System.Linq;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Sampling;

/// <summary>
/// Samplers against known answers. For data x₀ ~ N(μ, s²) per pixel the optimal denoiser is known in closed form, and
/// so is where the probability-flow ODE takes each starting point: the standardised z = (x_t − α_t μ)/√(α_t² s² + σ_t²)
/// is constant along it, so a deterministic solver started from x_T must end at μ + α₀ s² z/√(α₀² s² + σ₀²).
/// </summary>
[TestClass]
public sealed class SolverTests
{
    private const double Mean = 0.3;
    private const double Spread = 0.2;
    private static readonly long[] Seeds = Enumerable.Range(0, 16).Select(i => (long)(i * 7919)).ToArray();

    [TestMethod]
    public void DpmSolverPlusPlusFollowsTheOdeToItsExactEndAndBeatsDdimWithFewerSteps()
    {
        using var diffusion = Analytic(out var schedule);
        double Error(SamplingLoop sampler)
        {
            using var images = sampler.Sample(diffusion, Seeds);
            using var exact = ExactEnd(schedule);
            return (images - exact).abs().max().item<float>();
        }

        double ddim50 = Error(new SamplingLoop(new DdimScheduler { Steps = 50 }) { ClipDenoised = false });
        double ddim20 = Error(new SamplingLoop(new DdimScheduler { Steps = 20 }) { ClipDenoised = false });
        double dpm10 = Error(new SamplingLoop(new DpmSolverScheduler { Steps = 10 }) { ClipDenoised = false });
        double dpm20 = Error(new SamplingLoop(new DpmSolverScheduler { Steps = 20 }) { ClipDenoised = false });
        double dpm20Karras = Error(new SamplingLoop(new DpmSolverScheduler { Steps = 20, Spacing = TimestepSpacing.Karras }) { ClipDenoised = false });
        double dpm40 = Error(new SamplingLoop(new DpmSolverScheduler { Steps = 40 }) { ClipDenoised = false });
        string report = $"max error: DDIM-20 {ddim20:E2}, DDIM-50 {ddim50:E2}, DPM-Solver++ 10 {dpm10:E2}, 20 {dpm20:E2}, 20 Karras {dpm20Karras:E2}, 40 {dpm40:E2}";
        Console.WriteLine(report);
        Assert.IsTrue(dpm20 < ddim20 / 1.5, "second order beats first order on the same steps: " + report);
        Assert.IsTrue(dpm20Karras < ddim50, "20 Karras-spaced steps beat DDIM's 50: " + report);
        Assert.IsTrue(dpm40 < dpm20 / 3 && dpm20 < dpm10, "the error falls faster than 1/steps: " + report);
    }

    [TestMethod]
    public void StochasticSamplersReachTheDataDistribution()
    {
        using var diffusion = Analytic(out _);
        var seeds = Enumerable.Range(0, 64).Select(i => (long)(1000 + i)).ToArray();
                (double Mean, double Std) Moments(SamplingLoop sampler)
        {
            using var images = sampler.Sample(diffusion, seeds);
            var result = (images.mean().item<float>(), images.std().item<float>());
            Console.WriteLine($"{sampler.Scheduler.GetType().Name}: mean {result.Item1:F4} (want {Mean}), std {result.Item2:F4} (want {Spread})");
            return result;
        }

        // DDPM with the exact denoiser is exact in distribution; Euler-ancestral, a first-order scheme, converges to it as
        // the steps grow (with 20 uniform steps it under-disperses by about a quarter on this narrow distribution).
        var ddpm = Moments(new SamplingLoop(new DdpmScheduler()) { ClipDenoised = false });
        Assert.AreEqual(Mean, ddpm.Mean, 0.015);
        Assert.AreEqual(Spread, ddpm.Std, 0.01);
        var euler20 = Moments(new SamplingLoop(new EulerAncestralScheduler { Steps = 20 }) { ClipDenoised = false });
        var euler100 = Moments(new SamplingLoop(new EulerAncestralScheduler { Steps = 100 }) { ClipDenoised = false });
        Assert.AreEqual(Mean, euler20.Mean, 0.02);
        Assert.AreEqual(Mean, euler100.Mean, 0.02);
        Assert.AreEqual(Spread, euler100.Std, 0.02);
        Assert.IsTrue(Math.Abs(euler100.Std - Spread) < Math.Abs(euler20.Std - Spread) / 2, "more steps, closer spread");
    }

    [TestMethod]
    public void EulerWithoutNoiseIsDeterministicAndAncestralNoiseDependsOnlyOnTheSeed()
    {
        using var diffusion = Analytic(out _);
        var euler = new SamplingLoop(new EulerAncestralScheduler { Steps = 8, Eta = 0 });
        using var a = euler.Sample(diffusion, Seeds[..3]);
        using var b = euler.Sample(diffusion, Seeds[..3]);
        Assert.IsTrue(a.eq(b).all().item<bool>());
        var ancestral = new SamplingLoop(new EulerAncestralScheduler { Steps = 8 });
        using var batch = ancestral.Sample(diffusion, Seeds[..9]);
        using var alone = ancestral.Sample(diffusion, new[] { Seeds[4] });
        Assert.IsTrue(alone[0].eq(batch[4]).all().item<bool>(), "an image depends only on its seed");
        Assert.IsFalse(batch.eq(a[0]).all().item<bool>());
    }

    [TestMethod]
    public void KarrasSpacingPutsMoreStepsAtLowNoise()
    {
        var schedule = NoiseSchedule.Cosine(1000);
        var karras = schedule.KarrasTimesteps(20);
        var uniform = NoiseSchedule.EvenlySpacedTimesteps(1000, 20);
        Assert.AreEqual(0, karras[0]);
        Assert.AreEqual(999, karras[^1]);
        Assert.IsTrue(karras.Zip(karras.Skip(1)).All(p => p.First < p.Second), "strictly increasing");
        Assert.IsTrue(karras[1] - karras[0] < (uniform[1] - uniform[0]) / 4, $"fine steps at low noise; Karras: {string.Join(", ", karras)}");
        CollectionAssert.AreEqual(new[] { 0, 333, 666, 999 }, NoiseSchedule.EvenlySpacedTimesteps(1000, 4));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DpmSolverScheduler { Steps = 1 });
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new EulerAncestralScheduler { Eta = 2 });
    }

    [TestMethod]
    public void SchedulersAreFoundByNameAndCarryTheirOwnSettings()
    {
        var loop = new DiffusionSamplerOptions { Scheduler = new DpmSolverScheduler { Steps = 12, Spacing = TimestepSpacing.Karras }, GuidanceScale = 3 }.CreateSamplingLoop();
        var dpm = (DpmSolverScheduler)loop.Scheduler;
        Assert.AreEqual(12, dpm.Steps);
        Assert.AreEqual(TimestepSpacing.Karras, dpm.Spacing);
        Assert.AreEqual(3, loop.GuidanceScale);
        var euler = (EulerAncestralScheduler)SchedulerRegistry.Create("Euler-A");
        Assert.AreEqual(1.0, euler.Eta, "Euler-ancestral's own default η is 1");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => SchedulerRegistry.Create("no-such-sampler"));
        SchedulerRegistry.Register<TenStepDdim>();
        SchedulerRegistry.Register<TenStepDdim>(); // the same type again is fine
        Assert.AreEqual(10, ((TenStepDdim)SchedulerRegistry.Create("test-ddim-10")).Steps);
        Assert.ThrowsExactly<ArgumentException>(() => SchedulerRegistry.Register<ClashingDdim>(), "a name belongs to one type");
        CollectionAssert.IsSubsetOf(new[] { "ddim", "ddpm", "dpm-solver++", "euler-a", "test-ddim-10" }, SchedulerRegistry.Names.ToArray());
    }

    // The network's noise prediction for x_t is exact for N(Mean, Spread²) data: ε̂ = (x_t − α x̂₀)/σ with
    // x̂₀ = E[x₀ | x_t] = μ + α s²/(α² s² + σ²)·(x_t − α μ).
    internal static GaussianDiffusion AnalyticDiffusion() => Analytic(out _);

    private static GaussianDiffusion Analytic(out NoiseSchedule schedule)
    {
        schedule = NoiseSchedule.Cosine(1000);
        return new GaussianDiffusion(new GaussianDataDenoiser(schedule), schedule, 4, 4, PredictionTarget.Noise, DiffusionLoss.MeanSquaredError, VarianceType.FixedSmall);
    }

    private static Tensor ExactEnd(NoiseSchedule schedule)
    {
        using var noise = new SeededNoise(Seeds, new long[] { 1, 4, 4 }, CPU);
        var xT = noise.Next();
        int last = schedule.Timesteps - 1;
        double aT = Math.Sqrt(schedule.AlphasCumprod[last]), sT = Math.Sqrt(1 - schedule.AlphasCumprod[last]);
        double a0 = Math.Sqrt(schedule.AlphasCumprod[0]), s0 = Math.Sqrt(1 - schedule.AlphasCumprod[0]);
        var z = (xT - (aT * Mean)) / Math.Sqrt((aT * aT * Spread * Spread) + (sT * sT));
        return Mean + (a0 * Spread * Spread / Math.Sqrt((a0 * a0 * Spread * Spread) + (s0 * s0)) * z);
    }

    /// <summary>A scheduler of the test assembly: DDIM with η = 0 over ten steps, under a name of its own.</summary>
    private sealed class TenStepDdim : DiffusionScheduler
    {
        public override string Name => "test-ddim-10";

        public override bool UsesStepNoise => false;

        public int Steps { get; set; } = 10;

        protected override System.Collections.Generic.IReadOnlyList<int> SelectTimesteps(NoiseSchedule schedule) => SpacedTimesteps(schedule, Steps, TimestepSpacing.Uniform);

        protected override Tensor StepTo(DiffusionPrediction modelOutput, int timestep, int next, Tensor sample, Tensor? noise)
        {
            if (next < 0)
            {
                return modelOutput.PredictedStart.alias();
            }

            double aNext = Schedule.AlphasCumprod[next];
            return (Math.Sqrt(aNext) * modelOutput.PredictedStart) + (Math.Sqrt(1 - aNext) * modelOutput.PredictedNoise);
        }
    }

    /// <summary>Claims the built-in name "ddim".</summary>
    private sealed class ClashingDdim : DiffusionScheduler
    {
        public override string Name => "DDIM";

        protected override System.Collections.Generic.IReadOnlyList<int> SelectTimesteps(NoiseSchedule schedule) => throw new NotSupportedException();

        protected override Tensor StepTo(DiffusionPrediction modelOutput, int timestep, int next, Tensor sample, Tensor? noise) => throw new NotSupportedException();
    }

    private sealed class GaussianDataOptions : DenoiserOptions
    {
        public override string Kind => "TestGaussianData";

        public override int SizeDivisor => 1;

        public override Denoiser CreateDenoiser() => throw new NotSupportedException();

        public override DenoiserOptions Clone() => new GaussianDataOptions();

        protected override void ValidateShape()
        {
        }
    }

    private sealed class GaussianDataDenoiser : Denoiser
    {
        private readonly double[] alphaBar;
        private readonly GaussianDataOptions options = new();

        public GaussianDataDenoiser(NoiseSchedule schedule)
            : base(nameof(GaussianDataDenoiser))
        {
            alphaBar = schedule.AlphasCumprod.ToArray();
        }

        public override DenoiserOptions Options => options;

        public override Tensor forward(Tensor x, Tensor time, Tensor? classes)
        {
            using var scope = NewDisposeScope();
            var table = tensor(alphaBar, dtype: float64, device: x.device);
            var a = table.gather(0, time.to(int64)).sqrt().view(-1, 1, 1, 1).to(x.dtype);
            var sigma = (1 - (a * a)).sqrt();
            var start = Mean + (a * Spread * Spread / ((a * a * Spread * Spread) + (sigma * sigma)) * (x - (a * Mean)));
            return ((x - (a * start)) / sigma).MoveToOuterDisposeScope();
        }
    }
}

/// <summary>Image-to-image and inpainting against the same closed-form model (pixels independent, N(0.3, 0.2²)).</summary>
[TestClass]
public sealed class ImageEditTests
{
    private static readonly long[] Seeds = Enumerable.Range(0, 48).Select(i => (long)(300 + i)).ToArray();

    [TestMethod]
    public void InpaintingKeepsTheKnownPixelsAndDrawsTheRestFromTheData()
    {
        using var diffusion = SolverTests.AnalyticDiffusion();
        using var images = full(new long[] { Seeds.Length, 1, 4, 4 }, -0.9f); // far from the data: kept pixels must stay
        using var mask = zeros(new long[] { Seeds.Length, 1, 4, 4 });
        mask[.., .., ..2, ..] = 1; // keep the top half
        foreach (var (sampler, resampling) in new (SamplingLoop, int)[] { (new SamplingLoop(new DdpmScheduler()) { ClipDenoised = false }, 1), (new SamplingLoop(new DdpmScheduler()) { ClipDenoised = false }, 3), (new SamplingLoop(new DdimScheduler { Steps = 25, Eta = 1 }) { ClipDenoised = false }, 1), (new SamplingLoop(new DdimScheduler { Steps = 25, Eta = 1 }) { ClipDenoised = false }, 3) })
        {
            using var result = sampler.Sample(diffusion, Seeds, null, null, new ImageEdit(images, mask) { Resampling = resampling });
            Assert.IsTrue(result[.., .., ..2, ..].eq(images[.., .., ..2, ..]).all().item<bool>(), "kept pixels are the image's, exactly");
            var generated = result[.., .., 2.., ..];
            double mean = generated.mean().item<float>(), std = generated.std().item<float>();
            string what = $"{sampler.Scheduler.GetType().Name} U={resampling}: mean {mean:F3}, std {std:F3}";
            Console.WriteLine(what);
            if (sampler.Scheduler is DdpmScheduler)
            {
                // The full ancestral chain is exact in distribution here, with or without RePaint's resampling; DDIM's
                // 25 coarse η = 1 jumps replace x₀ by its posterior mean and under-disperse (std ≈ 0.16), by design.
                Assert.AreEqual(0.3, mean, 0.03, what);
                Assert.AreEqual(0.2, std, 0.03, what);
            }
        }
    }

    [TestMethod]
    public void ImageToImageStaysCloseAtLowStrengthAndForgetsTheImageAtFullStrength()
    {
        using var diffusion = SolverTests.AnalyticDiffusion();
        using var images = full(new long[] { Seeds.Length, 1, 4, 4 }, 0.8f); // a plausible but unusual image (2 σ above μ)
        var sampler = new SamplingLoop(new DdimScheduler { Steps = 50 }) { ClipDenoised = false };
        double Distance(double strength)
        {
            using var result = sampler.Sample(diffusion, Seeds, null, null, new ImageEdit(images) { Strength = strength });
            return (result - images).abs().mean().item<float>();
        }

        double low = Distance(0.05), middle = Distance(0.5), full1 = Distance(1.0);
        string what = $"mean |edit − image|: s = 0.05 {low:F3}, 0.5 {middle:F3}, 1 {full1:F3}";
        // At s = 0.05 (t = 50, noise σ ≈ 0.08) the exact denoiser pulls the 2.5 σ image a little towards μ: ≈ 0.065.
        Assert.IsTrue(low < 0.1 && low < middle / 4, what);
        Assert.IsTrue(low < middle && middle < full1, what);
        using var fromNoise = sampler.Sample(diffusion, Seeds);
        Assert.AreEqual((fromNoise - images).abs().mean().item<float>(), full1, 0.05, "strength 1 is sampling from noise: " + what);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ImageEdit(images) { Strength = 0 });
        Assert.ThrowsExactly<ArgumentException>(() => sampler.Sample(diffusion, Seeds[..3], null, null, new ImageEdit(images)));
    }

    [TestMethod]
    public void AnEditedImageDependsOnlyOnItsSeedAndItsImage()
    {
        using var diffusion = SolverTests.AnalyticDiffusion();
        using var images = rand(new long[] { 9, 1, 4, 4 }) * 2 - 1;
        using var mask = (rand(new long[] { 9, 1, 4, 4 }) < 0.5).to(float32);
        var sampler = new SamplingLoop(new DdimScheduler { Steps = 10, Eta = 0.5 });
        using var batch = sampler.Sample(diffusion, Seeds[..9], null, null, new ImageEdit(images, mask) { Strength = 0.7 });
        using var alone = sampler.Sample(diffusion, new[] { Seeds[5] }, null, null, new ImageEdit(images[5..6], mask[5..6]) { Strength = 0.7 });
        Assert.IsTrue(alone[0].eq(batch[5]).all().item<bool>());
    }
}
