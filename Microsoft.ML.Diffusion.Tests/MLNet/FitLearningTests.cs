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
    private static DiffusionSampler sampler = null!;

    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        using var oneThread = TinyModels.OneThread();
        var context = new MLContext(seed: 1);
        var options = PatternModelChecks.Options();
        Assert.IsNull(options.WarmupSteps, "the default warm-up");
        Assert.AreEqual(new DiffusionTrainerOptions().GradientClip, options.GradientClip, "the default clipping");
        Assert.AreEqual(new DiffusionTrainerOptions().EmaDecay, options.EmaDecay, "the default EMA");
        sampler = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 16));
    }

    [ClassCleanup]
    public static void Cleanup() => sampler.Dispose();

    [TestMethod]
    public void EachLabelGivesItsPatternAndGuidanceHelps() => PatternModelChecks.AssertEachLabelGivesItsPatternAndGuidanceHelps(sampler);

    [TestMethod]
    public void TheDefaultFitPathLearnsBothPatterns() => PatternModelChecks.AssertLearnsBothPatterns(sampler);

    [TestMethod]
    public void ALabelOutsideTheClassesIsRefused()
    {
        var context = new MLContext(seed: 1);
        Assert.AreEqual(2, sampler.Model.ClassCount);
        var bad = context.Data.LoadFromEnumerable(new[] { new LabelledSeedRow { Seed = 1, Label = 5 } });
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => MLNetTestData.Pixels(sampler.Transform(bad)));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => sampler.Generate(1, label: 2));
    }
}
