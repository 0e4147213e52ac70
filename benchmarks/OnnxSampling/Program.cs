// ONNX Runtime (CPU) against the TorchSharp sampler on the benchmark model (docs/performance.md, config A: U-Net dim 32,
// mults 1, 2, 4, 32×32 gray, v-prediction on the sigmoid schedule, T = 1000): DDIM-50 on a batch of 16, the same seeds,
// in the same process, interleaved (TorchSharp, ORT unrolled, ORT loop, … for each round), median of the timed rounds
// after one warm-up round. Writes a text report and, with --json FILE, the numbers.
//
//   dotnet run -c Release --project benchmarks/OnnxSampling -- [--rounds 3] [--threads 2] [--batch 16] [--steps 50]
//       [--sampler ddim|dpm] [--config A|S] [--json FILE]
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Export;
using Microsoft.ML.Diffusion.Onnx;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

int rounds = 3, threads = Environment.ProcessorCount, batch = 16, steps = 50;
string sampler = "ddim", config = "A";
string? json = null;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} expects a value");
    switch (args[i])
    {
        case "--rounds": rounds = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--threads": threads = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--batch": batch = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--steps": steps = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--sampler": sampler = Next(); break;
        case "--config": config = Next(); break;
        case "--json": json = Next(); break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}

set_num_threads(threads);
manual_seed(0);
var (unetOptions, size) = config switch
{
    "A" => (new UNetOptions { Dim = 32, DimMults = new[] { 1, 2, 4 }, Channels = 1 }, 32),
    "S" => (new UNetOptions { Dim = 16, DimMults = new[] { 1, 2, 4 }, Channels = 1 }, 28),
    _ => throw new ArgumentException($"Unknown config '{config}'; use A or S."),
};
using var diffusion = new GaussianDiffusion(new UNet(unetOptions), NoiseSchedule.Sigmoid(1000), size, size, PredictionTarget.Velocity, DiffusionLoss.MeanSquaredError);
diffusion.eval();
DiffusionScheduler scheduler = sampler == "dpm" ? new DpmSolverScheduler { Steps = steps } : new DdimScheduler { Steps = steps };
var seeds = Enumerable.Range(0, batch).Select(i => (long)i).ToArray();
var loop = new SamplingLoop(scheduler);

string folder = Path.Combine(Path.GetTempPath(), $"mldiff-onnx-bench-{Environment.ProcessId}");
Directory.CreateDirectory(folder);
var variants = new List<(string Name, Func<double> Run, double CreateSeconds, long FileBytes)>
{
    ("TorchSharp", () => Time(() => { using var scope = NewDisposeScope(); loop.Sample(diffusion, seeds); }), 0, 0),
};
foreach (var kind in new[] { OnnxSamplerLoop.Unrolled, OnnxSamplerLoop.Loop })
{
    string file = Path.Combine(folder, $"{kind}.onnx");
    var exportClock = Stopwatch.StartNew();
    DiffusionOnnxExport.Export(diffusion, file, new OnnxExportOptions { Scheduler = scheduler, Loop = kind });
    double exportSeconds = exportClock.Elapsed.TotalSeconds;
    var options = new SessionOptions
    {
        IntraOpNumThreads = threads,
        InterOpNumThreads = 1,
        ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
    };
    var createClock = Stopwatch.StartNew();
    var generator = new OnnxDiffusionGenerator(file, options);
    double create = createClock.Elapsed.TotalSeconds;
    Console.WriteLine($"{kind}: export {exportSeconds:F2} s, {new FileInfo(file).Length / 1e6:F1} MB, session {create:F2} s");
    variants.Add(($"ORT {kind.ToString().ToLowerInvariant()}", () => Time(() => generator.GeneratePixels(seeds)), create, new FileInfo(file).Length));
}

var times = variants.ToDictionary(v => v.Name, _ => new List<double>());
for (int round = 0; round <= rounds; round++)
{
    foreach (var v in variants)
    {
        double seconds = v.Run();
        if (round > 0)
        {
            times[v.Name].Add(seconds);
        }

        Console.WriteLine($"round {round}{(round == 0 ? " (warm-up)" : string.Empty)}: {v.Name} {seconds:F2} s");
    }
}

double Median(List<double> t)
{
    var s = t.OrderBy(x => x).ToArray();
    return s.Length % 2 == 1 ? s[s.Length / 2] : (s[(s.Length / 2) - 1] + s[s.Length / 2]) / 2;
}

double torchMedian = Median(times["TorchSharp"]);
Console.WriteLine();
Console.WriteLine($"config {config} ({size}×{size}), {scheduler.Name}-{steps}, batch {batch}, {threads} threads, {rounds} timed rounds after one warm-up");
Console.WriteLine("ORT: CPU execution provider, intra-op threads = threads, inter-op 1, sequential, graph optimization ORT_ENABLE_ALL");
Console.WriteLine($"{"variant",-14} {"median s",9} {"× TorchSharp",13}  rounds");
foreach (var v in variants)
{
    double m = Median(times[v.Name]);
    Console.WriteLine($"{v.Name,-14} {m,9:F2} {torchMedian / m,12:F2}×  {string.Join(" / ", times[v.Name].Select(t => t.ToString("F2", System.Globalization.CultureInfo.InvariantCulture)))}");
}

if (json is not null)
{
    var report = new
    {
        config, size, sampler = scheduler.Name, steps, batch, threads, rounds,
        variants = variants.Select(v => new { v.Name, median = Median(times[v.Name]), times = times[v.Name], sessionSeconds = v.CreateSeconds, fileBytes = v.FileBytes }),
    };
    File.WriteAllText(json, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
}

Directory.Delete(folder, recursive: true);
return 0;

static double Time(Action action)
{
    var clock = Stopwatch.StartNew();
    action();
    return clock.Elapsed.TotalSeconds;
}
