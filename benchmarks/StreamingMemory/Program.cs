// Reads N generated rows through DiffusionSampler.Transform with one cursor and reports the process's memory as it goes
// and the time to the first image: whether Transform streams (memory bounded by one batch) or materialises every row.
// Only the public API is used, so the same program measures any version of the library. Usage:
//   dotnet run -c Release --project benchmarks/StreamingMemory -- [--rows 100000] [--size 32] [--channels 3] [--steps 1] [--threads 1] [--engine-rows 256]
// Then it times M rows through Transform against M predictions of a PredictionEngine (one image per network call).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;

try
{
    int rows = 100_000, size = 32, channels = 3, steps = 1, threads = 1, engineRows = 256;
    var given = new HashSet<string>();
    for (int i = 0; i < args.Length; i++)
    {
        // Each option once (as in every program here), each value a positive integer named in the message.
        string name = args[i];
        int Next() => i + 1 < args.Length && int.TryParse(args[++i], NumberStyles.None, CultureInfo.InvariantCulture, out int value)
            ? value
            : throw new ArgumentException($"{name} expects a non-negative integer of at most {int.MaxValue}; got '{(i < args.Length && i > 0 && args[i] != name ? args[i] : string.Empty)}'.");
        if (!given.Add(name))
        {
            throw new ArgumentException($"{name} is given more than once: give it once.");
        }

        switch (args[i])
        {
            case "--rows": rows = Next(); break;
            case "--size": size = Next(); break;
            case "--channels": channels = Next(); break;
            case "--steps": steps = Next(); break;
            case "--threads": threads = Next(); break;
            case "--engine-rows": engineRows = Next(); break;
            default: throw new ArgumentException($"Unknown argument {args[i]}. Usage: [--rows N] [--size S] [--channels 1|3] [--steps K] [--threads T] [--engine-rows M]");
        }
    }

    if (size > Microsoft.ML.Diffusion.Core.Diffusion.GaussianDiffusionOptions.MaxImageSide || channels is not (1 or 3))
    {
        throw new ArgumentException($"--size expects at most {Microsoft.ML.Diffusion.Core.Diffusion.GaussianDiffusionOptions.MaxImageSide} and --channels 1 or 3; got --size {size}, --channels {channels}.");
    }

    // One thread by default: the network is tiny, and the measurement should not depend on what else the machine runs.
    TorchSharp.torch.set_num_threads(threads);
    var mlContext = new MLContext(seed: 1);
    int length = channels * size * size;
    var definition = SchemaDefinition.Create(typeof(PixelRow));
    definition[nameof(PixelRow.Pixels)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, length);
    var random = new Random(1);
    var training = Enumerable.Range(0, 8).Select(_ => new PixelRow { Pixels = Enumerable.Range(0, length).Select(_ => (float)random.Next(256)).ToArray() }).ToArray();

    // A tiny model trained for one step: what is measured is the data view, not the network.
    using var sampler = mlContext.Generative().Diffusion(new DiffusionTrainerOptions
    {
        ImageColumnName = nameof(PixelRow.Pixels),
        ImageSize = size,
        Channels = channels,
        Timesteps = 100,
        Network = new UNetOptions { Dim = 8, DimMults = new[] { 1, 2 }, AttentionHeads = 2, AttentionDimHead = 8 },
        BatchSize = 8,
        TrainSteps = 1,
        Seed = 1,
        Sampling = new DiffusionSamplerOptions { Scheduler = new Microsoft.ML.Diffusion.Core.Sampling.DdimScheduler { Steps = steps } },
    }).Fit(mlContext.Data.LoadFromEnumerable(training, definition));

    // The input is enumerated lazily (nothing of it is held), so the only thing that can grow is the generated data.
    var input = mlContext.Data.LoadFromEnumerable(Seeds(rows));
    GC.Collect();
    double before = Memory.RssMib();
    Console.WriteLine($"model: {size}x{size}x{channels}, DDIM {steps} step(s), {threads} thread(s); rows: {rows:N0}; RSS before reading: {before:F0} MiB");

    var output = sampler.Transform(input);
    var clock = Stopwatch.StartNew();
    using var cursor = output.GetRowCursor(new[] { output.Schema["Seed"], output.Schema["GeneratedPixels"], output.Schema["GeneratedImage"] });
    var pixels = cursor.GetGetter<VBuffer<float>>(output.Schema["GeneratedPixels"]);
    var image = cursor.GetGetter<MLImage>(output.Schema["GeneratedImage"]);
    VBuffer<float> values = default;
    double firstImage = 0, checksum = 0, maxRss = 0;
    long count = 0;
    int every = Math.Max(1, rows / 10);
    while (cursor.MoveNext())
    {
        pixels(ref values);
        MLImage picture = null!;
        image(ref picture);
        picture.Dispose();
        checksum += values.GetValues()[0];
        if (++count == 1)
        {
            firstImage = clock.Elapsed.TotalSeconds;
            Console.WriteLine($"first image after {firstImage:F2} s");
        }

        if (count % 1000 == 0)
        {
            maxRss = Math.Max(maxRss, Memory.RssMib());
        }

        if (count % every == 0)
        {
            Console.WriteLine($"{count,9:N0} rows  {clock.Elapsed.TotalSeconds,7:F1} s  RSS {Memory.RssMib(),6:F0} MiB  managed {GC.GetTotalMemory(false) / 1048576.0,6:F1} MiB");
        }
    }

    double total = clock.Elapsed.TotalSeconds;
    Console.WriteLine($"read {count:N0} rows in {total:F1} s ({count / total:F0} rows/s); first image after {firstImage:F2} s");
    Console.WriteLine($"RSS: {before:F0} MiB before reading, at most {maxRss:F0} MiB while reading (sampled every 1,000 rows), peak of the process {Memory.PeakMib():F0} MiB");
    Console.WriteLine($"generated data if every row were kept: {count * length / 1048576.0:F0} MiB of pixels; checksum {checksum:F0}");

    if (engineRows > 0)
    {
        var seeds = mlContext.Data.LoadFromEnumerable(Seeds(engineRows));
        clock.Restart();
        long read = sampler.Transform(seeds).GetColumn<VBuffer<float>>("GeneratedPixels").LongCount();
        double transformSeconds = clock.Elapsed.TotalSeconds;
        var engine = mlContext.Model.CreatePredictionEngine<SeedRow, PixelsRow>(sampler, new PredictionEngineOptions { OwnsTransformer = false });
        clock.Restart();
        foreach (var row in Seeds(engineRows))
        {
            checksum += engine.Predict(row).GeneratedPixels[0];
        }

        double engineSeconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"{read:N0} rows through Transform: {transformSeconds:F1} s; {engineRows:N0} predictions of a PredictionEngine: {engineSeconds:F1} s ({engineSeconds / transformSeconds:F1}x)");
    }
}
catch (Exception ex) when (DiffusionSamples.UserErrors.Describe(ex, new Dictionary<string, string>()) is string line)
{
    // What a user can cause (a bad value, too little memory): one line, no stack trace.
    Console.Error.WriteLine($"Error: {line}");
    Environment.ExitCode = 1;
}

static IEnumerable<SeedRow> Seeds(int count)
{
    for (int i = 0; i < count; i++)
    {
        yield return new SeedRow { Seed = i };
    }
}

internal sealed class PixelRow
{
    public float[] Pixels { get; set; } = Array.Empty<float>();
}

internal sealed class PixelsRow
{
    public float[] GeneratedPixels { get; set; } = Array.Empty<float>();
}

internal sealed class SeedRow
{
    public int Seed { get; set; }
}

internal static class Memory
{
    public static double RssMib() => Status("VmRSS:");

    public static double PeakMib() => Status("VmHWM:");

    private static double Status(string key)
    {
        if (!OperatingSystem.IsLinux())
        {
            return Process.GetCurrentProcess().WorkingSet64 / 1048576.0;
        }

        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(key, StringComparison.Ordinal));
        return double.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;
    }
}
