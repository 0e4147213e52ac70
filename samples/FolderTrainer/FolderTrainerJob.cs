using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using DiffusionSamples;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Diffusion.Import;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using Microsoft.ML.Diffusion.Tools.Pictures;
using static TorchSharp.torch;

namespace FolderTrainer;

/// <summary>
/// Trains a diffusion model on a folder of images, as denoising-diffusion-pytorch's <c>Trainer(diffusion, 'path/to/images')</c>
/// does: every --sample-every steps it writes OUT/sample-NNNNNN.png (a grid of samples with fixed seeds, so milestones
/// compare) and OUT/model-NNNNNN.zip (an ordinary ML.NET model file), and it keeps OUT/training-log.csv,
/// OUT/training-curve.png and OUT/checkpoints/ up to date; at the end OUT/model.zip is the final model. --resume
/// continues a stopped run exactly.
/// </summary>
public static class FolderTrainerJob
{
    /// <summary>The warm-up without --warmup: this many steps, or less under a short --minutes budget.</summary>
    public const int DefaultWarmup = 200;

    private const int ProbeSteps = 4;        // timed under a --minutes budget to size the warm-up
    private const double WarmupShare = 0.1;  // of the steps a --minutes budget allows


    /// <summary>Runs the folder trainer; returns the process exit code (0 done, 1 training failed, 2 bad command line).</summary>
    /// <param name="args">The command line.</param>
    /// <param name="console">Where progress and messages go.</param>
    /// <returns>The exit code.</returns>
    public static int Run(string[] args, TextWriter console)
    {
        ArgumentNullException.ThrowIfNull(console);
        if (ShardedGeneration.IsRequested(args))
        {
            // --generate MODEL [--shard i/N] / --merge DIR: a milestone's grid from a saved model, in shards (docs/distributed.md).
            return ShardedGeneration.Run(args, console, "dotnet run -c Release --project samples/FolderTrainer --", new FolderOptions().Samples, SampleGrid);
        }

        if (!FolderOptions.TryParse(args, console, out var options, out int exitCode))
        {
            return exitCode;
        }

        return UserErrors.Run(console, OptionNames, () => Train(options, console));
    }

    /// <summary>The command-line option of each library setting, for the messages (a library message names the setting).</summary>
    internal static readonly IReadOnlyDictionary<string, string> OptionNames = new Dictionary<string, string>
    {
        ["ImageHeight"] = "--size",
        ["ImageWidth"] = "--size",
        ["Channels"] = "--channels",
        ["Dim"] = "--dim",
        ["DimMults"] = "--mults",
        ["Timesteps"] = "--timesteps",
        ["BatchSize"] = "--batch",
        ["TrainSteps"] = "--steps",
        ["LearningRate"] = "--lr",
        ["WarmupSteps"] = "--warmup",
        ["MaxTrainingTime"] = "--minutes",
        ["CheckpointEvery"] = "--sample-every",
        ["Sampling"] = "--sampling-steps",
        ["GuidanceScale"] = "--guidance",
        ["Device"] = "--device",
        ["device"] = "--device",
    };

