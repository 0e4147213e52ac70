using System;
using System.Linq;
using Microsoft.ML;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Evaluation;

[TestClass]
public sealed class LikelihoodAndQualityTests
{
    private static MLContext context = null!;
    private static DiffusionSampler trained = null!;
    private static DiffusionSampler untrained = null!;

    [ClassInitialize]
    public static void Train(TestContext _)
    {
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
    public void ThePartsSumToTheTotalAndThePriorVanishes()
    {
        var result = new LikelihoodEvaluator(trained.Model).Evaluate(MLNetTestData.Patterns(context, copies: 2));
        Assert.AreEqual(result.BitsPerDim, result.Prior + result.Decoder + result.KlSum, 1e-9);
        Assert.AreEqual(result.KlSum + result.Decoder, result.PerTimestep.Sum(), 1e-9);
        Assert.IsTrue(trained.Model.Diffusion.Schedule.AlphasCumprod[^1] < 1e-3);
        Assert.IsTrue(result.Prior < 1e-3, $"prior {result.Prior}");
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

        var generated = ImageConversion.PixelsToModel(ImageConversion.ModelToPixels(new DdimSampler { Steps = 10 }.Sample(trained.Model.Diffusion, Enumerable.Range(0, 16).Select(i => (long)i).ToArray())));
        var noise = rand(16, 1, 8, 8) * 2 - 1;
        var good = SampleQualityReport.Measure(loaded, real, generated, real.flip(0));
        var bad = SampleQualityReport.Measure(loaded, real, noise);
        Assert.IsTrue(good.FrechetDistance < bad.FrechetDistance, $"samples {good.FrechetDistance:F3} vs noise {bad.FrechetDistance:F3}");
        Assert.AreEqual(0.0, good.FloorDistance, 1e-6, "the floor of identical real sets is 0");
        Assert.IsTrue(good.MeanMaxProbability > 0.6, $"confidence on samples {good.MeanMaxProbability:F3}, on noise {bad.MeanMaxProbability:F3}");
    }
}
