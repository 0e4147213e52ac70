using System;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Tools.Evaluation;

[TestClass]
public sealed class LikelihoodAndQualityTests : OneThreadTests
{
    private static MLContext context = null!;
    private static DiffusionSampler trained = null!;
    private static DiffusionSampler untrained = null!;

    [ClassInitialize]
    public static void Train(TestContext _)
    {
        using var oneThread = TinyModels.OneThread();
        context = new MLContext(seed: 1);
        var data = MLNetTestData.Patterns(context, copies: 16);
        var options = MLNetTestData.Options(steps: 300);
        options.Timesteps = 50;
        options.BatchSize = 16;
        options.LearningRate = 3e-3;
        options.EmaDecay = 0;
        trained = context.Generative().Diffusion(options).Fit(data);
        options.TrainSteps = 0;
        untrained = context.Generative().Diffusion(options).Fit(data);
    }

    [ClassCleanup]
    public static void Cleanup()
    {
        trained.Dispose();
        untrained.Dispose();
    }

    [TestMethod]
    public void MemorisedDataHasAFarLowerBoundThanUnderAnUntrainedModel()
    {
        var data = MLNetTestData.Patterns(context, copies: 2);
        var good = new LikelihoodEvaluator(trained.Model).Evaluate(data);
        var bad = new LikelihoodEvaluator(untrained.Model).Evaluate(data);
        Assert.IsTrue(good.BitsPerDim < bad.BitsPerDim - 1.0, $"trained {good.BitsPerDim:F3} vs untrained {bad.BitsPerDim:F3} bits/dim");
        Assert.AreEqual(4, good.Images);
        Assert.AreEqual(50, good.Steps);
    }

    [TestMethod]
    public void TheEvaluatorsPartsMatchTheClosedFormOfAModelPredictingZero()
    {
        // A fitted x₀-prediction model with every weight set to 0 (x̂₀ = 0) on a schedule with ᾱ_T ≈ 0.31: the prior and each
        // KL term have closed forms (ClosedForms), and the evaluator's parts must add up to its total.
        var options = MLNetTestData.Options(steps: 0);
        options.Objective = PredictionTarget.Start;
        options.Schedule = BetaSchedule.Custom;
        options.CustomBetas = ClosedForms.ModerateBetas;
        var data = MLNetTestData.Patterns(context, copies: 2);
        using var zero = context.Generative().Diffusion(options).Fit(data);
        using (no_grad())
        {
            foreach (var p in zero.Model.Diffusion.parameters())
            {
                p.zero_();
            }
        }

        var result = new LikelihoodEvaluator(zero.Model).Evaluate(data, new LikelihoodOptions { BatchSize = 3 });
        var schedule = zero.Model.Diffusion.Schedule;
        using var patterns = TinyModels.Patterns();
        float[] pixels = patterns.flatten().data<float>().ToArray(); // the data: both patterns, twice
        Assert.AreEqual(ClosedForms.Prior(schedule, pixels), result.Prior, 1e-5);
        for (int t = 1; t < 10; t++)
        {
            double expected = ClosedForms.KlOfZeroStartPrediction(schedule, t, pixels);
            Assert.AreEqual(expected, result.PerTimestep[t], 1e-3 * expected, $"L_{t}");
        }

        Assert.AreEqual(result.PerTimestep.Skip(1).Sum(), result.KlSum, 1e-9);
        Assert.AreEqual(result.PerTimestep[0], result.Decoder);
        Assert.AreEqual(result.Prior + result.Decoder + result.KlSum, result.BitsPerDim, 1e-9);
        Assert.AreEqual(4, result.Images);
    }