    private static int Train(FolderOptions options, TextWriter console)
    {
        var total = Stopwatch.StartNew();
        string checkpoints = Path.Combine(options.Out, "checkpoints");

        // Every setting, and every combination of them, is checked before the folder is read (the channels are not known
        // yet: the checks do not depend on them), so that a bad one fails in a second and names its option.
        ToTrainerOptions(options, options.Channels == "3" ? 3 : 1, options.Warmup ?? DefaultWarmup, checkpoints).Validate();
        UserErrors.CheckOutputFolder(options.Out);
        CheckSampleGrid(options);
        using var inception = options.Inception is null ? null : FidInception.Load(options.Inception, options.Device); // a wrong file fails now, not after training
        if (!Directory.Exists(options.Folder))
        {
            throw new DirectoryNotFoundException($"The image folder '{options.Folder}' does not exist.");
        }

        // The library's walk: no link loop, each file once, only regular files, every header checked before anything is
        // decoded (channel detection below decodes a few of them).
        string[] files = ImageFolder.ListImages(options.Folder).Files.ToArray();
        int channels = options.Channels switch
        {
            "1" => 1,
            "3" => 3,
            _ => files.Length == 0 ? 1 : DetectChannels(files),
        };

        var mlContext = new MLContext(seed: options.Seed);
        IDataView data = ImageFolder.Load(mlContext, options.Folder, options.Size, channels, labelsFromSubfolders: options.Labels);
        string classes = string.Empty;
        if (options.Labels)
        {
            VBuffer<ReadOnlyMemory<char>> names = default;
            data.Schema["Label"].GetKeyValues(ref names);
            classes = $", {names.Length} classes: {string.Join(", ", names.DenseValues().Select(n => n.Length == 0 ? "(top folder)" : n.ToString()))}";
        }

        console.WriteLine($"Data: {files.Length} images in {Path.GetFullPath(options.Folder)}{classes}; as {options.Size}×{options.Size} {(channels == 1 ? "gray" : "RGB")}.");

        // Nothing is written to --out before the inputs and the settings are known good; then the folder is this run's
        // alone (a second process on it stops here, having touched nothing).
        var settings = ToTrainerOptions(options, channels, options.Warmup ?? DefaultWarmup, checkpoints);
        settings.Validate();
        int classCount = options.Labels && data.Schema["Label"].Type is KeyDataViewType key ? (int)key.Count : 0;
        if (UserErrors.CheckMemory(
                settings.EstimateMemory(files.Length, classCount),
                options.Device,
                $"--batch {options.Batch}, --size {options.Size}, --dim {options.Dim} and --mults {string.Join(',', options.Mults)} on {files.Length} images") is string tooBig)
        {
            console.WriteLine($"Error: {tooBig}");
            return UserErrors.Failed;
        }

        using var folder = RunFolder.Acquire(options.Out);
        int newest = LatestCheckpointStep(checkpoints);
        if (newest > 0 && !options.Resume)
        {
            console.WriteLine($"'{options.Out}' already holds a run (its newest checkpoint is at step {newest}): pass --resume to continue it, or choose another --out.");
            return 2;
        }

        // A damaged newest checkpoint (disk fault, a copy cut short) is reported and the newest intact one is used.
        string? resumeFrom = options.Resume
            ? MilestoneTraining.FindResumeCheckpoint(checkpoints, damaged => console.WriteLine($"Warning: {damaged}"))
            : null;
        int resumeStep = resumeFrom is null ? 0 : StepOf(resumeFrom);

        TimeSpan? budget = options.Minutes is double minutes ? TimeSpan.FromMinutes(minutes) : null;
        bool resuming = options.Resume && resumeStep > 0;
        string warmupFile = Path.Combine(options.Out, "warmup-steps.txt");
        int warmup = options.Warmup ?? (resuming && File.Exists(warmupFile) ? int.Parse(File.ReadAllText(warmupFile), NumberStyles.None, CultureInfo.InvariantCulture) : DefaultWarmup);
        var trainer = ToTrainerOptions(options, channels, warmup, checkpoints);
        trainer.Validate();

        // The rows up to the resumed step are kept (those after it are trained again); a kill at any moment loses none of them.
        using var log = TrainingLog.Open(Path.Combine(options.Out, "training-log.csv"), resumeStep);
        var curve = log.Rows.ToList();
        console.WriteLine(resuming
            ? $"Resuming from step {resumeStep} of {options.Steps} ({resumeFrom})."
            : $"Training {options.Steps} steps of {options.Batch} images; a sample grid and a model file every {options.SampleEvery} steps in {Path.GetFullPath(options.Out)}.");

        // A time budget with the default warm-up: time the first steps, then make the warm-up a share of the steps the
        // budget allows, so that a short budget is not all warm-up (the run continues from those steps' checkpoint).
        var clock = Stopwatch.StartNew();
        if (budget is TimeSpan limit && options.Warmup is null && !resuming && options.Steps > ProbeSteps)
        {
            warmup = FitWarmupToBudget(mlContext, data, options, channels, checkpoints, limit, p =>
            {
                curve.Add(p);
                log.Append(p);
            }, console);
            File.WriteAllText(warmupFile, warmup.ToString(CultureInfo.InvariantCulture));
            trainer = ToTrainerOptions(options, channels, warmup, checkpoints);
            trainer.Resume = true;
            trainer.MaxTrainingTime = limit > clock.Elapsed + TimeSpan.FromSeconds(1) ? limit - clock.Elapsed : TimeSpan.FromSeconds(1);
        }

        // The display measures the whole budget, the timing steps included.
        var before = clock.Elapsed;
        var display = new TrainingDisplay(console, budget, warmup);
        trainer.Progress = new Reporter(p =>
        {
            curve.Add(p);
            log.Append(p);
            display.Show(p with { Elapsed = p.Elapsed + before });
        });

        using var sampler = display.Run(() => MilestoneTraining.Fit(mlContext, data, trainer, options.SampleEvery, milestone =>
        {
            int step = milestone.Model.TrainedSteps;
            string grid = string.Create(CultureInfo.InvariantCulture, $"sample-{step:D6}.png");
            string model = string.Create(CultureInfo.InvariantCulture, $"model-{step:D6}.zip");
            WriteGrid(milestone, options, Path.Combine(options.Out, grid));
            milestone.Save(mlContext, Path.Combine(options.Out, model));
            if (curve.Count > 0)
            {
                TrainingCurve.Save(curve, Path.Combine(options.Out, "training-curve.png"));
            }

            display.WriteLine($"step {step}: {grid}, {model}, training-curve.png");
        }));
        sampler.Save(mlContext, Path.Combine(options.Out, "model.zip"));
        console.WriteLine($"Trained to step {sampler.Model.TrainedSteps} in {total.Elapsed:hh\\:mm\\:ss}. Wrote {Path.GetFullPath(options.Out)}: model.zip (the final model), "
            + "sample-*.png, model-*.zip, training-log.csv, training-curve.png, checkpoints/.");
        if (inception is not null)
        {
            FolderFid.Measure(sampler, data, options, inception, console);
        }

        return 0;
    }

