// Data-parallel scaling: `--ranks 1,2[,4,8] [--config A|B] [--batch B] [--steps S] [--total-threads T] [--device cpu|cuda]`
// trains the same global batch with 1, 2, … ranks in one run — each N under `mpirun -np N` (one plain process for N = 1),
// libtorch threads per rank = T / N so that ranks × threads stay constant — through the library's training loop
// (DiffusionTrainer.Fit: each rank its share of every batch, one all-reduce of the flat gradients per step) and prints
// images/s and the efficiency against 1 rank. `--rank-worker` is one rank of such a run.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Distributed;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Core.Training;

internal static class Scaling
{
    public static bool Wants(string[] args) => args.Contains("--ranks") || args.Contains("--rank-worker");

    public static int Run(string[] args)
    {
        string Get(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() ?? fallback;
        string config = Get("--config", "A").ToUpperInvariant();
        int batch = int.Parse(Get("--batch", "32"), CultureInfo.InvariantCulture);
        int steps = int.Parse(Get("--steps", "12"), CultureInfo.InvariantCulture);
        int warmup = int.Parse(Get("--warmup", "2"), CultureInfo.InvariantCulture);
        string device = Get("--device", "cpu");
        if (args.Contains("--rank-worker"))
        {
            return Worker(config, batch, steps, warmup, int.Parse(Get("--threads", "1"), CultureInfo.InvariantCulture), device);
        }

        int total = int.Parse(Get("--total-threads", Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        var counts = Get("--ranks", "1,2").Split(',').Select(r => int.Parse(r, CultureInfo.InvariantCulture)).ToArray();
        var rates = new Dictionary<int, double>();
        Console.WriteLine(FormattableString.Invariant($"config {config}, global batch {batch}, {steps} timed steps after {warmup}, {total} threads in all, device {device}"));
        foreach (int n in counts)
        {
            int threads = Math.Max(1, total / n);
            string self = typeof(Scaling).Assembly.Location;
            var start = n == 1 ? new ProcessStartInfo("dotnet") : new ProcessStartInfo("mpirun");
            if (n > 1)
            {
                foreach (string a in new[] { "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", n.ToString(CultureInfo.InvariantCulture), "dotnet" })
                {
                    start.ArgumentList.Add(a);
                }
            }

            foreach (string a in new[] { self, "--rank-worker", "--config", config, "--batch", batch.ToString(CultureInfo.InvariantCulture), "--steps", steps.ToString(CultureInfo.InvariantCulture), "--warmup", warmup.ToString(CultureInfo.InvariantCulture), "--threads", threads.ToString(CultureInfo.InvariantCulture), "--device", device })
            {
                start.ArgumentList.Add(a);
            }

            start.RedirectStandardOutput = true;
            start.Environment["TERM"] = "dumb";
            using var process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            string? line = output.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("images/s ", StringComparison.Ordinal));
            if (process.ExitCode != 0 || line is null)
            {
                Console.Error.WriteLine($"{n} ranks failed (exit {process.ExitCode}): {output}");
                return 1;
            }

            rates[n] = double.Parse(line.Split(' ')[1], CultureInfo.InvariantCulture);
            double efficiency = rates[n] / rates[counts[0]];
            Console.WriteLine(FormattableString.Invariant($"{n} rank(s) × {threads} thread(s): {rates[n]:F1} images/s, efficiency {efficiency:P0} of {counts[0]} rank(s)"));
        }

        return 0;
    }

    private static int Worker(string config, int batch, int steps, int warmup, int threads, string device)
    {
        TorchSharp.torch.set_num_threads(threads);
        var world = Collective.World;
        var (network, size) = config switch
        {
            "A" => (new UNetOptions { Dim = 32, DimMults = new[] { 1, 2, 4 }, Channels = 1 }, 32),
            "B" => (new UNetOptions { Dim = 64, DimMults = new[] { 1, 2, 4, 8 }, Channels = 3 }, 32),
            _ => throw new ArgumentException($"Unknown config '{config}'; use A or B."),
        };
        var mlContext = new MLContext(seed: 0);
        var random = new Random(0);
        int pixels = network.Channels * size * size;
        var rows = Enumerable.Range(0, 4 * batch).Select(_ => new Row { Pixels = Enumerable.Range(0, pixels).Select(_ => (float)random.Next(256)).ToArray() }).ToList();
        var schema = Microsoft.ML.Data.SchemaDefinition.Create(typeof(Row));
        schema[nameof(Row.Pixels)].ColumnType = new Microsoft.ML.Data.VectorDataViewType(Microsoft.ML.Data.NumberDataViewType.Single, pixels);
        var data = mlContext.Data.LoadFromEnumerable(rows, schema);
        var times = new List<TimeSpan>();
        var options = new DiffusionTrainerOptions
        {
            ImageColumnName = nameof(Row.Pixels),
            ImageSize = size,
            Channels = network.Channels,
            Timesteps = 1000,
            Schedule = BetaSchedule.Sigmoid,
            Network = network,
            BatchSize = batch,
            TrainSteps = warmup + steps,
            LearningRate = 1e-4,
            WarmupSteps = 0,
            Seed = 0,
            Device = device,
            LogEvery = 1,
            Progress = new Recorder(p => times.Add(p.Elapsed)),
        };
        using var sampler = mlContext.Generative().Diffusion(options).Fit(data);
        if (world.IsRoot)
        {
            double seconds = (times[^1] - times[warmup - 1]).TotalSeconds;
            Console.WriteLine(FormattableString.Invariant($"images/s {batch * steps / seconds:F2} ranks {world.WorldSize} threads {threads}"));
        }

        return 0;
    }

    private sealed class Row
    {
        public float[] Pixels { get; set; } = Array.Empty<float>();
    }

    private sealed class Recorder : IProgress<TrainingProgress>
    {
        private readonly Action<TrainingProgress> action;

        public Recorder(Action<TrainingProgress> action) => this.action = action;

        public void Report(TrainingProgress value) => action(value);
    }
}
