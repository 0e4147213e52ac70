using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>What an experiment ranks trials by (lower is better for all three).</summary>
public enum ExperimentMetric
{
    /// <summary>
    /// Mean squared error of the noise the model implies, ε̂ (whatever its objective), on validation images at fixed,
    /// seeded timesteps and noise — comparable across objectives, unlike the training losses.
    /// </summary>
    ValidationNoiseError,

    /// <summary>The variational bound in bits/dim on validation images, over a respaced chain (<see cref="DiffusionExperimentSettings.BoundSteps"/>).</summary>
    BitsPerDim,

    /// <summary>Fréchet distance between generated and validation images in a <see cref="FeatureClassifier"/>'s feature space.</summary>
    FrechetDistance,
}

/// <summary>The values an experiment draws its trial configurations from.</summary>
public sealed class DiffusionSearchSpace
{
    /// <summary>Gets or sets the β schedules to try.</summary>
    public IReadOnlyList<BetaSchedule> Schedules { get; set; } = new[] { BetaSchedule.Linear, BetaSchedule.Cosine, BetaSchedule.Sigmoid };

    /// <summary>Gets or sets the objectives to try.</summary>
    public IReadOnlyList<PredictionTarget> Objectives { get; set; } = new[] { PredictionTarget.Noise, PredictionTarget.Velocity, PredictionTarget.Start };

    /// <summary>Gets or sets the losses to try.</summary>
    public IReadOnlyList<DiffusionLoss> Losses { get; set; } = new[] { DiffusionLoss.MeanSquaredError, DiffusionLoss.MeanAbsoluteError, DiffusionLoss.Huber };

    /// <summary>Gets or sets the variance types to try.</summary>
    public IReadOnlyList<VarianceType> Variances { get; set; } = new[] { VarianceType.FixedSmall, VarianceType.FixedLarge, VarianceType.LearnedRange };

    /// <summary>Gets or sets the learning-rate range, sampled log-uniformly.</summary>
    public (double Min, double Max) LearningRate { get; set; } = (2e-4, 3e-3);

    /// <summary>Gets or sets the U-Net widths (Dim) to try.</summary>
    public IReadOnlyList<int> Widths { get; set; } = new[] { 16, 32 };

    /// <summary>Gets or sets the dropout values to try.</summary>
    public IReadOnlyList<double> Dropouts { get; set; } = new[] { 0.0, 0.1 };

    /// <summary>Gets or sets the EMA decay ceilings to try.</summary>
    public IReadOnlyList<double> EmaDecays { get; set; } = new[] { 0.995, 0.999 };
}

/// <summary>Settings of a <see cref="DiffusionExperiment"/>.</summary>
public sealed class DiffusionExperimentSettings
{
    /// <summary>
    /// Gets or sets the options every trial starts from (a clone of them: columns, image size, batch, micro-batches, …). The
    /// searched ones are overwritten, and the experiment sets each trial's <see cref="DiffusionTrainerOptions.Seed"/>,
    /// <see cref="DiffusionTrainerOptions.WarmupSteps"/>, <see cref="DiffusionTrainerOptions.TrainSteps"/> and checkpoints
    /// (<see cref="DiffusionTrainerOptions.CheckpointDirectory"/>, <see cref="DiffusionTrainerOptions.CheckpointEvery"/>,
    /// <see cref="DiffusionTrainerOptions.Resume"/>); <see cref="DiffusionTrainerOptions.MaxTrainingTime"/> is cleared, as
    /// <see cref="MaxTime"/> is the budget.
    /// </summary>
    public DiffusionTrainerOptions BaseOptions { get; set; } = new();

    /// <summary>Gets or sets the search space.</summary>
    public DiffusionSearchSpace SearchSpace { get; set; } = new();

