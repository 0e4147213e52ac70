// Training and sampling throughput of Microsoft.ML.Diffusion for the configurations of the performance issue, measured
// the way the PyTorch reference (denoising-diffusion-pytorch 2.1.1) is measured: the same U-Net, the same loss and
// optimizer, warm-up steps not counted, the median of the timed steps reported. Prints one JSON object with --json.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Core.Training;
using TorchSharp;
using static TorchSharp.torch;

if (Scaling.Wants(args))
{
    return Scaling.Run(args);
}

try
{
    BenchmarkOptions options;
    try
    {
        options = BenchmarkOptions.Parse(args);
    }
    catch (ArgumentException ex)
    {
        Console.Error.WriteLine(ex.Message);
        return 2;
    }

    Device device;
    try
    {
        device = DeviceChoice.Parse(options.Device);
    }
    catch (ArgumentException ex)
    {
        Console.Error.WriteLine(ex.Message);
        return 1;
    }

    torch.set_num_threads(options.Threads);
    if (options.Tf32)
    {
        torch.backends.cuda.matmul.allow_tf32 = true;
        torch.backends.cudnn.allow_tf32 = true;
    }

    if (options.Suite is not null)
    {
        // The rows of the GPU issue, each measured like the PyTorch peer (shared/gpu/peer_gpu.py): 20 timed training steps
        // after 5 warm-up steps, one timed DDIM-50 run after a warm-up run; ours and the peer's from the same machine.
        var peer = options.PeerFile is string file ? PeerTimes.Read(file) : new Dictionary<string, double>();
        var rows = new List<Dictionary<string, object?>>();
        foreach (var (name, config, phase, batch) in Suite.Rows)
        {
            var result = Measure.Run(options with { Config = config, Phase = phase, Batch = batch, Steps = phase == "train" ? 20 : 1, Warmup = phase == "train" ? 5 : 1, Precision = Precision.Float32 }, device);
            // With --precision bf16|fp16, training rows are measured a second time in that precision (docs/mixed-precision.md).
            double? reduced = options.Precision != Precision.Float32 && phase == "train"
                ? Measure.Run(options with { Config = config, Phase = phase, Batch = batch, Steps = 20, Warmup = 5 }, device).Median
                : null;
            rows.Add(new Dictionary<string, object?>
            {
                [options.Precision == Precision.Float16 ? "ours_fp16_s" : "ours_bf16_s"] = reduced,
                ["name"] = name,
                ["ours_s"] = result.Median,
                ["peer_s"] = peer.TryGetValue(name, out double p) ? p : null,
                ["ratio"] = peer.TryGetValue(name, out double q) ? q / result.Median : null,
            });
            Console.Error.WriteLine(FormattableString.Invariant($"{name}: {result.Median:F4} s"));
        }

        var suiteReport = new Dictionary<string, object?>
        {
            ["device"] = DeviceChoice.Describe(device),
            ["tf32"] = options.Tf32,
            ["precision"] = options.Precision.ToString(),
            ["torchsharp"] = typeof(torch).Assembly.GetName().Version?.ToString(),
            ["dotnet"] = Environment.Version.ToString(),
            ["rows"] = rows,
        };
        Console.WriteLine(JsonSerializer.Serialize(suiteReport));
        return 0;
    }

    var measured = Measure.Run(options, device);
    var sorted = measured.Times.OrderBy(t => t).ToArray();
    var report = new Dictionary<string, object?>
    {
        ["config"] = options.Config,
        ["phase"] = measured.Phase,
        ["batch"] = measured.Batch,
        ["image_size"] = measured.Size,
        ["device"] = DeviceChoice.Describe(device),
        ["precision"] = options.Precision.ToString(),
        ["timed_units"] = sorted.Length,
        ["median_seconds"] = measured.Median,
        ["min_seconds"] = sorted.First(),
        ["max_seconds"] = sorted.Last(),
        ["images_per_second"] = measured.Batch / measured.Median,
        ["peak_rss_mib"] = Rss.PeakMib(),
        ["params"] = measured.Parameters,
        ["threads"] = torch.get_num_threads(),
        ["torchsharp"] = typeof(torch).Assembly.GetName().Version?.ToString(),
        ["libtorch"] = "2.10.0",
        ["processor"] = Rss.Processor(),
        ["dotnet"] = Environment.Version.ToString(),
    };
    if (options.Soak)
    {
        report["rss_mib_by_step"] = measured.RssSamples.ToDictionary(s => s.Step.ToString(CultureInfo.InvariantCulture), s => Math.Round(s.Mib, 1));
        var from200 = measured.RssSamples.First(s => s.Step >= 200).Mib;
        report["rss_growth_from_step_200"] = (measured.RssSamples[^1].Mib - from200) / from200;
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

    return 0;
}
catch (Exception ex) when (DiffusionSamples.UserErrors.Describe(ex, new Dictionary<string, string> { ["device"] = "--device" }) is string line)
{
    // What a user can cause (a missing or damaged file, a bad value): one line, no stack trace.
    Console.Error.WriteLine($"Error: {line}");
    return 1;
}

internal sealed record Measurement(string Phase, int Batch, int Size, long Parameters, double Median, IReadOnlyList<double> Times, IReadOnlyList<(int Step, double Mib)> RssSamples);

internal static class Measure
{
    public static Measurement Run(BenchmarkOptions options, Device device)
    {
        manual_seed(0);
        var (unetOptions, size) = options.Config switch
        {
            "A" => (new UNetOptions { Dim = 32, DimMults = new[] { 1, 2, 4 }, Channels = 1 }, 32),
            "B" => (new UNetOptions { Dim = 64, DimMults = new[] { 1, 2, 4, 8 }, Channels = 3 }, 32),
            "S" => (new UNetOptions { Dim = 16, DimMults = new[] { 1, 2, 4 }, Channels = 1 }, 28),
            // The main job's network off the CPU (samples/FashionMnist): learned-range variance, the hybrid loss, 28×28.
            "M" => (new UNetOptions { Dim = 32, DimMults = new[] { 1, 2, 4 }, AttentionHeads = 4, AttentionDimHead = 32, Channels = 1, LearnedVariance = true }, 28),
            _ => throw new ArgumentException($"Unknown config '{options.Config}'; use A, B, S or M."),
        };
        var unet = new UNet(unetOptions);
        using var diffusion = options.Config == "M"
            ? new GaussianDiffusion(unet, NoiseSchedule.Create(BetaSchedule.Cosine, 1000), size, size, PredictionTarget.Noise, DiffusionLoss.MeanSquaredError, VarianceType.LearnedRange)
            : new GaussianDiffusion(unet, NoiseSchedule.Sigmoid(1000), size, size, PredictionTarget.Velocity, DiffusionLoss.MeanSquaredError);
        diffusion.to(device);
        bool cpu = device.type == DeviceType.CPU;
        var times = new List<double>();
        var rssSamples = new List<(int Step, double Mib)>();
        int warmup = options.Warmup;
        string phase = options.Soak ? "soak" : options.Phase;
        int batch = options.Batch ?? (phase == "train" || phase == "soak" ? (options.Config == "B" ? 16 : 32) : 16);

        if (phase is "train" or "soak")
        {
            int steps = options.Soak ? 2000 : options.Steps ?? 20;
            // The library's optimizer (as the training loop uses it; Adam = AdamW without weight decay): one flat buffer.
            using var optimizer = new FusedAdamW(diffusion.Model.parameters(), 1e-4, beta1: 0.9, beta2: 0.99, weightDecay: 0);
            // --precision bf16|fp16: the training loop's mixed-precision policy (float32 master weights, a 16-bit network copy).
            using var mixed = new MixedPrecision(diffusion, optimizer, options.Precision);
            using Scalar two = 2.ToScalar(), one = 1.ToScalar(); // held while libtorch reads them (MLDIFF100)
            using var images = (rand(batch, unetOptions.Channels, size, size) * two - one).to(device);
            using var generator = new Generator(0, CPU); // as the training loop draws t and ε (DeviceRandom)
            for (int step = 0; step < warmup + steps; step++)
            {
                var clock = Stopwatch.StartNew();
                using (var scope = NewDisposeScope())
                {
                    optimizer.ZeroGrad();
                    mixed.BeginStep();
                    var stepGenerator = DeviceRandom.ForTrainingStep(device, generator, 0, step); // once per step, as the training loop
                    int chunk = options.MicroBatch is int m && m < batch ? m : batch;
                    for (int start = 0; start < batch; start += chunk)
                    {
                        // The gradient of the batch mean, in chunks (--micro-batch): the same work in smaller tensors.
                        var part = chunk == batch ? images : images[start..Math.Min(batch, start + chunk)];
                        using Scalar share = ((double)part.shape[0] / batch).ToScalar(); // held while libtorch reads it (MLDIFF100)
                        var loss = mixed.Diffusion.Loss(part, generator: stepGenerator) * share;
                        mixed.Backward(loss);
                    }

                    optimizer.Step();
                }

                if (cpu)
                {
                    GC.Collect(0); // as DiffusionTrainingLoop does after every CPU step (it keeps the native heap from fragmenting)
                }
                else
                {
                    torch.cuda.synchronize(device);
                }

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
        }
        else
        {
            diffusion.eval();
            var sampler = new SamplingLoop(phase == "ddpm" ? new DdpmScheduler() : new DdimScheduler { Steps = 50 }) { MicroBatchSize = options.MicroBatch };
            int runs = options.Steps ?? 3;
            var seeds = Enumerable.Range(0, batch).Select(i => (long)i).ToArray();
            for (int run = 0; run < Math.Min(warmup, 1) + runs; run++)
            {
                var clock = Stopwatch.StartNew();
                using (var scope = NewDisposeScope())
                {
                    sampler.Sample(diffusion, seeds);
                    if (!cpu)
                    {
                        torch.cuda.synchronize(device);
                    }
                }

                if (run >= Math.Min(warmup, 1))
                {
                    times.Add(clock.Elapsed.TotalSeconds);
                }
            }
        }

        var sorted = times.OrderBy(t => t).ToArray();
        double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
        return new Measurement(phase, batch, size, unet.ParameterCount, median, times, rssSamples);
    }
}

internal static class Suite
{
    /// <summary>The rows of the GPU issue, named as shared/gpu/peer_gpu.py names its results.</summary>
    public static readonly (string Name, string Config, string Phase, int Batch)[] Rows =
    {
        ("train_A_b32", "A", "train", 32),
        ("train_A_b128", "A", "train", 128),
        ("train_A_b512", "A", "train", 512),
        ("train_B_b64", "B", "train", 64),
        ("train_B_b256", "B", "train", 256),
        ("ddim50_A_b16", "A", "ddim", 16),
        ("ddim50_A_b256", "A", "ddim", 256),
        ("train_M_b256", "M", "train", 256), // the main job's network and batch off the CPU; no peer row
    };
}

internal static class PeerTimes
{
    /// <summary>Reads the peer's results: the "JSON {...}" line peer_gpu.py prints last, or a plain JSON object.</summary>
    public static Dictionary<string, double> Read(string path)
    {
        string? line = File.ReadLines(path).LastOrDefault(l => l.TrimStart().StartsWith("JSON ", StringComparison.Ordinal) || l.TrimStart().StartsWith('{'));
        if (line is null)
        {
            throw new ArgumentException($"'{path}' has no JSON line of peer timings.");
        }

        string json = line.TrimStart().StartsWith("JSON ", StringComparison.Ordinal) ? line.TrimStart()[5..] : line;
        return JsonSerializer.Deserialize<Dictionary<string, double>>(json) ?? new Dictionary<string, double>();
    }
}

internal static class DeviceChoice
{
    public static Device Parse(string name)
    {
        string d = name.Trim().ToLowerInvariant();
        if (d == "cpu")
        {
            return CPU;
        }

        if (d == "cuda" || d.StartsWith("cuda:", StringComparison.Ordinal))
        {
            return torch.cuda.is_available()
                ? torch.device(d)
                : throw new ArgumentException($"--device {name}: CUDA is not available here (this build has the CPU backend, or there is no NVIDIA GPU); see README, \"Running on a GPU\".");
        }

        throw new ArgumentException($"--device expects cpu, cuda or cuda:N; got '{name}'.");
    }

    public static string Describe(Device device) => device.type == DeviceType.CPU ? $"cpu ({Rss.Processor()})" : device.ToString();
}

internal sealed record BenchmarkOptions(string Config, string Phase, int? Batch, int? Steps, int Threads, int Warmup, bool Json, bool Soak, int? MicroBatch, string Device, bool Tf32, string? Suite, string? PeerFile, Precision Precision = Precision.Float32)
{
    // Images per step or sampling run: the benchmark allocates one batch of random images up front (4 MiB per 1,024
    // images of config B), so a larger one is refused by its size before libtorch is asked for it.
    private const int MaxBatch = 65_536;

    public static BenchmarkOptions Parse(string[] args)
    {
        string config = "A", phase = "train";
        int? batch = null, steps = null, micro = null;
        int threads = Environment.ProcessorCount, warmup = 3;
        bool json = false, soak = false, tf32 = false;
        string device = "cpu";
        string? suite = null, peer = null;
        var precision = Precision.Float32;
        var given = new HashSet<string>();
        for (int i = 0; i < args.Length; i++)
        {
            // Each option once (as in every program here); each number named with its limit when it is refused.
            string name = args[i];
            if (!given.Add(name))
            {
                throw new ArgumentException($"{name} is given more than once: give it once.");
            }

            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Count(int min, int max)
            {
                string value = Next();
                return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= min && n <= max
                    ? n
                    : throw new ArgumentException($"{name} expects an integer in [{min}, {max}]; got '{value}'.");
            }

            switch (args[i])
            {
                case "--config": config = Next().ToUpperInvariant(); break;
                case "--phase": phase = Next().ToLowerInvariant(); break;
                case "--batch": batch = Count(1, MaxBatch); break;
                case "--steps": steps = Count(1, 1_000_000); break;
                case "--threads": threads = Count(1, 1024); break;
                case "--warmup": warmup = Count(0, 1_000_000); break;
                case "--micro-batch": micro = Count(1, MaxBatch); break;
                case "--json": json = true; break;
                case "--soak": soak = true; break;
                case "--device": device = Next(); break;
                case "--tf32": tf32 = true; break;
                case "--suite": suite = Next().ToLowerInvariant(); break;
                case "--peer": peer = Next(); break;
                case "--precision":
                    precision = Next() switch
                    {
                        "fp32" => Precision.Float32,
                        "bf16" => Precision.BFloat16,
                        "fp16" => Precision.Float16,
                        var other => throw new ArgumentException($"--precision expects fp32, bf16 or fp16; got '{other}'."),
                    };
                    break;
                default: throw new ArgumentException($"Unknown argument {args[i]}. Usage: --config A|B|S|M --phase train|ddim|ddpm --batch N [--steps K] [--threads 2] [--warmup W] [--micro-batch M] [--device cpu|cuda|cuda:N] [--tf32] [--precision fp32|bf16|fp16] [--json] [--soak] | --suite gpu [--peer PEER_OUTPUT] [--device cuda]");
            }
        }

        if (phase is not ("train" or "ddim" or "ddpm"))
        {
            throw new ArgumentException($"Unknown phase '{phase}'; use train, ddim or ddpm.");
        }

        if (suite is not null and not "gpu")
        {
            throw new ArgumentException($"Unknown suite '{suite}'; use gpu (the rows of the GPU issue).");
        }

        return new BenchmarkOptions(config, phase, batch, steps, threads, warmup, json, soak, micro, device, tf32, suite, peer, precision);
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
