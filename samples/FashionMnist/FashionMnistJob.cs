using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using DiffusionSamples;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Diffusion.Import;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using Microsoft.ML.Diffusion.Tools.Pictures;
using TorchSharp;
using static TorchSharp.torch;

namespace FashionMnist;

/// <summary>
/// The main job: trains a class-conditional diffusion model on Fashion-MNIST through the ML.NET API within a time budget,
/// then writes OUT/samples.png (8×8 labelled grid), OUT/denoising.png (progressive denoising), OUT/model.zip (ML.NET model
/// file), OUT/training-log.csv (step, loss, lr, images/s) and OUT/training-curve.png (the same, drawn).
/// </summary>
public static class FashionMnistJob
{
    /// <summary>Class names of Fashion-MNIST, by label.</summary>
    public static readonly string[] ClassNames = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };

    /// <summary>The job's diffusion steps T (so --sampling-steps is at most this).</summary>
    public const int Timesteps = 1000;

    private const string InstalledFolder = "/usr/share/datasets/fashion-mnist";

    /// <summary>The command-line option of each library setting, for the messages (a library message names the setting).</summary>
    internal static readonly System.Collections.Generic.IReadOnlyDictionary<string, string> OptionNames = new System.Collections.Generic.Dictionary<string, string>
    {
        ["TrainSteps"] = "--steps",
        ["MaxTrainingTime"] = "--minutes",
        ["Sampling"] = "--sampling-steps",
        ["GuidanceScale"] = "--guidance",
        ["Device"] = "--device",
        ["device"] = "--device",
    };

    /// <summary>Runs the job; returns the process exit code (0 done, 1 failed on what it was given, 2 bad command line).</summary>
    public static int Run(string[] args, TextWriter console)
    {
        ArgumentNullException.ThrowIfNull(console);
        if (ShardedGeneration.IsRequested(args))
        {
            // --generate MODEL [--shard i/N] / --merge DIR: the training run's grid from a saved model, in shards (docs/distributed.md).
            return ShardedGeneration.Run(args, console, "dotnet run -c Release --project samples/FashionMnist --", SampleCount, SampleGrid);
        }

        if (!JobOptions.TryParse(args, console, out var options, out int exitCode))
        {
            return exitCode;
        }

        return UserErrors.Run(console, OptionNames, () => Train(options, console));
    }

    private static int Train(JobOptions options, TextWriter console)
    {
        var total = Stopwatch.StartNew();

        // The settings first (in a second, naming the option), then the data, then the memory: nothing is written to
        // --out before all three are known good.
        var trainer = ToTrainerOptions(options);
        trainer.Validate();
        UserErrors.CheckOutputFolder(options.Out);
        using var inception = options.Metrics && options.Inception is not null ? FidInception.Load(options.Inception, options.Device) : null; // a wrong file fails now, not after training
        var mlContext = new MLContext(seed: options.Seed);
        var source = FindData(options.Data);
        console.WriteLine($"Data: {source.Description}");
        var (train, test) = Split(mlContext, source, holdOut: options.Metrics);
        long rows = train.GetRowCount() ?? 0;
        if (UserErrors.CheckMemory(trainer.EstimateMemory(rows, options.Unconditional ? 0 : ClassNames.Length), options.Device, $"the job's network and batch of {trainer.BatchSize} on {rows} images") is string tooBig)
        {
            console.WriteLine($"Error: {tooBig}");
            return UserErrors.Failed;
        }

        // The output folder is this run's alone from here (a second process on it stops at once, having touched nothing).
        using var folder = RunFolder.Acquire(options.Out);
        if (options.Experiment is double minutes)
        {
            trainer = Experiment(mlContext, trainer, train, minutes, console);
        }

        // On --resume the log keeps the rows up to the checkpoint the run continues from and appends after them.
        string? resumeFrom = options.Resume
            ? MilestoneTraining.FindResumeCheckpoint(trainer.CheckpointDirectory!, damaged => console.WriteLine($"Warning: {damaged}"))
            : null;
        int resumeStep = resumeFrom is null ? 0 : int.Parse(Path.GetFileNameWithoutExtension(resumeFrom)["checkpoint-".Length..], CultureInfo.InvariantCulture);
        if (resumeFrom is not null)
        {
            console.WriteLine($"Resuming from step {resumeStep} ({resumeFrom}).");
        }

        using var log = TrainingLog.Open(Path.Combine(options.Out, "training-log.csv"), resumeStep);
        var display = new TrainingDisplay(console, trainer.MaxTrainingTime, trainer.EffectiveWarmupSteps);
        var curve = log.Rows.ToList();
        trainer.Progress = new Reporter(p =>
        {
            curve.Add(p);
            log.Append(p);
            display.Show(p);
        });

        var trainingClock = Stopwatch.StartNew();
        using var sampler = display.Run(() => mlContext.Generative().Diffusion(trainer).Fit(train));
        if (curve.Count > 0)
        {
            TrainingCurve.Save(curve, Path.Combine(options.Out, "training-curve.png"));
        }

        double trainingSeconds = trainingClock.Elapsed.TotalSeconds;
        console.WriteLine($"Trained {sampler.Model.TrainedSteps} steps in {trainingClock.Elapsed:mm\\:ss}.");

        var clock = Stopwatch.StartNew();
        WriteSamples(sampler, options, Path.Combine(options.Out, "samples.png"));
        WriteDenoisingStrip(sampler, options, Path.Combine(options.Out, "denoising.png"));
        console.WriteLine($"Sampled in {clock.Elapsed:mm\\:ss}.");
        sampler.Save(mlContext, Path.Combine(options.Out, "model.zip"));
        if (options.Metrics && test is not null)
        {
            JobMetrics.Measure(sampler, train, test, options, trainingSeconds, console, inception);
        }

        console.WriteLine($"Wrote {Path.GetFullPath(options.Out)}: samples.png, denoising.png, model.zip, training-log.csv, training-curve.png{(options.Metrics ? ", metrics.json" : string.Empty)} ({total.Elapsed:mm\\:ss} in all).");
        return 0;
    }

    /// <summary>
    /// The library options of the job: the one place where the command line meets the library (sampler and trainer
    /// options). Off the CPU the job trains a wider network on bigger batches, with the learned-range variance and the
    /// hybrid loss (improved DDPM), which tightens the likelihood bound; docs/gpu/README.md says how these were chosen.
    /// </summary>
    private static DiffusionTrainerOptions ToTrainerOptions(JobOptions options)
    {
        bool gpu = options.Device != "cpu";
        return new DiffusionTrainerOptions
        {
            ImageColumnName = "Pixels",
            LabelColumnName = options.Unconditional ? null : "Label",
            ImageSize = 28,
            Channels = 1,
            Timesteps = Timesteps,
            Schedule = BetaSchedule.Cosine,
            Objective = gpu ? PredictionTarget.Noise : PredictionTarget.Velocity,
            Loss = DiffusionLoss.MeanSquaredError,
            Variance = gpu ? VarianceType.LearnedRange : VarianceType.FixedSmall,
            Network = options.Network == "dit"
                ? new DiTOptions { PatchSize = 2, HiddenSize = gpu ? 256 : 128, Depth = 6, Heads = 4 } // 196 tokens of 2×2 pixels
                : gpu
                    ? new UNetOptions { Dim = 32, DimMults = new[] { 1, 2, 4 }, AttentionHeads = 4, AttentionDimHead = 32 }
                    : new UNetOptions { Dim = 16, DimMults = new[] { 1, 2, 4 }, AttentionHeads = 2, AttentionDimHead = 16 },
            BatchSize = gpu ? 256 : 64,
            MicroBatchSize = gpu ? null : 32, // chunks pay on the CPU only (docs/performance.md)
            LearningRate = gpu ? 1e-3 : 2e-3,
            WarmupSteps = gpu ? 200 : 100,
            EmaDecay = gpu ? 0.999 : 0.995,
            TrainSteps = options.Steps ?? 100_000,
            MaxTrainingTime = options.Steps is null ? TimeSpan.FromMinutes(options.Minutes) : null,
            Seed = options.Seed,
            Device = options.Device,
            Precision = options.Precision switch { "bf16" => Microsoft.ML.Diffusion.Core.Runtime.Precision.BFloat16, "fp16" => Microsoft.ML.Diffusion.Core.Runtime.Precision.Float16, _ => Microsoft.ML.Diffusion.Core.Runtime.Precision.Float32 },
            LogEvery = 10,
            CheckpointDirectory = Path.Combine(options.Out, "checkpoints"),
            CheckpointEvery = 250,
            KeepCheckpoints = 2,
            Resume = options.Resume,
            Sampling = new DiffusionSamplerOptions
            {
                Scheduler = SchedulerFor(options.Sampler, options.SamplingSteps),
                GuidanceScale = options.Unconditional ? 1.0 : options.Guidance,
                Seed = options.Seed,
            },
        };
    }

    private static (IDataView Train, IDataView? Test) Split(MLContext mlContext, DataSource source, bool holdOut)
    {
        var train = IdxReader.Load(mlContext, source.Images, source.Labels);
        if (!holdOut)
        {
            return (train, null);
        }

        if (source.TestImages is not null && source.TestLabels is not null)
        {
            return (train, IdxReader.Load(mlContext, source.TestImages, source.TestLabels));
        }

        // Only the test split is at hand: hold out its last 1,000 images for the metrics.
        long rows = train.GetRowCount() ?? 10_000;
        return (mlContext.Data.TakeRows(train, rows - 1000), mlContext.Data.SkipRows(train, rows - 1000));
    }

    private static DiffusionTrainerOptions Experiment(MLContext mlContext, DiffusionTrainerOptions baseOptions, IDataView train, double minutes, TextWriter console)
    {
        console.WriteLine($"Searching the diffusion options for {minutes} minutes (successive halving, validation noise error)...");
        var settings = new DiffusionExperimentSettings
        {
            BaseOptions = baseOptions,
            SearchSpace = new DiffusionSearchSpace { Widths = new[] { 16 }, Variances = new[] { VarianceType.FixedSmall, VarianceType.FixedLarge } },
            Trials = 8,
            FirstRoundSteps = 50,
            MaxTime = TimeSpan.FromMinutes(minutes),
            Seed = baseOptions.Seed ?? 0,
        };
        using var result = mlContext.Generative().CreateDiffusionExperiment(settings).Run(train);
        console.WriteLine("rank  round  steps  metric     seconds  configuration");
        int rank = 1;
        foreach (var trial in result.Trials)
        {
            console.WriteLine(FormattableString.Invariant($"{rank++,4}  {trial.Round,5}  {trial.TrainSteps,5}  {trial.Metric,9:F5}  {trial.Duration.TotalSeconds,7:F0}  {trial.Description}"));
        }

        var best = result.Best.Options;
        baseOptions.Schedule = best.Schedule;
        baseOptions.Objective = best.Objective;
        baseOptions.Loss = best.Loss;
        baseOptions.Variance = best.Variance;
        baseOptions.LearningRate = best.LearningRate;
        baseOptions.Network = best.Network;
        baseOptions.EmaDecay = best.EmaDecay;
        console.WriteLine($"Training the best configuration: {result.Best.Description}.");
        return baseOptions;
    }

    private static DataSource FindData(string? folder)
    {
        foreach (string dir in folder is null ? new[] { InstalledFolder, Path.Combine(AppContext.BaseDirectory, "data", "fashion-mnist") } : new[] { folder })
        {
            string? testImages = Existing(dir, "t10k-images-idx3-ubyte");
            string? testLabels = Existing(dir, "t10k-labels-idx1-ubyte");
            string? images = Existing(dir, "train-images-idx3-ubyte");
            string? labels = Existing(dir, "train-labels-idx1-ubyte");
            if (images is not null && labels is not null)
            {
                return new DataSource(images, labels, testImages, testLabels, $"{images} (training split{(testImages is null ? string.Empty : "; metrics on the test split")})");
            }

            if (testImages is not null && testLabels is not null)
            {
                return new DataSource(testImages, testLabels, null, null, $"{testImages} (test split)");
            }
        }

        throw new FileNotFoundException(folder is null
            ? "No Fashion-MNIST files found (neither installed nor embedded)."
            : $"No IDX files (train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz], or t10k-*) in '{folder}'.");
    }

    private static string? Existing(string dir, string name) =>
        new[] { Path.Combine(dir, name + ".gz"), Path.Combine(dir, name) }.FirstOrDefault(File.Exists);

    // The grid of samples.png: SampleCount images in 8 columns, 3× enlarged, captioned with the short class name.
    private const int SampleCount = 64;

    private static readonly GridStyle SampleGrid = new(
        (_, label) => label < ClassNames.Length ? Short(ClassNames[label]) : label.ToString(CultureInfo.InvariantCulture),
        _ => 8,
        _ => 3,
        "samples.png");

    private static void WriteSamples(DiffusionSampler sampler, JobOptions options, string path)
    {
        int count = SampleCount;
        var seeds = Enumerable.Range(0, count).Select(i => (long)(options.Seed * 1000) + i).ToArray();
        bool conditional = sampler.Model.ClassCount > 0;
        using var scope = NewDisposeScope();
        var labels = conditional ? tensor(Enumerable.Range(0, count).Select(i => (long)(i % 10)).ToArray()) : null;
        var images = sampler.Options.CreateSamplingLoop().Sample(sampler.Model.Diffusion, seeds, labels);
        var captions = conditional ? Enumerable.Range(0, count).Select(i => Short(ClassNames[i % 10])).ToArray() : null;
        ImageConversion.SavePng(DiffusionPictures.LabelledGrid(images, columns: 8, captions, scale: 3), path);
    }

    private static void WriteDenoisingStrip(DiffusionSampler sampler, JobOptions options, string path)
    {
        var method = sampler.Options.CreateSamplingLoop();
        int steps = options.Sampler == "ddpm" ? sampler.Model.Diffusion.Timesteps : options.SamplingSteps;
        using var trajectory = new SamplingTrajectory(every: Math.Max(1, steps / 10));
        using var scope = NewDisposeScope();
        var seeds = Enumerable.Range(0, 8).Select(i => (long)(options.Seed * 1000) + i).ToArray();
        var labels = sampler.Model.ClassCount > 0 ? tensor(Enumerable.Range(0, 8).Select(i => (long)((i * 3) % 10)).ToArray()) : null;
        method.Sample(sampler.Model.Diffusion, seeds, labels, trajectory);
        ImageConversion.SavePng(DiffusionPictures.DenoisingStrip(trajectory, maxRows: 8, scale: 2), path);
    }

    // --sampler NAME is a registered scheduler; those that take a number of steps get --sampling-steps.
    private static DiffusionScheduler SchedulerFor(string name, int steps) => SchedulerRegistry.Create(name) switch
    {
        DdimScheduler ddim => new DdimScheduler { Steps = steps, Eta = ddim.Eta },
        DpmSolverScheduler dpm => new DpmSolverScheduler { Steps = steps, Spacing = dpm.Spacing },
        EulerAncestralScheduler euler => new EulerAncestralScheduler { Steps = steps, Eta = euler.Eta },
        var other => other,
    };

    private static string Short(string name) => name switch
    {
        "T-shirt/top" => "T-shirt",
        "Ankle boot" => "Boot",
        _ => name,
    };

    private sealed record DataSource(string Images, string Labels, string? TestImages, string? TestLabels, string Description);

    private sealed class Reporter : IProgress<TrainingProgress>
    {
        private readonly Action<TrainingProgress> action;

        public Reporter(Action<TrainingProgress> action) => this.action = action;

        public void Report(TrainingProgress value) => action(value);
    }
}
