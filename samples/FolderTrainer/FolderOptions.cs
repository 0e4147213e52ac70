using System.Collections.Generic;
using System.IO;
using DiffusionSamples;
using Microsoft.ML.Diffusion.Core.Diffusion;

namespace FolderTrainer;

/// <summary>The command line of the folder trainer.</summary>
public sealed class FolderOptions
{
    /// <summary>Gets or sets the folder of images (searched recursively).</summary>
    public string Folder { get; set; } = string.Empty;

    /// <summary>Gets or sets the output folder: sample grids, milestone models, the log and curve, checkpoints.</summary>
    public string Out { get; set; } = "results";

    /// <summary>Gets or sets the side images are resized (and centre-cropped) to.</summary>
    public int Size { get; set; } = 32;

    /// <summary>Gets or sets "auto" (gray when every sampled image is gray), "1" or "3".</summary>
    public string Channels { get; set; } = "auto";

    /// <summary>Gets or sets a value indicating whether each image's first-level sub-folder is its class (a class-conditional model).</summary>
    public bool Labels { get; set; }

    /// <summary>Gets or sets the number of optimizer steps.</summary>
    public int Steps { get; set; } = 10_000;

    /// <summary>Gets or sets an optional wall-clock budget in minutes.</summary>
    public double? Minutes { get; set; }

    /// <summary>Gets or sets the images per step.</summary>
    public int Batch { get; set; } = 32;

    /// <summary>Gets or sets the peak learning rate.</summary>
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>
    /// Gets or sets the linear warm-up length in steps; null: 200, or a tenth of the steps a --minutes budget allows when
    /// that is fewer (measured on the first steps).
    /// </summary>
    public int? Warmup { get; set; }

    /// <summary>Gets or sets the U-Net's base width.</summary>
    public int Dim { get; set; } = 32;

    /// <summary>Gets or sets the U-Net's width multipliers, one per level.</summary>
    public IReadOnlyList<int> Mults { get; set; } = new[] { 1, 2, 4 };

    /// <summary>Gets or sets the diffusion steps T.</summary>
    public int Timesteps { get; set; } = 1000;

    /// <summary>Gets or sets the steps between milestones (a sample grid and a model file each).</summary>
    public int SampleEvery { get; set; } = 1000;

    /// <summary>Gets or sets the images in each sample grid.</summary>
    public int Samples { get; set; } = 25;

    /// <summary>Gets or sets the DDIM steps of the sample grids and of the saved models.</summary>
    public int SamplingSteps { get; set; } = 50;

    /// <summary>Gets or sets the classifier-free guidance scale (class-conditional models only).</summary>
    public double Guidance { get; set; } = 2.0;

    /// <summary>Gets or sets a value indicating whether training images are flipped left–right at random.</summary>
    public bool Flip { get; set; }

    /// <summary>Gets or sets a value indicating whether to continue the run in OUT/checkpoints.</summary>
    public bool Resume { get; set; }

    /// <summary>Gets or sets the device: cpu, cuda or cuda:N.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Gets or sets the training precision: "fp32", "bf16" or "fp16" (docs/mixed-precision.md).</summary>
    public string Precision { get; set; } = "fp32";

    /// <summary>Gets or sets pytorch-fid's Inception weight file: Inception FID of the final model at the end (null: none).</summary>
    public string? Inception { get; set; }

    /// <summary>Gets or sets the generated and real images Inception FID compares (null: 200 on the CPU, 1,000 on a GPU; at most the folder's).</summary>
    public int? FidImages { get; set; }

    /// <summary>Gets or sets the seed.</summary>
    public int Seed { get; set; } = 1;

    /// <summary>Gets the usage text (what --help prints).</summary>
    public static string Usage => Define(new FolderOptions()).Usage;

    /// <summary>
    /// Parses the command line. Returns false when training should not run: after --help (exit code 0, usage printed) or
    /// a bad argument (exit code 2; the message names the option and what it expects).
    /// </summary>
    /// <param name="args">The arguments.</param>
    /// <param name="console">Where usage and errors are printed.</param>
    /// <param name="options">The parsed options.</param>
    /// <param name="exitCode">The exit code when training should not run.</param>
    /// <returns>Whether to train.</returns>
    public static bool TryParse(string[] args, TextWriter console, out FolderOptions options, out int exitCode)
    {
        options = new FolderOptions();
        int? code = Define(options).Parse(args, console);
        exitCode = code ?? 0;
        return code is null;
    }

