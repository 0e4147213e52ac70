using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Training;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// Training with milestones, as denoising-diffusion-pytorch's <c>Trainer</c> saves and samples every N steps: trains
/// like <see cref="DiffusionTrainer.Fit"/> and hands a finished <see cref="DiffusionSampler"/> (EMA weights, ready to
/// generate and to save as an ordinary ML.NET model file) to a callback every <c>every</c> steps and at the end.
/// </summary>
/// <remarks>
/// <para>The run is a series of <see cref="DiffusionTrainer.Fit"/> calls, each continuing from the checkpoint the one
/// before wrote in <see cref="DiffusionTrainerOptions.CheckpointDirectory"/> (which is therefore required). Because a
/// resume restores weights, EMA, optimizer, step, data order and random states, the result equals one uninterrupted
/// <c>Fit</c> of <see cref="DiffusionTrainerOptions.TrainSteps"/> steps — bit for bit on the CPU. The warm-up length is
/// fixed from the whole run's step count; <see cref="DiffusionTrainerOptions.MaxTrainingTime"/> bounds the whole call;
/// progress reports count steps, elapsed time and the estimate against the whole run.</para>
/// <para>The data are cached in memory (<c>mlContext.Data.Cache</c>) so that image files are decoded once, not once per
/// milestone.</para>
/// </remarks>
public static class MilestoneTraining
{
    /// <summary>Trains, calling <paramref name="milestone"/> with the sampler every <paramref name="every"/> steps and at the end.</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="data">The training data (columns as <see cref="DiffusionTrainer.Fit"/> expects).</param>
    /// <param name="options">
    /// The trainer's options; <see cref="DiffusionTrainerOptions.CheckpointDirectory"/> must be set, and
    /// <see cref="DiffusionTrainerOptions.Resume"/> continues an earlier run in it. The object is not changed.
    /// </param>
    /// <param name="every">Steps between milestones.</param>
    /// <param name="milestone">
    /// Receives each milestone's sampler (its <see cref="DiffusionModel.TrainedSteps"/> is the step); the sampler is
    /// disposed after the call, except the last, which is returned.
    /// </param>
    /// <returns>The final sampler.</returns>
    /// <exception cref="InvalidOperationException">
    /// The checkpoint folder already holds a run and <see cref="DiffusionTrainerOptions.Resume"/> is false.
    /// </exception>
    public static DiffusionSampler Fit(MLContext mlContext, IDataView data, DiffusionTrainerOptions options, int every, Action<DiffusionSampler> milestone)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(milestone);
        if (every < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(every), every, "Milestones must be at least one step apart.");
        }

        if (options.CheckpointDirectory is not string directory)
        {
            throw new ArgumentException("Milestone training needs options.CheckpointDirectory: each milestone continues from its checkpoints.", nameof(options));
        }

        options.Validate();
        int start = LatestStep(directory);
        if (start > 0 && !options.Resume)
        {
            throw new InvalidOperationException(
                $"'{directory}' already holds checkpoints of a run (the newest at step {start}): set Resume to continue it, or use an empty folder.");
        }

        if (!options.Resume)
        {
            start = 0;
        }

        var cached = mlContext.Data.Cache(data);
        int total = options.TrainSteps;
        var clock = Stopwatch.StartNew();
        int done = start;
        int skippedBefore = 0, skippedInSegment = 0;
        DiffusionSampler? current = null;
        try
        {
            while (true)
            {
                var segment = Copy(options);
                segment.TrainSteps = Math.Min(total, ((done / every) + 1) * every);
                segment.WarmupSteps = options.EffectiveWarmupSteps;
                segment.Resume = options.Resume || done > 0;
                if (options.MaxTrainingTime is TimeSpan budget)
                {
                    var left = budget - clock.Elapsed;
                    if (left <= TimeSpan.Zero)
                    {
                        break;
                    }

                    segment.MaxTrainingTime = left;
                }

                skippedInSegment = 0;
                segment.Progress = options.Progress is null ? null : new Relay(p =>
                {
                    skippedInSegment = p.SkippedSteps;
                    double rate = (p.Step - start) / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                    var remaining = TimeSpan.FromSeconds(Math.Min((total - p.Step) / Math.Max(1e-9, rate), TimeSpan.MaxValue.TotalSeconds / 2));
                    if (options.MaxTrainingTime is TimeSpan limit && limit - clock.Elapsed < remaining)
                    {
                        remaining = limit > clock.Elapsed ? limit - clock.Elapsed : TimeSpan.Zero;
                    }

                    options.Progress.Report(p with { TotalSteps = total, Elapsed = clock.Elapsed, EstimatedRemaining = remaining, SkippedSteps = skippedBefore + p.SkippedSteps });
                });
                var sampler = mlContext.Generative().Diffusion(segment).Fit(cached);
                current?.Dispose();
                current = sampler;
                skippedBefore += skippedInSegment;
                int reached = sampler.Model.TrainedSteps;
                bool progressed = reached > done;
                done = reached;
                if (progressed)
                {
                    milestone(sampler);
                }

                if (!progressed || done >= total || done < segment.TrainSteps)
                {
                    break; // finished, nothing left to do, or the time budget ran out inside the segment
                }
            }

            // A budget used up before the first segment: the model as the checkpoints left it.
            current ??= mlContext.Generative().Diffusion(Resumed(options, done)).Fit(cached);
            var result = current;
            current = null;
            return result;
        }
        finally
        {
            current?.Dispose();
        }
    }

    // The step of the newest checkpoint in the folder, or 0.
    private static int LatestStep(string directory)
    {
        string? latest = Checkpoint.FindLatest(directory);
        if (latest is null)
        {
            return 0;
        }

        string name = Path.GetFileNameWithoutExtension(latest);
        return int.TryParse(name[(name.LastIndexOf('-') + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int step) ? step : 0;
    }

    private static DiffusionTrainerOptions Resumed(DiffusionTrainerOptions options, int step)
    {
        var copy = Copy(options);
        copy.TrainSteps = step;
        copy.WarmupSteps = options.EffectiveWarmupSteps;
        copy.Resume = step > 0;
        copy.MaxTrainingTime = null;
        return copy;
    }

    // A shallow copy of every public settable option, so that the caller's object is never changed.
    private static DiffusionTrainerOptions Copy(DiffusionTrainerOptions options)
    {
        var copy = new DiffusionTrainerOptions();
        foreach (var property in typeof(DiffusionTrainerOptions).GetProperties().Where(p => p.CanRead && p.CanWrite && p.GetIndexParameters().Length == 0))
        {
            property.SetValue(copy, property.GetValue(options));
        }

        return copy;
    }

    private sealed class Relay : IProgress<TrainingProgress>
    {
        private readonly Action<TrainingProgress> action;

        public Relay(Action<TrainingProgress> action) => this.action = action;

        public void Report(TrainingProgress value) => action(value);
    }
}
