using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Distributed;
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
/// <para>Under <c>mpirun</c> (several ranks, <see cref="Collective.World"/>) every rank calls this with the same
/// arguments: each trains its share of every batch; rank 0 alone looks at the checkpoint folder, decides where to resume
/// and how much time is left, and alone calls the milestone callback, while the others wait for it (a failure there stops
/// every rank); every rank returns the same final sampler.</para>
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
    /// The checkpoint folder already holds a run and <see cref="DiffusionTrainerOptions.Resume"/> is false, or the
    /// checkpoint a milestone continues from was deleted during the run.
    /// </exception>
    /// <exception cref="DirectoryNotFoundException">The checkpoint folder was deleted or moved during the run.</exception>
    /// <exception cref="InvalidDataException">Resuming, and every checkpoint of the folder is damaged.</exception>
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
        var world = Collective.World;
        int newest = (int)world.AgreeWithRoot(world.IsRoot ? StepOf(Checkpoint.FindLatest(directory)) : 0, "agree on the newest checkpoint");
        if (newest > 0 && !options.Resume)
        {
            throw new InvalidOperationException(
                $"'{directory}' already holds checkpoints of a run (the newest at step {newest}): set Resume to continue it, or use an empty folder.");
        }

        // Where the first segment's resume continues from: the newest intact checkpoint (a damaged newer one is skipped).
        int start = (int)world.AgreeWithRoot(options.Resume && world.IsRoot ? StepOf(Checkpoint.FindLatestIntact(directory, null)) : 0, "agree on the step to resume from");

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
                // Each segment continues from the checkpoint the one before wrote: if it is gone (the folder deleted or
                // emptied meanwhile), stop rather than start again from step 0.
                if (done > 0)
                {
                    int reachedStep = done;
                    world.RunOnRoot(() => RequireCheckpoint(directory, reachedStep), FormattableString.Invariant($"find the checkpoint of step {done}"));
                }

                var segment = Copy(options);
                segment.TrainSteps = Math.Min(total, ((done / every) + 1) * every);
                segment.WarmupSteps = options.EffectiveWarmupSteps;
                segment.Resume = options.Resume || done > 0;
                segment.Training.RequiredResumeStep = done;
                if (options.MaxTrainingTime is TimeSpan budget)
                {
                    var left = TimeSpan.FromTicks(world.AgreeWithRoot((budget - clock.Elapsed).Ticks, "agree on the time left"));
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
                    world.RunOnRoot(() => milestone(sampler), FormattableString.Invariant($"save the milestone of step {done}"));
                }

                if (!progressed || done >= total || done < segment.TrainSteps)
                {
                    break; // finished, nothing left to do, or the time budget ran out inside the segment
                }
            }

            // A budget used up before the first segment: the model as the checkpoints left it.
            if (current is null && done > 0)
            {
                world.RunOnRoot(() => RequireCheckpoint(directory, done), FormattableString.Invariant($"find the checkpoint of step {done}"));
            }

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

    /// <summary>
    /// The checkpoint a resume in <paramref name="checkpointDirectory"/> continues from: the newest intact one, or null when
    /// the folder holds none (a resume then starts at step 0). A newer checkpoint that is damaged (its SHA-256 does not
    /// match: a disk fault, a copy cut short) is skipped and reported to <paramref name="damaged"/>, which receives a
    /// sentence naming it, the reason and the checkpoint used instead; training with
    /// <see cref="DiffusionTrainerOptions.Resume"/> does the same.
    /// </summary>
    /// <param name="checkpointDirectory">The checkpoint folder.</param>
    /// <param name="damaged">Receives a sentence per damaged checkpoint skipped, newest first; may be null.</param>
    /// <returns>The path of the checkpoint to continue from, or null.</returns>
    /// <exception cref="InvalidDataException">
    /// Every checkpoint of the folder is damaged: the message names them and says what to do.
    /// </exception>
    public static string? FindResumeCheckpoint(string checkpointDirectory, Action<string>? damaged = null)
    {
        ArgumentNullException.ThrowIfNull(checkpointDirectory);
        var skipped = new System.Collections.Generic.List<(string Path, string Reason)>();
        string? intact = Checkpoint.FindLatestIntact(checkpointDirectory, (path, reason) => skipped.Add((path, reason)));
        if (damaged is not null)
        {
            foreach (var (path, reason) in skipped)
            {
                damaged($"{reason} Continuing from the older intact checkpoint '{intact}' instead; the damaged file is replaced when training reaches its step again.");
            }
        }

        return intact;
    }

    // The step of a checkpoint file (checkpoint-NNNNNNNN.ckpt), or 0 for none.
    private static int StepOf(string? checkpoint)
    {
        if (checkpoint is null)
        {
            return 0;
        }

        string name = Path.GetFileNameWithoutExtension(checkpoint);
        return int.TryParse(name[(name.LastIndexOf('-') + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int step) ? step : 0;
    }

    private static void RequireCheckpoint(string directory, int step)
    {
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException(
                $"The checkpoint folder '{directory}' disappeared during the run (deleted or moved) after step {step}: stopping rather than starting again from step 0. "
                + "Put it back and resume, or start again in a new output folder.");
        }

        if (StepOf(Checkpoint.FindLatest(directory)) < step)
        {
            throw new InvalidOperationException(
                $"The checkpoint of step {step} is missing from '{directory}' (deleted during the run): stopping rather than starting again from an older step. "
                + "Put it back and resume, or start again in a new output folder.");
        }
    }

    private static DiffusionTrainerOptions Resumed(DiffusionTrainerOptions options, int step)
    {
        var copy = Copy(options);
        copy.TrainSteps = step;
        copy.WarmupSteps = options.EffectiveWarmupSteps;
        copy.Resume = step > 0;
        copy.Training.RequiredResumeStep = step;
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
