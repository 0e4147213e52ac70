// Imports a pretrained model of another library as an ML.NET model file (DiffusionSampler.Save), and optionally draws a
// grid of images from it. One subcommand per format; a format is one entry of Formats and one method.
//
//   dotnet run -c Release --project samples/ImportModel -- diffusers FOLDER --output model.zip [--grid out.png] [--seed N] [--count N] [--size N] [--ddim-steps S]
//   dotnet run -c Release --project samples/ImportModel -- improved-diffusion FILE.pt --flags "--image_size 32 ..." [--guided] --output model.zip [--grid ...]
//
// FOLDER is a diffusers DDPM/DDIM pipeline folder as the Hub serves it (for example after
// `huggingface-cli download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32`); FILE.pt an openai improved-diffusion or
// guided-diffusion checkpoint with the flags its README gives for it. Nothing is downloaded here.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using DiffusionSamples;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Import;
using Microsoft.ML.Diffusion.Tools.Pictures;
using static TorchSharp.torch;

namespace ImportModel;

/// <summary>The entry point: see <see cref="ImportModelCommand"/>.</summary>
public static class Program
{
    /// <summary>Runs the importer.</summary>
    /// <param name="args">FORMAT SOURCE --output MODEL.zip [options]; --help lists them.</param>
    /// <returns>0 on success, 1 when the import failed, 2 for a bad command line.</returns>
    public static int Main(string[] args) => ImportModelCommand.Run(args, Console.Out);
}

/// <summary>The importer's command line: one subcommand per format (<c>diffusers</c>, <c>improved-diffusion</c>).</summary>
public static class ImportModelCommand
{
    // A format: its help line and its command. Adding one (e.g. "improved-diffusion FILE ...") is one entry and one method.
    private static readonly Dictionary<string, (string Help, Func<string[], TextWriter, int> Run)> Formats = new(StringComparer.Ordinal)
    {
        ["diffusers"] = ("a Hugging Face diffusers DDPM or DDIM pipeline folder (model_index.json, unet/, scheduler/)", ImportDiffusers),
        ["improved-diffusion"] = ("an openai improved-diffusion or guided-diffusion .pt checkpoint and its model/diffusion flags", ImportImprovedDiffusion),
    };

    /// <summary>Runs one import.</summary>
    /// <param name="args">FORMAT SOURCE --output MODEL.zip [options].</param>
    /// <param name="console">Where messages go.</param>
    /// <returns>0 on success, 1 when the import failed, 2 for a bad command line.</returns>
    public static int Run(string[] args, TextWriter console)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(console);
        if (args.Length > 0 && Formats.TryGetValue(args[0], out var format))
        {
            return format.Run(args[1..], console);
        }

        bool help = args.Length == 0 || args[0] is "--help" or "-h";
        if (!help)
        {
            console.WriteLine($"Unknown format '{args[0]}'.");
        }

        console.WriteLine("usage: dotnet run -c Release --project samples/ImportModel -- FORMAT SOURCE --output MODEL.zip [options]");
        console.WriteLine("formats:");
        foreach (var (name, (text, _)) in Formats)
        {
            console.WriteLine($"  {name,-20} {text}");
        }