    [TestMethod]
    public void UniformNoiseCostsAtLeastEightBitsPerDimension()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var noise = ImageConversion.PixelsToModel(randint(0, 256, new long[] { 16, 1, 8, 8 }).to(float32));
        var result = new LikelihoodEvaluator(trained.Model).Evaluate(noise);
        Assert.IsTrue(result.BitsPerDim >= 7.9, $"{result.BitsPerDim:F3} bits/dim for uniform noise");
    }

    [TestMethod]
    public void ARespacedChainGivesAFiniteBoundOverItsSteps()
    {
        var progress = new System.Collections.Generic.List<int>();
        var result = new LikelihoodEvaluator(trained.Model).Evaluate(
            MLNetTestData.Patterns(context, copies: 2),
            new LikelihoodOptions { Steps = 10, BatchSize = 2, Progress = new SyncProgress<(int Done, int Total)>(p => progress.Add(p.Done)) });
        Assert.AreEqual(10, result.Steps);
        Assert.HasCount(10, result.PerTimestep);
        Assert.IsTrue(double.IsFinite(result.BitsPerDim) && result.BitsPerDim > 0);
        CollectionAssert.AreEqual(new[] { 2, 4 }, progress.ToArray());
        var respaced = trained.Model.Diffusion.Respace(10);
        CollectionAssert.AreEqual(new long[] { 0, 5, 11, 16, 22, 27, 33, 38, 44, 49 }, respaced.RespacedTimesteps!.ToArray());
        Assert.AreEqual(trained.Model.Diffusion.Schedule.AlphasCumprod[49], respaced.Schedule.AlphasCumprod[9], 1e-12);
    }

    private static Tensor Noisy(Tensor images, int seed)
    {
        using var generator = new Generator((ulong)seed, CPU);
        return (images + (0.1 * randn(images.shape, generator: generator))).clamp(-1, 1);
    }

    [TestMethod]
    public void TheFeatureClassifierLearnsTheClassesAndItsFeaturesMeasureSamples()
    {
        var data = MLNetTestData.Patterns(context, copies: 32);
        var options = new FeatureClassifierOptions { ImageSize = 8, Epochs = 2, BatchSize = 16, FeatureSize = 16 };
        using var classifier = FeatureClassifier.Train(data, options);
        Assert.AreEqual(1.0, classifier.Accuracy(data, options));

        string path = System.IO.Path.GetTempFileName();
        classifier.Save(path);
        using var loaded = FeatureClassifier.Load(path);
        System.IO.File.Delete(path);
        using var scope = NewDisposeScope();
        var real = TinyModels.Patterns().repeat(8, 1, 1, 1);
        Assert.IsTrue(classifier.Features(real).eq(loaded.Features(real)).all().item<bool>(), "a loaded classifier gives the same features");

        var generated = ImageConversion.PixelsToModel(ImageConversion.ModelToPixels(new SamplingLoop(new DdimScheduler { Steps = 10 }).Sample(trained.Model.Diffusion, Enumerable.Range(0, 16).Select(i => (long)i).ToArray())));
        var noise = rand(16, 1, 8, 8) * 2 - 1;
        // Two disjoint real sets: both patterns, 8 each, with independent pixel noise of σ = 0.1.
        var first = Noisy(real, seed: 1);
        var second = Noisy(real, seed: 2);
        var good = SampleQualityReport.Measure(loaded, first, generated, second);
        var bad = SampleQualityReport.Measure(loaded, first, noise, second);
        Assert.IsTrue(good.FrechetDistance < bad.FrechetDistance, $"samples {good.FrechetDistance:F3} vs noise {bad.FrechetDistance:F3}");
        Assert.AreEqual(good.FloorDistance, bad.FloorDistance, "the floor depends on the real sets only");
        Assert.IsTrue(good.FloorDistance > 0 && good.FloorDistance < 0.1 * bad.FrechetDistance, $"floor {good.FloorDistance:F4} of two disjoint real sets vs noise {bad.FrechetDistance:F3}");
        var oneClass = SampleQualityReport.Measure(loaded, first, Noisy(TinyModels.Patterns()[..1].repeat(16, 1, 1, 1), seed: 3));
        Assert.IsTrue(oneClass.FrechetDistance > 10 * good.FloorDistance, $"a set with one class only: {oneClass.FrechetDistance:F4}, floor {good.FloorDistance:F4}");
        Assert.IsTrue(good.MeanMaxProbability > 0.6, $"confidence on samples {good.MeanMaxProbability:F3}, on noise {bad.MeanMaxProbability:F3}");
    }
}
