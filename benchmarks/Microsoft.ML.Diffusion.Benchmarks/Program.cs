// Training and sampling throughput of Microsoft.ML.Diffusion for the configurations of the performance issue, measured
// the way the PyTorch reference (denoising-diffusion-pytorch 2.1.1) is measured: the same U-Net, the same loss and
// optimizer, warm-up steps not counted, the median of the timed steps reported. Prints one JSON object with --json.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Text.Json;
using Microsoft.ML.Diffusion;
using TorchSharp;
using static TorchSharp.torch;

var options = BenchmarkOptions.Parse(args);
torch.set_num_threads(options.Threads);
manual_seed(0);
var (unetOptions, size) = options.Config switch
{
    "A" => (new UNetOptions { Dim = 32, DimMults = new[] { 1, 2, 4 }, Channels = 1 }, 32),
    "B" => (new UNetOptions { Dim = 64, DimMults = new[] { 1, 2, 4, 8 }, Channels = 3 }, 32),
    "S" => (new UNetOptions { Dim = 16, DimMults = new[] { 1, 2, 4 }, Channels = 1 }, 28),
    _ => throw new ArgumentException($"Unknown config '{options.Config}'; use A, B or S."),
};
var unet = new UNet(unetOptions);
using var diffusion = new GaussianDiffusion(unet, NoiseSchedule.Sigmoid(1000), size, size, PredictionTarget.Velocity, DiffusionLoss.MeanSquaredError);
var times = new List<double>();
var rssSamples = new List<(int Step, double Mib)>();
int warmup = options.Warmup;
string phase = options.Soak ? "soak" : options.Phase;
int batch = options.Batch ?? (phase == "train" || phase == "soak" ? (options.Config == "B" ? 16 : 32) : 16);
long imagesPerUnit;

if (phase is "train" or "soak")
{
    int steps = options.Soak ? 2000 : options.Steps ?? 20;
    using var optimizer = optim.Adam(diffusion.parameters(), lr: 1e-4, beta1: 0.9, beta2: 0.99);
    using var images = rand(batch, unetOptions.Channels, size, size) * 2 - 1;
    for (int step = 0; step < warmup + steps; step++)
    {
        var clock = Stopwatch.StartNew();
        using (var scope = NewDisposeScope())
        {
            optimizer.zero_grad();
            int chunk = options.MicroBatch is int m && m < batch ? m : batch;
            for (int start = 0; start < batch; start += chunk)
            {
                // The gradient of the batch mean, in chunks (--micro-batch): the same work in smaller tensors.
                var part = chunk == batch ? images : images[start..Math.Min(batch, start + chunk)];
                var loss = diffusion.Loss(part) * ((double)part.shape[0] / batch);
                loss.backward();
            }

            optimizer.step();
        }

        GC.Collect(0); // as DiffusionTrainingLoop does after every step (it keeps the native heap from fragmenting)
        if (step >= warmup)
        {
            times.Add(clock.Elapsed.TotalSeconds);
        }

        if (options.Soak && (step + 1) % 100 == 0)
        {
            rssSamples.Add((step + 1, Rss.CurrentMib()));
            Console.Error.WriteLine($"step {step + 1}: RSS {rssSamples[^1].Mib:F0} MiB");
        }
    }

    imagesPerUnit = batch;
}
else
{
    diffusion.eval();
    TimestepSampler sampler = phase == "ddpm" ? new DdpmSampler() : new DdimSampler { Steps = 50 };
    if (options.MicroBatch is int micro)
    {
        sampler.MicroBatchSize = micro;
    }

    int runs = options.Steps ?? 3;
    var seeds = Enumerable.Range(0, batch).Select(i => (long)i).ToArray();
    for (int run = 0; run < Math.Min(warmup, 1) + runs; run++)
    {
        var clock = Stopwatch.StartNew();
        using (var scope = NewDisposeScope())
        {
            sampler.Sample(diffusion, seeds);
        }

        if (run >= Math.Min(warmup, 1))
        {
            times.Add(clock.Elapsed.TotalSeconds);
        }
    }

    imagesPerUnit = batch;
}

var sorted = times.OrderBy(t => t).ToArray();
double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
var report = new Dictionary<string, object?>
{
    ["config"] = options.Config,
    ["phase"] = phase,
    ["batch"] = batch,
    ["image_size"] = size,
    ["timed_units"] = times.Count,
    ["median_seconds"] = median,
    ["min_seconds"] = sorted.First(),
    ["max_seconds"] = sorted.Last(),
    ["images_per_second"] = imagesPerUnit / median,
    ["peak_rss_mib"] = Rss.PeakMib(),
    ["params"] = unet.ParameterCount,
    ["threads"] = torch.get_num_threads(),
    ["torchsharp"] = typeof(torch).Assembly.GetName().Version?.ToString(),
    ["libtorch"] = "2.10.0",
    ["processor"] = Rss.Processor(),
    ["dotnet"] = Environment.Version.ToString(),
};
if (options.Soak)
{
    report["rss_mib_by_step"] = rssSamples.ToDictionary(s => s.Step.ToString(CultureInfo.InvariantCulture), s => Math.Round(s.Mib, 1));
    var from200 = rssSamples.First(s => s.Step >= 200).Mib;
    report["rss_growth_from_step_200"] = (rssSamples[^1].Mib - from200) / from200;
}

if (options.Json)
{
    Console.WriteLine(JsonSerializer.Serialize(report));
}
else
{
    foreach (var (key, value) in report)
    {
        Console.WriteLine($"{key,-26} {value}");
    }
}

internal sealed record BenchmarkOptions(string Config, string Phase, int? Batch, int? Steps, int Threads, int Warmup, bool Json, bool Soak, int? MicroBatch)
{
    public static BenchmarkOptions Parse(string[] args)
    {
        string config = "A", phase = "train";
        int? batch = null, steps = null, micro = null;
        int threads = Environment.ProcessorCount, warmup = 3;
        bool json = false, soak = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--config": config = Next().ToUpperInvariant(); break;
                case "--phase": phase = Next().ToLowerInvariant(); break;
                case "--batch": batch = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--steps": steps = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--threads": threads = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--warmup": warmup = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--micro-batch": micro = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--json": json = true; break;
                case "--soak": soak = true; break;
                default: throw new ArgumentException($"Unknown argument {args[i]}. Usage: --config A|B|S --phase train|ddim|ddpm --batch N [--steps K] [--threads 2] [--warmup W] [--micro-batch M] [--json] [--soak]");
            }
        }

        if (phase is not ("train" or "ddim" or "ddpm"))
        {
            throw new ArgumentException($"Unknown phase '{phase}'; use train, ddim or ddpm.");
        }

        return new BenchmarkOptions(config, phase, batch, steps, threads, warmup, json, soak, micro);
    }
}

internal static class Rss
{
    public static double CurrentMib() => Status("VmRSS:");

    public static double PeakMib() => Status("VmHWM:");

    public static string Processor()
    {
        try
        {
            return System.IO.File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown";
        }
        catch (System.IO.IOException)
        {
            return "unknown";
        }
    }

    private static double Status(string key)
    {
        if (!OperatingSystem.IsLinux())
        {
            return Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0;
        }

        string? line = System.IO.File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal));
        return line is null ? double.NaN : double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }
}
