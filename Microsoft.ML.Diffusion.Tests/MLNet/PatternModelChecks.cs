using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Tests.Core.Diffusion;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>
/// The class-conditional two-pattern model trained through <c>Fit</c> (<see cref="FitLearningTests"/> in float32,
/// <see cref="PrecisionFitTests"/> in bfloat16): its settings and the assertions both judge it by.
/// </summary>
internal static class PatternModelChecks
{
    /// <summary>Images generated per check.</summary>
    public const int Samples = 32;

    /// <summary>The settings: 300 steps of batch 16 over T = 50, learning rate 3·10⁻³, labels, DDPM sampling.</summary>
    public static DiffusionTrainerOptions Options()
    {
        var options = MLNetTestData.Options(steps: 300);
        options.LabelColumnName = nameof(PixelRow.Label);
        options.Timesteps = 50;
        options.BatchSize = 16;
        options.LearningRate = 3e-3;
        options.Sampling = new DiffusionSamplerOptions { Scheduler = new DdpmScheduler() };
        return options;
    }

    /// <summary>Unconditional samples show both patterns: at least 24 of 32 close to one, each at least 6 times.</summary>
    public static void AssertLearnsBothPatterns(DiffusionSampler sampler)
    {
        using var patterns = TinyModels.Patterns();
        using var images = ToTensor(sampler.Generate(Samples, new DiffusionSamplerOptions { Scheduler = new DdpmScheduler(), Seed = 7 }));
        var coverage = PatternCoverage.Of(images, patterns);
        Assert.IsTrue(coverage.Close >= 24, $"unconditional samples: only {coverage}");
        Assert.IsTrue(coverage.PerPattern.All(n => n >= 6), $"a pattern is missing or rare: {coverage}");
    }

    /// <summary>With guidance 3 at least 90 % of each label's samples show its pattern, and guidance helps by 0.4 in all.</summary>
    public static void AssertEachLabelGivesItsPatternAndGuidanceHelps(DiffusionSampler sampler)
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

    /// <summary>Gray MLImages → N×1×H×W in [−1, 1].</summary>
    public static Tensor ToTensor(IReadOnlyList<MLImage> images)
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
