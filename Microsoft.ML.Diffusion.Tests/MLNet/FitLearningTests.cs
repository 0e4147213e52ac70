using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Tests.Core.Diffusion;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>
/// One class-conditional model trained through <c>Fit</c> with the loop's defaults — EMA, gradient clipping, warm-up,
/// label dropout — judged on the images the fitted <see cref="DiffusionSampler"/> generates.
/// </summary>
[TestClass]
public sealed class FitLearningTests : OneThreadTests
{
    private const int Samples = 32;
    private static DiffusionSampler sampler = null!;

    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        using var oneThread = TinyModels.OneThread();
        var context = new MLContext(seed: 1);
        var options = MLNetTestData.Options(steps: 300);
        options.LabelColumnName = nameof(PixelRow.Label);
        options.Timesteps = 50;
        options.BatchSize = 16;
        options.LearningRate = 3e-3;
        options.Sampling = new DiffusionSamplerOptions { Scheduler = new DdpmScheduler() };
        Assert.IsNull(options.WarmupSteps, "the default warm-up");
        Assert.AreEqual(new DiffusionTrainerOptions().GradientClip, options.GradientClip, "the default clipping");
        Assert.AreEqual(new DiffusionTrainerOptions().EmaDecay, options.EmaDecay, "the default EMA");
        sampler = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 16));
    }

    [ClassCleanup]
    public static void Cleanup() => sampler.Dispose();

    [TestMethod]
    public void EachLabelGivesItsPatternAndGuidanceHelps()
    {
        using var patterns = TinyModels.Patterns();
        double Correct(int label, double guidance)
        {
            var options = sampler.Options.Clone();
            options.GuidanceScale = guidance;
            options.Seed = 40 + label;
            using var images = ToTensor(sampler.Generate(Samples, options, label));
            return PatternCoverage.Of(images, patterns).Share(label);
        }

        var guided = new[] { Correct(0, 3), Correct(1, 3) };
        var unguided = new[] { Correct(0, 0), Correct(1, 0) };
        foreach (int k in new[] { 0, 1 })
        {
            Assert.IsTrue(guided[k] >= 0.9, $"label {k}: only {guided[k]:P0} of the samples show pattern {k} with guidance 3 ({unguided[k]:P0} with guidance 0)");
        }

        // Guidance 0 is the unconditional model: the label is ignored and about half the samples show the other pattern.
        Assert.IsTrue(guided.Sum() > unguided.Sum() + 0.4, $"guidance 3: {guided[0]:P0}, {guided[1]:P0}; guidance 0: {unguided[0]:P0}, {unguided[1]:P0}");
    }

    [TestMethod]
    public void TheDefaultFitPathLearnsBothPatterns()
    {
        using var patterns = TinyModels.Patterns();
        using var images = ToTensor(sampler.Generate(Samples, new DiffusionSamplerOptions { Scheduler = new DdpmScheduler(), Seed = 7 }));
        var coverage = PatternCoverage.Of(images, patterns);
        Assert.IsTrue(coverage.Close >= 24, $"unconditional samples: only {coverage}");
        Assert.IsTrue(coverage.PerPattern.All(n => n >= 6), $"a pattern is missing or rare: {coverage}");
    }

    [TestMethod]
    public void ALabelOutsideTheClassesIsRefused()
    {
        var context = new MLContext(seed: 1);
        Assert.AreEqual(2, sampler.Model.ClassCount);
        var bad = context.Data.LoadFromEnumerable(new[] { new LabelledSeedRow { Seed = 1, Label = 5 } });
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => MLNetTestData.Pixels(sampler.Transform(bad)));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => sampler.Generate(1, label: 2));
    }

    // Gray MLImages → N×1×H×W in [−1, 1].
    private static Tensor ToTensor(IReadOnlyList<MLImage> images)
    {
        int size = images[0].Width * images[0].Height;
        var pixels = new float[images.Count * size];
        for (int i = 0; i < images.Count; i++)
        {
            PixelLayout.ToPlanar(images[i], 1, pixels.AsSpan(i * size, size));
        }

        using var raw = tensor(pixels, new long[] { images.Count, 1, images[0].Height, images[0].Width });
        return ImageConversion.PixelsToModel(raw);
    }
}
