// Exports a trained model file (an ML.NET model.zip written by the samples or DiffusionSampler.Save) to ONNX, and
// generates from an exported sampler with ONNX Runtime alone (the deploy-only package Microsoft.ML.Diffusion.Onnx).
//
//   dotnet run -c Release --project samples/OnnxExport -- export out/model.zip out/model.onnx [--sampler ddim|dpm-solver++] [--steps N] [--loop] [--no-clip] [--network]
//   dotnet run -c Release --project samples/OnnxExport -- generate out/model.onnx out/onnx-grid.png [--count 16] [--seed 7] [--label L] [--guidance W]
using System;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Export;
using Microsoft.ML.Diffusion.Onnx;

const string Usage = """
    usage:
      export MODEL.zip OUT.onnx [--sampler ddim|dpm-solver++] [--steps N] [--loop] [--no-clip] [--network]
          the whole sampler as one graph (default: the model file's own sampler if it is DDIM with η = 0 or DPM-Solver++,
          else DDIM with 50 steps, or T if fewer; DPM-Solver++ defaults to 20 steps), or with --network the network alone
      generate FILE.onnx OUT.png [--count N] [--seed S] [--label L] [--guidance W]
          N images (default 16) from seeds derived from S (default 0), as DiffusionSampler.Generate derives them, with
          ONNX Runtime only; --label for a class-conditional model (default: no label), --guidance its scale (default 1)
    """;

if (args.Length < 3 || args[0] is not ("export" or "generate") || args.Contains("--help"))
{
    Console.Error.WriteLine(Usage);
    return args.Contains("--help") ? 0 : 2;
}

try
{
    return args[0] == "export" ? Export(args[1], args[2], args[3..]) : Generate(args[1], args[2], args[3..]);
}
catch (OptionException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
catch (Exception e) when (e is NotSupportedException or InvalidDataException or FileNotFoundException or ArgumentException)
{
    Console.Error.WriteLine(e.Message);
    return 1;
}

static int Export(string model, string output, string[] options)
{
    var mlContext = new MLContext();
    using var sampler = DiffusionSampler.Load(mlContext, model);
    var export = new OnnxExportOptions();
    string? name = null;
    int? steps = null;
    for (int i = 0; i < options.Length; i++)
    {
        switch (options[i])
        {
            case "--sampler": name = Value(options, ref i); break;
            case "--steps": steps = Positive(options, ref i); break;
            case "--loop": export.Loop = OnnxSamplerLoop.Loop; break;
            case "--no-clip": export.ClipDenoised = false; break;
            case "--network": export.Content = OnnxGraphContent.Network; break;
            default: throw new OptionException($"unknown option '{options[i]}'");
        }
    }

    var own = sampler.Options.Scheduler;
    int timesteps = sampler.Model.Diffusion.Timesteps;
    export.Scheduler = name switch
    {
        null when steps is null && own is DdimScheduler { Eta: 0 } or DpmSolverScheduler => own,
        null or DdimScheduler.RegisteredName => new DdimScheduler { Steps = steps ?? Math.Min(50, timesteps) },
        DpmSolverScheduler.RegisteredName => new DpmSolverScheduler { Steps = steps ?? Math.Min(20, timesteps) },
        _ => throw new OptionException($"--sampler expects ddim or dpm-solver++; got '{name}'"),
    };

    if (name is null && export.Content == OnnxGraphContent.Sampler && !ReferenceEquals(export.Scheduler, own))
    {
        Console.WriteLine($"note: the model file's sampler ({own.Name}) is not a deterministic one the graph can hold; exporting {export.Scheduler.Name} with {((DdimScheduler)export.Scheduler).Steps} steps");
    }

    var clock = System.Diagnostics.Stopwatch.StartNew();
    sampler.ExportOnnx(output, export);
    Console.WriteLine(export.Content == OnnxGraphContent.Network
        ? $"wrote the network alone to {output} ({new FileInfo(output).Length / 1e6:F1} MB) in {clock.Elapsed.TotalSeconds:F1} s"
        : $"wrote the {export.Scheduler.Name} sampler ({export.Loop.ToString().ToLowerInvariant()}) to {output} ({new FileInfo(output).Length / 1e6:F1} MB) in {clock.Elapsed.TotalSeconds:F1} s");
    return 0;
}

static int Generate(string file, string output, string[] options)
{
    int count = 16, label = -1;
    long seed = 0;
    float guidance = 1;
    for (int i = 0; i < options.Length; i++)
    {
        switch (options[i])
        {
            case "--count": count = Positive(options, ref i); break;
            case "--seed": seed = long.TryParse(Value(options, ref i), NumberStyles.Integer, CultureInfo.InvariantCulture, out long s) ? s : throw new OptionException($"--seed expects an integer; got '{options[i]}'"); break;
            case "--label": label = int.TryParse(Value(options, ref i), NumberStyles.Integer, CultureInfo.InvariantCulture, out int l) && l >= 0 ? l : throw new OptionException($"--label expects a class index; got '{options[i]}'"); break;
            case "--guidance": guidance = float.TryParse(Value(options, ref i), NumberStyles.Float, CultureInfo.InvariantCulture, out float w) ? w : throw new OptionException($"--guidance expects a number; got '{options[i]}'"); break;
            default: throw new OptionException($"unknown option '{options[i]}'");
        }
    }

    var clock = System.Diagnostics.Stopwatch.StartNew();
    using var generator = new OnnxDiffusionGenerator(file);
    var seeds = Enumerable.Range(0, count).Select(i => TorchNoise.DeriveSeed(seed, i)).ToArray();
    var labels = generator.ClassCount > 0 ? Enumerable.Repeat(label, count).ToArray() : null;
    var pixels = generator.GeneratePixels(seeds, labels, guidance);
    SaveGrid(pixels, generator.Channels, generator.ImageHeight, generator.ImageWidth, output);
    Console.WriteLine($"generated {count} images with ONNX Runtime in {clock.Elapsed.TotalSeconds:F1} s: {output}");
    return 0;
}

static void SaveGrid(byte[][] images, int channels, int height, int width, string path)
{
    const int padding = 2;
    int columns = (int)Math.Ceiling(Math.Sqrt(images.Length)), rows = (images.Length + columns - 1) / columns;
    int gridWidth = (columns * (width + padding)) + padding, gridHeight = (rows * (height + padding)) + padding;
    var bgra = new byte[gridWidth * gridHeight * 4];
    for (int p = 3; p < bgra.Length; p += 4)
    {
        bgra[p] = 255;
    }

    for (int i = 0; i < images.Length; i++)
    {
        int top = padding + ((i / columns) * (height + padding)), left = padding + ((i % columns) * (width + padding));
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                int o = (((top + y) * gridWidth) + left + x) * 4;
                for (int c = 0; c < 3; c++)
                {
                    // Planar RGB (or gray) to BGRA.
                    bgra[o + 2 - c] = images[i][((channels == 3 ? c : 0) * height * width) + (y * width) + x];
                }
            }
        }
    }

    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    using var image = MLImage.CreateFromPixels(gridWidth, gridHeight, MLPixelFormat.Bgra32, bgra);
    image.Save(path);
}

static string Value(string[] options, ref int i) =>
    i + 1 < options.Length ? options[++i] : throw new OptionException($"{options[i]} expects a value");

static int Positive(string[] options, ref int i)
{
    string name = options[i];
    string value = Value(options, ref i);
    return int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : throw new OptionException($"{name} expects a positive integer; got '{value}'");
}

/// <summary>A bad command line (exit code 2).</summary>
internal sealed class OptionException(string message) : Exception(message);