    /// <summary>
    /// The library options of a run: the one place where the command line meets the library (sampler and trainer
    /// options). Keep it free of anything else.
    /// </summary>
    private static DiffusionTrainerOptions ToTrainerOptions(FolderOptions options, int channels, int warmup, string checkpoints) => new()
    {
        ImageColumnName = "Pixels",
        LabelColumnName = options.Labels ? "Label" : null,
        ImageSize = options.Size,
        Channels = channels,
        Timesteps = options.Timesteps,
        Schedule = BetaSchedule.Cosine,
        Objective = PredictionTarget.Velocity,
        Loss = DiffusionLoss.MeanSquaredError,
        Network = new UNetOptions { Dim = options.Dim, DimMults = options.Mults.ToArray() },
        BatchSize = options.Batch,
        LearningRate = options.LearningRate,
        WarmupSteps = warmup,
        EmaDecay = 0.995,
        RandomHorizontalFlip = options.Flip,
        TrainSteps = options.Steps,
        MaxTrainingTime = options.Minutes is double minutes ? TimeSpan.FromMinutes(minutes) : null,
        Seed = options.Seed,
        Device = options.Device,
        Precision = options.Precision switch { "bf16" => Microsoft.ML.Diffusion.Core.Runtime.Precision.BFloat16, "fp16" => Microsoft.ML.Diffusion.Core.Runtime.Precision.Float16, _ => Microsoft.ML.Diffusion.Core.Runtime.Precision.Float32 },
        LogEvery = Math.Clamp(options.SampleEvery / 10, 1, 50),
        CheckpointDirectory = checkpoints,
        CheckpointEvery = options.SampleEvery,
        KeepCheckpoints = 2,
        Resume = options.Resume,
        Sampling = new DiffusionSamplerOptions
        {
            Scheduler = new DdimScheduler { Steps = options.SamplingSteps },
            GuidanceScale = options.Labels ? options.Guidance : 1.0,
            Seed = options.Seed,
        },
    };

    // Trains the first ProbeSteps steps (checkpointed: the run goes on from them) and times them; returns the warm-up: the
    // default, or WarmupShare of the steps the rest of the budget allows at that pace when that is fewer.
    private static int FitWarmupToBudget(MLContext mlContext, IDataView data, FolderOptions options, int channels, string checkpoints, TimeSpan budget, Action<TrainingProgress> record, TextWriter console)
    {
        var clock = Stopwatch.StartNew();
        var reports = new List<TrainingProgress>();
        var probe = ToTrainerOptions(options, channels, DefaultWarmup, checkpoints);
        probe.TrainSteps = ProbeSteps;
        probe.LogEvery = 1;
        probe.CheckpointEvery = ProbeSteps;
        probe.Progress = new Reporter(p =>
        {
            reports.Add(p);
            record(p);
        });
        mlContext.Generative().Diffusion(probe).Fit(data).Dispose();
        if (reports.Count < 2)
        {
            return DefaultWarmup; // the budget ended inside the first steps: nothing to size
        }

        // The pace after the first step (which also builds the network and reads the data).
        double secondsPerStep = (reports[^1].Elapsed - reports[0].Elapsed).TotalSeconds / (reports[^1].Step - reports[0].Step);
        double left = Math.Max(0, (budget - clock.Elapsed).TotalSeconds);
        int expected = (int)Math.Min(options.Steps, reports[^1].Step + (left / Math.Max(1e-9, secondsPerStep)));
        int warmup = Math.Clamp((int)(expected * WarmupShare), 1, DefaultWarmup);
        if (warmup < DefaultWarmup)
        {
            console.WriteLine(FormattableString.Invariant(
                $"Warm-up shortened from {DefaultWarmup} to {warmup} steps: the {budget.TotalMinutes:0.##}-minute budget allows about {expected} steps at the measured {options.Batch / secondsPerStep:F0} images/s, and the warm-up takes at most a tenth of them (--warmup N fixes it)."));
        }

        return warmup;
    }

