using System.IO;
using DiffusionSamples;

namespace FashionMnist;

/// <summary>The command line of the Fashion-MNIST job.</summary>
public sealed class JobOptions
{
    /// <summary>Gets or sets a folder with IDX files (train-* or t10k-*); default: the full training split when installed, else the embedded test split.</summary>
    public string? Data { get; set; }

    /// <summary>Gets or sets a fixed number of optimizer steps (overrides the time budget).</summary>
    public int? Steps { get; set; }

    /// <summary>Gets or sets the training time budget in minutes.</summary>
    public double Minutes { get; set; } = 6.5;

    /// <summary>Gets or sets the output folder.</summary>
    public string Out { get; set; } = "out";

    /// <summary>Gets or sets the sampler: "ddim" or "ddpm".</summary>
    public string Sampler { get; set; } = "ddim";

    /// <summary>Gets or sets the denoiser: "unet" or "dit" (a small diffusion transformer).</summary>
    public string Network { get; set; } = "unet";

    /// <summary>Gets or sets the DDIM step count.</summary>
    public int SamplingSteps { get; set; } = 50;

    /// <summary>Gets or sets the classifier-free guidance scale.</summary>
    public double Guidance { get; set; } = 2.0;

    /// <summary>Gets or sets a value indicating whether to train without labels.</summary>
    public bool Unconditional { get; set; }

    /// <summary>Gets or sets a value indicating whether to continue from the newest checkpoint in OUT/checkpoints.</summary>
    public bool Resume { get; set; }

    /// <summary>Gets or sets the device.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Gets or sets the training precision: "fp32", "bf16" or "fp16" (docs/mixed-precision.md).</summary>
    public string Precision { get; set; } = "fp32";

    /// <summary>Gets or sets the minutes of an options search before the final training (null: no search).</summary>
    public double? Experiment { get; set; }

    /// <summary>Gets or sets a value indicating whether bits/dim and Fréchet distance are measured at the end.</summary>
    public bool Metrics { get; set; } = true;

    /// <summary>Gets or sets how many generated and real images the Fréchet distance compares (null: 200 on the CPU, 1,000 on a GPU).</summary>
    public int? MetricImages { get; set; }

    /// <summary>Gets or sets pytorch-fid's Inception weight file: the Fréchet distance becomes Inception FID (null: the job's own classifier).</summary>
    public string? Inception { get; set; }

    /// <summary>Gets or sets the seed.</summary>
    public int Seed { get; set; } = 1;

    /// <summary>The most images the Fréchet distance compares: Fashion-MNIST's test split (10,000), which it splits in two.</summary>
    public const int MaxMetricImages = 10_000;

    /// <summary>Gets the usage text (what --help prints).</summary>
    public static string Usage => Define(new JobOptions()).Usage;

    /// <summary>
    /// Parses the command line. Returns false when the job should not run: after --help (exit code 0, usage printed) or a
    /// bad argument (exit code 2; the message names the option and what it expects).
    /// </summary>
    /// <param name="args">The arguments.</param>
    /// <param name="console">Where usage and errors are printed.</param>
    /// <param name="options">The parsed options.</param>
    /// <param name="exitCode">The exit code when the job should not run.</param>
    /// <returns>Whether to run the job.</returns>
    public static bool TryParse(string[] args, TextWriter console, out JobOptions options, out int exitCode)
    {
        options = new JobOptions();
        int? code = Define(options).Parse(args, console);
        exitCode = code ?? 0;
        return code is null;
    }

    private static CommandLine Define(JobOptions o) =>
        new CommandLine(
            "dotnet run -c Release --project samples/FashionMnist --",
            "Trains a class-conditional diffusion model on Fashion-MNIST through the ML.NET API, then writes a labelled grid of\n"
            + "samples, a progressive-denoising strip, a model file, the training log and curve and held-out metrics to OUT.\n"
            + "--generate MODEL [--shard i/N] and --merge DIR generate the grid from a saved model, in shards (--generate M --help).")
            .Text("--data", "DIR", "a folder with train-*/t10k-* IDX files (default: the full split when installed, else the embedded test split)", v => o.Data = v)
            .Integer("--steps", "N", "a fixed number of optimizer steps instead of the time budget", v => o.Steps = v, max: Limits.MaxSteps)
            .Number("--minutes", "M", "the training time budget (default 6.5)", v => o.Minutes = v, max: Limits.MaxMinutes)
            .Text("--out", "DIR", "the output folder (default out)", v => o.Out = v)
            .Choice("--sampler", "the sampler of the pictures (default ddim)", new[] { "ddim", "ddpm" }, v => o.Sampler = v)
            .Choice("--network", "the denoiser (default unet)", new[] { "unet", "dit" }, v => o.Network = v)
            .Integer("--sampling-steps", "S", "DDIM steps (default 50; at most the job's 1000 diffusion steps)", v => o.SamplingSteps = v, max: FashionMnistJob.Timesteps)
            .Number("--guidance", "W", "classifier-free guidance scale (default 2)", v => o.Guidance = v, allowZero: true, max: Limits.MaxGuidance)
            .Flag("--unconditional", "train without labels", () => o.Unconditional = true)
            .Flag("--resume", "continue from the newest checkpoint in OUT/checkpoints", () => o.Resume = true)
            .Text("--device", "cpu|cuda", "the device: cpu, cuda or cuda:N (default cpu)", v => o.Device = v)
            .Integer("--seed", "N", "the seed (default 1)", v => o.Seed = v, min: 0)
            .Choice("--precision", "the network's precision in training; weights stay fp32 (default fp32; docs/mixed-precision.md)", new[] { "fp32", "bf16", "fp16" }, v => o.Precision = v)
            .Number("--experiment", "MINUTES", "first search the diffusion options for that long, then train the best", v => o.Experiment = v, max: Limits.MaxMinutes)
            .Flag("--no-metrics", "skip bits/dim and the Fréchet distance at the end", () => o.Metrics = false)
            .Integer("--metric-images", "N", "images the Fréchet distance compares (default 200 on the CPU, 1000 on a GPU)", v => o.MetricImages = v, min: 2, max: MaxMetricImages)
            .Text("--inception", "FILE", "pytorch-fid's pt_inception-2015-12-05-6726825d.pth: measure Inception FID, KID and precision/recall instead of the classifier's Fréchet distance", v => o.Inception = v);
}