    /// <summary>Gets or sets the metric trials are ranked by. Default <see cref="ExperimentMetric.ValidationNoiseError"/>.</summary>
    public ExperimentMetric Metric { get; set; } = ExperimentMetric.ValidationNoiseError;

    /// <summary>Gets or sets the number of random configurations started in the first round. Default 8.</summary>
    public int Trials { get; set; } = 8;

    /// <summary>Gets or sets the training steps of the first round; each later round multiplies them by <see cref="ReductionFactor"/>. Default 100.</summary>
    public int FirstRoundSteps { get; set; } = 100;

    /// <summary>Gets or sets η: each round keeps the best 1/η of the trials and trains them η times longer. Default 2.</summary>
    public int ReductionFactor { get; set; } = 2;

    /// <summary>Gets or sets the wall-clock budget; no new trial starts after it is used up. Null: none.</summary>
    public TimeSpan? MaxTime { get; set; }

    /// <summary>Gets or sets the fraction of the data held out for validation when no validation set is given. Default 0.1.</summary>
    public double ValidationFraction { get; set; } = 0.1;

    /// <summary>Gets or sets the number of validation images the metric uses. Default 256.</summary>
    public int ValidationImages { get; set; } = 256;

    /// <summary>Gets or sets the length of the respaced chain for <see cref="ExperimentMetric.BitsPerDim"/>. Default 20.</summary>
    public int BoundSteps { get; set; } = 20;

    /// <summary>Gets or sets the feature network for <see cref="ExperimentMetric.FrechetDistance"/>.</summary>
    public FeatureClassifier? FeatureClassifier { get; set; }

    /// <summary>Gets or sets the seed of the configurations, the split and every trial. Default 0.</summary>
    public int Seed { get; set; }
}

/// <summary>One trained configuration of an experiment.</summary>
/// <param name="Id">The configuration's number (0-based, in the order drawn).</param>
/// <param name="Description">The searched values, in words.</param>
/// <param name="Options">The trainer options of the trial.</param>
/// <param name="Round">The last round it was trained in (0 = first).</param>
/// <param name="TrainSteps">Steps trained in that round.</param>
/// <param name="Metric">The metric after that round (lower is better).</param>
/// <param name="Duration">Training and evaluation time, all rounds.</param>
public sealed record ExperimentTrial(int Id, string Description, DiffusionTrainerOptions Options, int Round, int TrainSteps, double Metric, TimeSpan Duration);

/// <summary>The outcome of an experiment.</summary>
public sealed class DiffusionExperimentResult : IDisposable
{
    internal DiffusionExperimentResult(IReadOnlyList<ExperimentTrial> trials, DiffusionSampler best)
    {
        Trials = trials;
        BestSampler = best;
    }

    /// <summary>Gets every configuration, best first: later rounds before earlier ones, then by metric.</summary>
    public IReadOnlyList<ExperimentTrial> Trials { get; }

    /// <summary>Gets the best trial.</summary>
    public ExperimentTrial Best => Trials[0];

    /// <summary>Gets the sampler trained by the best trial (owned by this result until taken).</summary>
    public DiffusionSampler BestSampler { get; }

    /// <summary>Disposes the best sampler.</summary>
    public void Dispose() => BestSampler.Dispose();
}

/// <summary>
/// An AutoML-style search over <see cref="DiffusionTrainerOptions"/> (Microsoft.ML.AutoML is not used): random
/// configurations from a <see cref="DiffusionSearchSpace"/>, ranked by a validation metric with successive halving — all
/// start cheap, the best 1/η of each round are trained η times longer (continuing from their checkpoints) — under a
/// budget of rounds and wall-clock time. Seeded and reproducible.
/// </summary>
public sealed class DiffusionExperiment
{
    private readonly MLContext mlContext;
    private readonly DiffusionExperimentSettings settings;