    // The milestone grids' layout (WriteGrid), for --generate: ⌈√count⌉ columns, enlarged to about 64 pixels, the class names.
    private static readonly GridStyle SampleGrid = new(
        (model, label) => model.ClassNames is { } names && label < names.Count ? names[label] : label.ToString(CultureInfo.InvariantCulture),
        count => (int)Math.Ceiling(Math.Sqrt(count)),
        side => Math.Max(1, 64 / side),
        "samples.png");

    private static void WriteGrid(DiffusionSampler sampler, FolderOptions options, string path)
    {
        int count = options.Samples;
        int columns = (int)Math.Ceiling(Math.Sqrt(count));
        var seeds = Enumerable.Range(0, count).Select(i => ((long)options.Seed * 1000) + i).ToArray();
        int classCount = sampler.Model.ClassCount;
        using var scope = NewDisposeScope();
        var labels = classCount > 0 ? tensor(Enumerable.Range(0, count).Select(i => (long)(i % classCount)).ToArray()) : null;
        var images = sampler.Options.CreateSamplingLoop().Sample(sampler.Model.Diffusion, seeds, labels);
        var names = sampler.Model.ClassNames;
        var captions = classCount > 0
            ? Enumerable.Range(0, count).Select(i => names is not null && i % classCount < names.Count ? names[i % classCount] : (i % classCount).ToString(CultureInfo.InvariantCulture)).ToArray()
            : null;
        ImageConversion.SavePng(DiffusionPictures.LabelledGrid(images, columns, captions, scale: Math.Max(1, 64 / options.Size)), path);
    }

    // The sample grid is a PNG the library would read back: its side is bounded as an image folder's images are.
    private static void CheckSampleGrid(FolderOptions options)
    {
        int columns = (int)Math.Ceiling(Math.Sqrt(options.Samples));
        long cell = (long)options.Size * Math.Max(1, 64 / options.Size);
        if (columns * cell > ImageFolder.MaxImageSide)
        {
            long most = (long)Math.Pow(Math.Max(1, ImageFolder.MaxImageSide / cell), 2);
            throw new ArgumentOutOfRangeException(
                nameof(options.Samples),
                string.Create(CultureInfo.InvariantCulture, $"--samples {options.Samples} at --size {options.Size} makes a sample grid over {columns * cell} pixels wide; the limit is {ImageFolder.MaxImageSide} (ImageFolder.MaxImageSide): at most {most} samples at this size."));
        }
    }

    // Gray when every sampled image (up to 64, spread over the folder) has R = G = B everywhere.
    private static int DetectChannels(string[] files)
    {
        int samples = Math.Min(64, files.Length);
        for (int k = 0; k < samples; k++)
        {
            using var image = MLImage.CreateFromFile(files[(int)((long)k * files.Length / samples)]);
            ReadOnlySpan<byte> pixels = image.Pixels;
            for (int i = 0; i + 3 < pixels.Length; i += 4)
            {
                if (pixels[i] != pixels[i + 1] || pixels[i + 1] != pixels[i + 2])
                {
                    return 3;
                }
            }
        }

        return 1;
    }

    private static int LatestCheckpointStep(string directory)
    {
        if (!Directory.Exists(directory))
        {
            return 0;
        }

        return Directory.GetFiles(directory, "checkpoint-*.ckpt")
            .Select(f => Path.GetFileNameWithoutExtension(f)["checkpoint-".Length..])
            .Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int step) ? step : 0)
            .DefaultIfEmpty(0)
            .Max();
    }

    private static int StepOf(string checkpoint) =>
        int.TryParse(Path.GetFileNameWithoutExtension(checkpoint)["checkpoint-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int step) ? step : 0;

    private sealed class Reporter : IProgress<TrainingProgress>
    {
        private readonly Action<TrainingProgress> action;

        public Reporter(Action<TrainingProgress> action) => this.action = action;

        public void Report(TrainingProgress value) => action(value);
    }
}