    private static CommandLine Define(FolderOptions o) =>
        new CommandLine(
            "dotnet run -c Release --project samples/FolderTrainer --",
            "Trains a diffusion model on a folder of images (PNG, JPEG, BMP; gray or RGB; any size, resized and centre-cropped),\n"
            + "writing a sample grid and an ML.NET model file every --sample-every steps, the training log and curve, and\n"
            + "checkpoints to OUT; --resume continues exactly where a stopped run left off.\n"
            + "--generate MODEL [--shard i/N] and --merge DIR generate a grid from a saved model, in shards (--generate M --help).")
            .Argument("IMAGES", "the folder of images to train on (searched recursively)", v => o.Folder = v)
            .Text("--out", "DIR", "the output folder (default results)", v => o.Out = v)
            .Integer("--size", "N", "the side images are resized and centre-cropped to (default 32)", v => o.Size = v, max: GaussianDiffusionOptions.MaxImageSide)
            .Choice("--channels", "gray (1), RGB (3), or auto: gray when every sampled image is gray (default auto)", new[] { "auto", "1", "3" }, v => o.Channels = v)
            .Flag("--labels", "class-conditional: each image's first-level sub-folder is its class", () => o.Labels = true)
            .Integer("--steps", "N", "optimizer steps (default 10000)", v => o.Steps = v, max: Limits.MaxSteps)
            .Number("--minutes", "M", "stop after this many minutes even if --steps are not done", v => o.Minutes = v, max: Limits.MaxMinutes)
            .Integer("--batch", "N", "images per step (default 32)", v => o.Batch = v, max: Limits.MaxBatch)
            .Number("--lr", "X", "peak learning rate of AdamW (default 0.001)", v => o.LearningRate = v, max: Limits.MaxLearningRate)
            .Integer("--warmup", "N", "linear warm-up steps (default 200, or a tenth of the steps a --minutes budget allows when fewer)", v => o.Warmup = v, min: 0, max: Limits.MaxSteps)
            .Integer("--dim", "N", "the U-Net's base width (default 32)", v => o.Dim = v, max: Limits.MaxWidth)
            .IntegerList("--mults", "A,B,..", "the U-Net's width multipliers per level (default 1,2,4)", v => o.Mults = v, max: Limits.MaxWidth, maxCount: Limits.MaxLevels)
            .Integer("--timesteps", "T", "diffusion steps (default 1000)", v => o.Timesteps = v, min: 2, max: GaussianDiffusionOptions.MaxTimesteps)
            .Integer("--sample-every", "N", "steps between milestones: a sample grid and a model file (default 1000)", v => o.SampleEvery = v, max: Limits.MaxSteps)
            .Integer("--samples", "N", "images in each sample grid (default 25)", v => o.Samples = v, max: Limits.MaxSamples)
            .Integer("--sampling-steps", "S", "DDIM steps for the grids and the saved models (default 50; at most --timesteps)", v => o.SamplingSteps = v, max: GaussianDiffusionOptions.MaxTimesteps)
            .Number("--guidance", "W", "classifier-free guidance scale with --labels (default 2)", v => o.Guidance = v, allowZero: true, max: Limits.MaxGuidance)
            .Flag("--flip", "flip training images left-right at random", () => o.Flip = true)
            .Flag("--resume", "continue the run in OUT/checkpoints", () => o.Resume = true)
            .Text("--device", "cpu|cuda", "the device: cpu, cuda or cuda:N (default cpu)", v => o.Device = v)
            .Integer("--seed", "N", "the seed (default 1)", v => o.Seed = v, min: 0)
            .Choice("--precision", "the network's precision in training; weights stay fp32 (default fp32; docs/mixed-precision.md)", new[] { "fp32", "bf16", "fp16" }, v => o.Precision = v)
            .Text("--inception", "FILE", "pytorch-fid's pt_inception-2015-12-05-6726825d.pth: Inception FID, KID and precision/recall of the final model at the end", v => o.Inception = v)
            .Integer("--fid-images", "N", "images Inception FID compares (default 200 on the CPU, 1000 on a GPU; at most the folder's)", v => o.FidImages = v, min: 4, max: FolderFid.MaxImages);
}
