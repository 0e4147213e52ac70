using System;
using System.Linq;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Diffusion;

/// <summary>
/// Each objective, loss, weighting, variance and schedule learns the two 8×8 patterns: after a short training run the
/// samples lie on the patterns and both patterns appear (not a falling loss only). The option under test is the only
/// change from ε-prediction, L2, fixed-small variance and the cosine schedule, which
/// <see cref="LearningTests.ATinyUNetLearnsTwoPatternsAndItsBoundFalls"/> covers.
/// </summary>
[TestClass]
public sealed class OptionLearningTests : OneThreadTests
{
    private const int Timesteps = 50;
    private const int Steps = 200;
    private const int Samples = 32;

    [TestMethod]
    [DataRow(PredictionTarget.Start, DiffusionLoss.MeanSquaredError, VarianceType.FixedSmall, BetaSchedule.Cosine, 0.0, DisplayName = "x₀ objective")]
    [DataRow(PredictionTarget.Velocity, DiffusionLoss.MeanSquaredError, VarianceType.FixedSmall, BetaSchedule.Cosine, 0.0, DisplayName = "v objective")]
    [DataRow(PredictionTarget.Noise, DiffusionLoss.MeanAbsoluteError, VarianceType.FixedSmall, BetaSchedule.Cosine, 0.0, DisplayName = "L1 loss")]
    [DataRow(PredictionTarget.Noise, DiffusionLoss.Huber, VarianceType.FixedSmall, BetaSchedule.Cosine, 0.0, DisplayName = "Huber loss")]
    [DataRow(PredictionTarget.Noise, DiffusionLoss.MeanSquaredError, VarianceType.FixedSmall, BetaSchedule.Cosine, 5.0, DisplayName = "min-SNR-5 weighting")]
    [DataRow(PredictionTarget.Noise, DiffusionLoss.MeanSquaredError, VarianceType.FixedLarge, BetaSchedule.Cosine, 0.0, DisplayName = "fixed-large variance")]
    [DataRow(PredictionTarget.Noise, DiffusionLoss.MeanSquaredError, VarianceType.LearnedRange, BetaSchedule.Cosine, 0.0, DisplayName = "learned-range variance, hybrid loss")]
    [DataRow(PredictionTarget.Noise, DiffusionLoss.MeanSquaredError, VarianceType.FixedSmall, BetaSchedule.Linear, 0.0, DisplayName = "linear schedule")]
    [DataRow(PredictionTarget.Noise, DiffusionLoss.MeanSquaredError, VarianceType.FixedSmall, BetaSchedule.Sigmoid, 0.0, DisplayName = "sigmoid schedule")]
    [DataRow(PredictionTarget.Noise, DiffusionLoss.MeanSquaredError, VarianceType.FixedSmall, BetaSchedule.Geometric, 0.0, DisplayName = "geometric schedule")]
    [DataRow(PredictionTarget.Noise, DiffusionLoss.MeanSquaredError, VarianceType.FixedSmall, BetaSchedule.Custom, 0.0, DisplayName = "custom schedule")]
    public void TheOptionLearnsBothPatterns(PredictionTarget objective, DiffusionLoss loss, VarianceType variance, BetaSchedule schedule, double minSnrGamma)
    {
        using var d = Build(objective, loss, variance, schedule);
        d.MinSnrGamma = minSnrGamma > 0 ? minSnrGamma : null;
        using var patterns = TinyModels.Patterns();
        Train(d, patterns);

        // Ancestral sampling, so that the variance under test shapes every step.
        using var images = new SamplingLoop(new DdpmScheduler()).Sample(d, Enumerable.Range(0, Samples).Select(i => (long)i).ToArray());
        var coverage = PatternCoverage.Of(images, patterns);
        // Untrained, none of the 32 samples is within 0.1 of a pattern.
        Assert.IsTrue(coverage.Close >= 24, $"only {coverage}");
        Assert.IsTrue(coverage.PerPattern.All(n => n >= 4), $"a pattern is missing or rare: {coverage}");
    }

