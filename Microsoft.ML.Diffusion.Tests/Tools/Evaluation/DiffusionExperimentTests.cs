using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Tools.Evaluation;

[TestClass]
public sealed class DiffusionExperimentTests : OneThreadTests
{
    private static DiffusionExperimentSettings Settings(int seed = 3) => new()
    {
        BaseOptions = MLNetTestData.Options(),
        SearchSpace = new DiffusionSearchSpace { Widths = new[] { 8 }, LearningRate = (1e-3, 3e-3) },
        Trials = 4,
        FirstRoundSteps = 4,
        ReductionFactor = 2,
        ValidationFraction = 0.25,
        ValidationImages = 8,
        Seed = seed,
    };

    [TestMethod]
    public void SuccessiveHalvingRanksEveryTrialAndReturnsTheBestSampler()
    {
        var context = new MLContext(seed: 1);
        var messages = new List<string>();
        context.Log += (_, e) => { lock (messages) { messages.Add(e.Message); } };
        using var result = context.Generative().CreateDiffusionExperiment(Settings()).Run(MLNetTestData.Patterns(context, copies: 16));
        Assert.HasCount(4, result.Trials);
        CollectionAssert.AreEqual(new[] { 2, 1, 0, 0 }, result.Trials.Select(t => t.Round).ToArray(), "4 → 2 → 1 trials");
        Assert.AreEqual(16, result.Best.TrainSteps);
        Assert.AreEqual(16, result.BestSampler.Model.TrainedSteps);
        Assert.IsTrue(result.Trials.All(t => double.IsFinite(t.Metric) && t.Metric > 0));
        var lastRound = result.Trials.Where(t => t.Round == 0).Select(t => t.Metric).ToArray();
        CollectionAssert.AreEqual(lastRound.OrderBy(m => m).ToArray(), lastRound, "trials of a round are ranked by their metric");
        Assert.IsTrue(messages.Any(m => m.Contains("Round 0, trial", StringComparison.Ordinal)));
        Assert.AreEqual(1, result.BestSampler.Generate(1).Count);
    }

    [TestMethod]
    public void TheSameSeedDrawsTheSameConfigurations()
    {
        var settings = Settings(seed: 5);
        settings.Trials = 3;
        settings.ReductionFactor = 4; // a single round
        var context = new MLContext(seed: 1);
        var data = MLNetTestData.Patterns(context, copies: 8);
        using var a = context.Generative().CreateDiffusionExperiment(settings).Run(data);
        using var b = context.Generative().CreateDiffusionExperiment(settings).Run(data);
        CollectionAssert.AreEqual(a.Trials.Select(t => t.Description).ToArray(), b.Trials.Select(t => t.Description).ToArray());
        CollectionAssert.AreEqual(a.Trials.Select(t => t.Metric).ToArray(), b.Trials.Select(t => t.Metric).ToArray());
    }

    [TestMethod]
    public void TheFrechetMetricIsTheDistanceOfTheTrialsSamplesToTheValidationImages()
    {
        var context = new MLContext(seed: 1);
        var classifierOptions = new FeatureClassifierOptions { ImageSize = 8, Epochs = 2, BatchSize = 16, FeatureSize = 16 };
        using var classifier = FeatureClassifier.Train(MLNetTestData.Patterns(context, copies: 32), classifierOptions);
        var settings = Settings();
        settings.Trials = 2;
        settings.ReductionFactor = 4; // a single round: both trials keep their samplers' metric
        settings.Metric = ExperimentMetric.FrechetDistance;
        settings.FeatureClassifier = classifier;
        var validation = MLNetTestData.Patterns(context, copies: 4);
        using var result = context.Generative().CreateDiffusionExperiment(settings).Run(MLNetTestData.Patterns(context, copies: 8), validation);
        Assert.IsTrue(result.Trials.All(t => double.IsFinite(t.Metric) && t.Metric > 0), string.Join(", ", result.Trials.Select(t => t.Metric)));
        Assert.IsTrue(result.Trials[0].Metric <= result.Trials[1].Metric, "ranked by the distance");

        // Recomputed here: the best sampler's images for the derived seeds of the run seed against the 8 validation images.
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var real = Microsoft.ML.Diffusion.ImageBatchReader.ReadAll(validation, nameof(PixelRow.Pixels), null, 1, 8, 8);
        var model = result.BestSampler.Model;
        var seeds = Enumerable.Range(0, 8).Select(i => SeededNoise.DeriveSeed(settings.Seed, i)).ToArray();
        var generated = result.BestSampler.Options.CreateSamplingLoop().Sample(model.Diffusion, seeds);
        double expected = FrechetDistance.Compute(classifier.Features(real.Images), classifier.Features(generated));
        Assert.AreEqual(expected, result.Best.Metric, 1e-9 * expected);
    }

    [TestMethod]
    public void ABudgetUsedUpByTheFirstTrialEndsTheExperimentWithIt()
    {
        var settings = Settings();
        settings.Trials = 3;
        settings.MaxTime = TimeSpan.FromMilliseconds(1); // the first trial always runs; the others find the budget spent
        var context = new MLContext(seed: 1);
        var messages = new List<string>();
        context.Log += (_, e) => { lock (messages) { messages.Add(e.Message); } };
        using var result = context.Generative().CreateDiffusionExperiment(settings).Run(MLNetTestData.Patterns(context, copies: 8));
        Assert.HasCount(1, result.Trials);
        Assert.AreEqual(0, result.Best.Id);
        Assert.AreEqual(4, result.BestSampler.Model.TrainedSteps);
        Assert.IsTrue(messages.Any(m => m.Contains("trial 1 is not trained", StringComparison.Ordinal)), string.Join("\n", messages));
    }

    [TestMethod]
    public void BitsPerDimCanRankTrialsAndBadSettingsAreRefused()
    {
        var settings = Settings();
        settings.Trials = 2;
        settings.Metric = ExperimentMetric.BitsPerDim;
        settings.BoundSteps = 5;
        var context = new MLContext(seed: 1);
        using var result = context.Generative().CreateDiffusionExperiment(settings).Run(MLNetTestData.Patterns(context, copies: 8));
        Assert.IsTrue(result.Trials.All(t => double.IsFinite(t.Metric) && t.Metric > 0), string.Join(", ", result.Trials.Select(t => t.Metric)));
        Assert.ThrowsExactly<ArgumentException>(() => context.Generative().CreateDiffusionExperiment(new DiffusionExperimentSettings { Metric = ExperimentMetric.FrechetDistance }));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().CreateDiffusionExperiment(new DiffusionExperimentSettings { ReductionFactor = 1 }));
    }
}