    internal DiffusionExperiment(MLContext mlContext, DiffusionExperimentSettings settings)
    {
        this.mlContext = mlContext;
        this.settings = settings ?? throw new ArgumentNullException(nameof(settings));
        if (settings.Trials < 1 || settings.FirstRoundSteps < 1 || settings.ReductionFactor < 2 || settings.ValidationImages < 2
            || settings.ValidationFraction is <= 0 or >= 1 || settings.BoundSteps < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(settings), "Trials, FirstRoundSteps and ValidationImages must be positive, ReductionFactor at least 2, ValidationFraction in (0, 1) and BoundSteps at least 2.");
        }

        if (settings.Metric == ExperimentMetric.FrechetDistance && settings.FeatureClassifier is null)
        {
            throw new ArgumentException("The Fréchet-distance metric needs a FeatureClassifier.", nameof(settings));
        }
    }

    /// <summary>Runs the experiment.</summary>
    /// <param name="data">Training data (the validation split is taken from it when <paramref name="validation"/> is null).</param>
    /// <param name="validation">Optional validation data with the same columns.</param>
    /// <returns>The ranked trials and the best sampler.</returns>
    public DiffusionExperimentResult Run(IDataView data, IDataView? validation = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        var host = ((IHostEnvironment)mlContext).Register(nameof(DiffusionExperiment));
        using var channel = host.Start("Experiment");
        if (validation is null)
        {
            var split = mlContext.Data.TrainTestSplit(data, settings.ValidationFraction, seed: settings.Seed);
            data = split.TrainSet;
            validation = split.TestSet;
        }

        var b = settings.BaseOptions;
        using var validationImages = ImageBatchReader.ReadAll(validation, b.ImageColumnName, b.LabelColumnName, b.Channels, b.Height, b.Width);
        var random = new Random(settings.Seed);
        var candidates = Enumerable.Range(0, settings.Trials).Select(i => Draw(i, random)).ToList();
        string root = Path.Combine(Path.GetTempPath(), $"mldiffusion-experiment-{Guid.NewGuid():N}");
        var clock = Stopwatch.StartNew();
        var finished = new Dictionary<int, ExperimentTrial>();
        var samplers = new Dictionary<int, DiffusionSampler>();
        try
        {
            int steps = settings.FirstRoundSteps;
            for (int round = 0; candidates.Count > 0; round++)
            {
                foreach (var (id, description, options) in candidates)
                {
                    if (settings.MaxTime is TimeSpan budget && clock.Elapsed >= budget && finished.Count > 0)
                    {
                        channel.Info(MessageSensitivity.None, $"Time budget used up; trial {id} is not trained in round {round}.");
                        continue;
                    }

                    var trialClock = Stopwatch.StartNew();
                    options.TrainSteps = steps;
                    options.CheckpointDirectory = Path.Combine(root, id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                    options.Resume = round > 0;
                    options.CheckpointEvery = int.MaxValue;
                    samplers.Remove(id, out var previous);
                    previous?.Dispose();
                    var sampler = mlContext.Generative().Diffusion(options).Fit(data);
                    samplers[id] = sampler;
                    double metric = Evaluate(sampler, validationImages);
                    var before = finished.TryGetValue(id, out var old) ? old.Duration : TimeSpan.Zero;
                    finished[id] = new ExperimentTrial(id, description, options, round, steps, metric, before + trialClock.Elapsed);
                    channel.Info(MessageSensitivity.None, FormattableString.Invariant(
                        $"Round {round}, trial {id} ({description}), {steps} steps: {settings.Metric} = {metric:G5} ({trialClock.Elapsed.TotalSeconds:F0} s)"));
                }

                // Trials the time budget skipped in this round are not ranked (and never had a first round if this is it).
                var ranked = candidates.Where(c => finished.TryGetValue(c.Id, out var trial) && trial.Round == round).OrderBy(c => finished[c.Id].Metric).ToList();
                int keep = ranked.Count / settings.ReductionFactor;
                if (keep < 1 || (settings.MaxTime is TimeSpan limit && clock.Elapsed >= limit))
                {
                    break;
                }

                candidates = ranked.Take(keep).ToList();
                steps *= settings.ReductionFactor;
            }

            var trials = finished.Values.OrderByDescending(t => t.Round).ThenBy(t => double.IsNaN(t.Metric) ? double.MaxValue : t.Metric).ToList();
            var best = samplers[trials[0].Id];
            foreach (var (id, sampler) in samplers.Where(s => s.Key != trials[0].Id))
            {
                sampler.Dispose();
            }

            return new DiffusionExperimentResult(trials, best);
        }
        catch
        {
            foreach (var sampler in samplers.Values)
            {
                sampler.Dispose();
            }

            throw;
        }
        finally
        {
            if (Directory.Exists(root))
            {
                Directory.Delete(root, recursive: true);
            }
        }
    }

    private (int Id, string Description, DiffusionTrainerOptions Options) Draw(int id, Random random)
    {
        var space = settings.SearchSpace;
        T Pick<T>(IReadOnlyList<T> values) => values[random.Next(values.Count)];
        // Every setting of the base options reaches the trial (one clone, so none can be forgotten); then the searched
        // values are drawn, and Run sets the steps, checkpoints and resumption of each round.
        var options = settings.BaseOptions.Clone();
        var network = options.Network;
        if (network is UNetOptions unet)
        {
            // The width and dropout axes are the U-Net's; other networks keep the base options' shape.
            unet.Dim = Pick(space.Widths);
            unet.Dropout = Pick(space.Dropouts);
        }

        double lr = Math.Exp(Math.Log(space.LearningRate.Min) + (random.NextDouble() * (Math.Log(space.LearningRate.Max) - Math.Log(space.LearningRate.Min))));
        options.Schedule = Pick(space.Schedules);
        options.Objective = Pick(space.Objectives);
        options.Loss = Pick(space.Losses);
        options.Variance = Pick(space.Variances);
        options.LearningRate = lr;
        options.WarmupSteps = Math.Max(1, settings.FirstRoundSteps / 10);
        options.EmaDecay = Pick(space.EmaDecays);
        options.Seed = settings.Seed + id;
        options.MaxTrainingTime = null; // the experiment's own MaxTime is the budget
        string description = FormattableString.Invariant(
            $"{options.Schedule}, {options.Objective}, {options.Loss}, {options.Variance}, lr {lr:G2}, {Shape(network)}, EMA {options.EmaDecay}");
        return (id, description, options);
    }

    private static string Shape(DenoiserOptions network) => network is UNetOptions u
        ? FormattableString.Invariant($"dim {u.Dim}, dropout {u.Dropout}")
        : network.Kind;

    private double Evaluate(DiffusionSampler sampler, TrainingImages validation)
    {
        var model = sampler.Model;
        int count = (int)Math.Min(settings.ValidationImages, validation.Count);
        using var scope = NewDisposeScope();
        var images = validation.Images[..count];
        var labels = validation.Labels?[..count];
        switch (settings.Metric)
        {
            case ExperimentMetric.BitsPerDim:
                return new LikelihoodEvaluator(model).Evaluate(images, labels, new LikelihoodOptions { Steps = settings.BoundSteps, Seed = settings.Seed }).BitsPerDim;
            case ExperimentMetric.FrechetDistance:
                var seeds = Enumerable.Range(0, count).Select(i => SeededNoise.DeriveSeed(settings.Seed, i)).ToArray();
                var generated = sampler.Options.CreateSamplingLoop().Sample(model.Diffusion, seeds, labels);
                return FrechetDistance.Compute(settings.FeatureClassifier!.Features(images), settings.FeatureClassifier.Features(generated));
            default:
                return model.Diffusion.NoisePredictionError(images.to(model.Diffusion.Device), labels?.to(model.Diffusion.Device), settings.Seed);
        }
    }
}