        console.WriteLine("Run with FORMAT --help to see its options.");
        return args.Length > 0 && help ? 0 : CommandLine.BadCommandLine;
    }

    private static int ImportDiffusers(string[] args, TextWriter console)
    {
        string folder = string.Empty, output = string.Empty;
        string? grid = null;
        int seed = 0, count = 16;
        int? size = null, ddimSteps = null;
        int? code = new CommandLine(
                "dotnet run -c Release --project samples/ImportModel -- diffusers",
                "Imports a diffusers DDPM/DDIM pipeline folder (unet/config.json, unet/diffusion_pytorch_model.safetensors or .bin,\n"
                + "scheduler/scheduler_config.json) as an ML.NET model file, and optionally draws a grid of images from it.")
            .Argument("FOLDER", "the pipeline folder", v => folder = v)
            .Text("--output", "MODEL.zip", "the ML.NET model file to write (required)", v => output = v)
            .Text("--grid", "PNG", "also generate a grid of images and save it as this PNG", v => grid = v)
            .Integer("--seed", "N", "the seed of the grid's first image (default 0)", v => seed = v, min: 0)
            .Integer("--count", "N", "images in the grid (default 16)", v => count = v, max: 1024)
            .Integer("--size", "N", "the image side, when unet/config.json has no sample_size", v => size = v, max: 8192)
            .Integer("--ddim-steps", "S", "sample the grid and the saved model with DDIM in S steps instead of the pipeline's scheduler (DDPM takes all T steps)", v => ddimSteps = v, max: 100_000)
            .Parse(args, console);
        if (code is int exit)
        {
            return exit;
        }

        if (output.Length == 0)
        {
            console.WriteLine("--output is required: the model file to write.");
            return CommandLine.BadCommandLine;
        }

        var optionNames = new Dictionary<string, string>(StringComparer.Ordinal) { ["ImageSize"] = "--size", ["Steps"] = "--ddim-steps" };
        return SaveAndDraw(console, optionNames, seed, output, grid, count, ddimSteps,
            mlContext => DiffusersPipeline.Import(mlContext, folder, new DiffusersImportOptions { ImageSize = size }));
    }

    private static int ImportImprovedDiffusion(string[] args, TextWriter console)
    {
        string file = string.Empty, output = string.Empty, flags = string.Empty;
        string? grid = null;
        bool guided = false;
        int seed = 0, count = 16;
        int? ddimSteps = null;
        int? code = new CommandLine(
                "dotnet run -c Release --project samples/ImportModel -- improved-diffusion",
                "Imports an openai improved-diffusion (or, with --guided, guided-diffusion) checkpoint as an ML.NET model file, with\n"
                + "the model and diffusion flags its README gives for it, and optionally draws a grid of images from it.")
            .Argument("FILE", "the .pt checkpoint (a torch.save'd state dict)", v => file = v)
            .Text("--flags", "\"--image_size 32 ...\"", "their flags, as one quoted string (required)", v => flags = v)
            .Flag("--guided", "the file and flags are guided-diffusion's (its defaults and extra flags)", () => guided = true)
            .Text("--output", "MODEL.zip", "the ML.NET model file to write (required)", v => output = v)
            .Text("--grid", "PNG", "also generate a grid of images and save it as this PNG", v => grid = v)
            .Integer("--seed", "N", "the seed of the grid's first image (default 0)", v => seed = v, min: 0)
            .Integer("--count", "N", "images in the grid (default 16)", v => count = v, max: 1024)
            .Integer("--ddim-steps", "S", "sample the grid and the saved model with DDIM in S steps instead of the flags' sampler", v => ddimSteps = v, max: 100_000)
            .Parse(args, console);
        if (code is int exit)
        {
            return exit;
        }

        if (output.Length == 0 || flags.Length == 0)
        {
            console.WriteLine(output.Length == 0 ? "--output is required: the model file to write." : "--flags is required: the checkpoint's model and diffusion flags.");
            return CommandLine.BadCommandLine;
        }

        var optionNames = new Dictionary<string, string>(StringComparer.Ordinal) { ["Steps"] = "--ddim-steps" };
        var codebase = guided ? ImprovedDiffusionCodebase.GuidedDiffusion : ImprovedDiffusionCodebase.ImprovedDiffusion;
        return SaveAndDraw(console, optionNames, seed, output, grid, count, ddimSteps,
            mlContext => ImprovedDiffusionCheckpoint.Import(mlContext, file, flags, codebase));
    }

    // Imports with the format's call, then what every format does: the sampler choice, the model file and the grid.
    private static int SaveAndDraw(
        TextWriter console, Dictionary<string, string> optionNames, int seed, string output, string? grid, int count, int? ddimSteps, Func<MLContext, DiffusionSampler> import)
    {
        return UserErrors.Run(console, optionNames, () =>
        {
            var mlContext = new MLContext(seed: seed);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var sampler = import(mlContext);
            var model = sampler.Model;
            if (ddimSteps is int steps)
            {
                sampler.Options.Scheduler = new DdimScheduler { Steps = steps };
            }

            console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"imported {model.Network.Kind}: {model.Diffusion.Model.ParameterCount:N0} parameters, {model.Channels}×{model.ImageHeight}×{model.ImageWidth}, T = {model.Diffusion.Timesteps}, objective {model.Diffusion.Options.Objective}, variance {model.Diffusion.Options.Variance}, {(model.ClassCount > 0 ? $"{model.ClassCount} classes, " : string.Empty)}sampler {sampler.Options.Scheduler.Name} ({clock.Elapsed.TotalSeconds:F1} s)"));
            sampler.Save(mlContext, output);
            console.WriteLine($"wrote {output} ({new FileInfo(output).Length / 1e6:F1} MB)");
            if (grid is not null)
            {
                clock.Restart();
                WriteGrid(sampler, grid, seed, count);
                console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"generated {count} images in {clock.Elapsed.TotalSeconds:F1} s: {grid}"));
            }

            return 0;
        });
    }

    private static void WriteGrid(DiffusionSampler sampler, string path, int seed, int count)
    {
        int classCount = sampler.Model.ClassCount;
        var seeds = Enumerable.Range(0, count).Select(i => (long)seed + i).ToArray();
        using var scope = NewDisposeScope();
        var labels = classCount > 0 ? tensor(Enumerable.Range(0, count).Select(i => (long)(i % classCount)).ToArray()) : null;
        var images = sampler.Options.CreateSamplingLoop().Sample(sampler.Model.Diffusion, seeds, labels);
        var captions = classCount > 0 ? Enumerable.Range(0, count).Select(i => (i % classCount).ToString(CultureInfo.InvariantCulture)).ToArray() : null;
        int columns = (int)Math.Ceiling(Math.Sqrt(count));
        ImageConversion.SavePng(DiffusionPictures.LabelledGrid(images, columns, captions, scale: Math.Max(1, 64 / sampler.Model.ImageHeight)), path);
    }
}