    [TestMethod]
    public void TheHybridLossAddsLambdaTimesTTimesTheBoundTermWhichTrainsOnlyTheVariance()
    {
        using var d = TinyModels.Diffusion(timesteps: 30, variance: VarianceType.LearnedRange, seed: 2);
        using var scope = NewDisposeScope();
        var images = TinyModels.Patterns().repeat(2, 1, 1, 1);
        var t = tensor(new long[] { 0, 3, 15, 29 });
        using var generator = new Generator(8, CPU);
        var noise = randn(images.shape, generator: generator);
        var xt = d.QSample(images, t, noise);

        d.HybridLambda = 0;
        var simple = d.LossPerSample(images, t, noise);
        var meanOutput = d.Model.forward(xt, t, null)[.., ..1];
        AssertClose((meanOutput - noise).square().mean(new long[] { 1, 2, 3 }), simple, "λ = 0 leaves the simple L2 loss on ε");

        var bound = d.VariationalBoundTerm(images, xt, t);
        Assert.IsTrue(bound.min().item<float>() > 0, "an untrained model has a positive bound term at every t");
        foreach (double lambda in new[] { 0.001, 0.5 })
        {
            d.HybridLambda = lambda;
            AssertClose(simple + (lambda * 30 * bound), d.LossPerSample(images, t, noise), $"λ = {lambda}");
        }

        // The bound's gradient reaches the variance output only: the mean output is detached inside it.
        d.HybridLambda = 1;
        var withBound = d.LossPerSample(images, t, noise).sum();
        d.HybridLambda = 0;
        (withBound - d.LossPerSample(images, t, noise).sum()).backward();
        var finalWeight = d.Model.named_parameters().Single(p => p.name == "final_conv.weight").parameter.grad!;
        Assert.AreEqual(0f, finalWeight[0].abs().max().item<float>(), "the mean channel gets no gradient from the bound");
        Assert.IsTrue(finalWeight[1].abs().max().item<float>() > 0, "the variance channel does");
    }

    internal static GaussianDiffusion Build(PredictionTarget objective, DiffusionLoss loss, VarianceType variance, BetaSchedule schedule)
    {
        manual_seed(1);
        var unet = new UNet(TinyModels.Options(learnedVariance: variance == VarianceType.LearnedRange));
        // The custom schedule: β rising linearly from 0.001 to 0.4, a schedule none of the families makes.
        var noise = schedule == BetaSchedule.Custom
            ? NoiseSchedule.Custom(Enumerable.Range(0, Timesteps).Select(i => 0.001 + (0.399 * i / (Timesteps - 1))).ToArray())
            : NoiseSchedule.Create(schedule, Timesteps);
        return new GaussianDiffusion(unet, noise, 8, 8, objective, loss, variance);
    }

    // The library's training loop with its defaults (warm-up, clipping, EMA of the weights), batches of 16 = 8 of each pattern.
    private static void Train(GaussianDiffusion d, Tensor patterns)
    {
        var options = new DiffusionTrainerOptions { BatchSize = 16, TrainSteps = Steps, LearningRate = 3e-3, LogEvery = Steps, Network = TinyModels.Options() };
        using var data = new TrainingImages(patterns.repeat(8, 1, 1, 1), null, 0, null);
        new DiffusionTrainingLoop(d, options.Training, _ => { }, _ => { }).Run(data, seed: 21, fingerprint: "learning");
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        double difference = (expected - actual).abs().max().item<float>();
        double scale = expected.abs().max().item<float>();
        Assert.IsTrue(difference <= 1e-5 * Math.Max(scale, 1e-3), $"{what}: max |difference| {difference:G3} at scale {scale:G3}");
    }
}

/// <summary>How many samples lie on a pattern (mean squared distance below 0.1), and on which.</summary>
internal sealed record PatternCoverage(int Total, int Close, int[] PerPattern, float[] Distances)
{
    public static PatternCoverage Of(Tensor images, Tensor patterns)
    {
        using var scope = NewDisposeScope();
        var distances = stack(Enumerable.Range(0, (int)patterns.shape[0]).Select(k => (images.cpu() - patterns[k]).square().mean(new long[] { 1, 2, 3 })).ToArray());
        var nearest = distances.min(0);
        var close = nearest.values < 0.1;
        var perPattern = Enumerable.Range(0, (int)patterns.shape[0]).Select(k => (int)(close & (nearest.indexes == k)).sum().item<long>()).ToArray();
        return new PatternCoverage((int)images.shape[0], (int)close.sum().item<long>(), perPattern, nearest.values.data<float>().ToArray());
    }

    /// <summary>The share of samples on pattern k.</summary>
    public double Share(int k) => (double)PerPattern[k] / Total;

    public override string ToString() => FormattableString.Invariant(
        $"{Close}/{Total} samples on a pattern ({string.Join(" + ", PerPattern)}); distances {string.Join(", ", Distances.Select(v => v.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)))}");
}
