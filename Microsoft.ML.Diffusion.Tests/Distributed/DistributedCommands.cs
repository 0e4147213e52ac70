using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using Microsoft.ML.Diffusion.Core.Distributed;
using Microsoft.ML.Diffusion.Core.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Distributed;

/// <summary>
/// The test assembly's commands that run as MPI ranks (<c>mpirun -np N dotnet exec Microsoft.ML.Diffusion.Tests.dll …</c>)
/// or as one plain process: <c>dist-train OUT STEPS BATCH [resume] [kill-at=S] [stall-at=S] [lr-rank1=X] [checkpoint-every=K] [device=D]</c>
/// trains the tiny conditional model (labels, flips, label dropout) and has rank 0 write OUT/weights.bin (the final
/// parameters, float32); <c>dist-generate MODEL COUNT [shard=i/N]</c> prints one SHA-256 per generated image;
/// <c>dist-collectives [device=D]</c> all-reduces and broadcasts known values and prints what it got.
/// </summary>
internal static class DistributedCommands
{
    public const string Usage = "dist-train OUT STEPS BATCH [resume] [kill-at=S] [stall-at=S] [lr-rank1=X] [checkpoint-every=K] [device=D] | dist-generate MODEL COUNT [shard=i/N] | dist-collectives [device=D]";

    public static bool TryRun(string[] args, out int exitCode)
    {
        exitCode = 0;
        if (args.Length == 0 || !args[0].StartsWith("dist-", StringComparison.Ordinal))
        {
            return false;
        }

        set_num_threads(1);
        try
        {
            exitCode = args[0] switch
            {
                "dist-train" when args.Length >= 4 => Train(args[1], Int(args[2]), Int(args[3]), Options(args.Skip(4))),
                "dist-generate" when args.Length >= 3 => Generate(args[1], Int(args[2]), Options(args.Skip(3))),
                "dist-collectives" => Collectives(Options(args.Skip(1))),
                _ => 2,
            };
        }
        catch (Exception ex) when (ex is CollectiveException or DllNotFoundException or InvalidOperationException or ArgumentException or IOException)
        {
            string rank = Collective.AnnouncedWorldSize > 1 ? string.Create(CultureInfo.InvariantCulture, $"rank {Collective.AnnouncedRank}: ") : string.Empty;
            Console.Error.WriteLine($"error: {rank}{ex.Message}");
            Console.Error.Flush();
            exitCode = 1;
        }

        return true;
    }

    private static int Train(string folder, int steps, int batch, Dictionary<string, string> options)
    {
        var world = Collective.World;
        var mlContext = new MLContext(seed: 1);
        var trainer = MLNetTestData.Options(steps);
        trainer.LabelColumnName = "Label";
        trainer.BatchSize = batch;
        trainer.RandomHorizontalFlip = true;
        trainer.ConditionDropout = 0.2;
        trainer.CheckpointDirectory = Path.Combine(folder, "checkpoints");
        trainer.CheckpointEvery = options.TryGetValue("checkpoint-every", out string? every) ? Int(every) : steps;
        trainer.KeepCheckpoints = 100;
        trainer.Resume = options.ContainsKey("resume");
        trainer.Training.ConsistencyCheckEvery = 5;
        trainer.Device = options.GetValueOrDefault("device", "cpu");
        if (world.Rank == 1 && options.TryGetValue("lr-rank1", out string? lr))
        {
            trainer.LearningRate = double.Parse(lr, CultureInfo.InvariantCulture);
        }

        int killAt = options.TryGetValue("kill-at", out string? kill) ? Int(kill) : -1;
        int stallAt = options.TryGetValue("stall-at", out string? stall) ? Int(stall) : -1;
        DiffusionTrainingLoop.AfterStep = (step, rank) =>
        {
            if (rank == 1 && step == killAt)
            {
                Process.GetCurrentProcess().Kill(); // SIGKILL: no handler, no flush, as a crash or the OOM killer would
            }

            if (rank == 1 && step == stallAt)
            {
                Thread.Sleep(Timeout.Infinite);
            }
        };
        trainer.Progress = new SyncProgress<TrainingProgress>(p => Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"step {p.Step} loss {p.Loss:F5}")));
        using var sampler = mlContext.Generative().Diffusion(trainer).Fit(MLNetTestData.Patterns(mlContext, copies: 6));
        float[] weights = sampler.Model.Diffusion.Model.parameters().SelectMany(p => p.detach().cpu().flatten().data<float>().ToArray()).ToArray();
        if (world.IsRoot)
        {
            byte[] bytes = new byte[weights.Length * sizeof(float)];
            Buffer.BlockCopy(weights, 0, bytes, 0, bytes.Length);
            File.WriteAllBytes(Path.Combine(folder, "weights.bin"), bytes);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"trained {sampler.Model.TrainedSteps} steps on {world.WorldSize} rank(s); weights {Convert.ToHexString(SHA256.HashData(bytes))}"));
        }

        return 0;
    }

    private static int Generate(string model, int count, Dictionary<string, string> options)
    {
        var mlContext = new MLContext(seed: 1);
        using var sampler = (DiffusionSampler)mlContext.Model.Load(model, out _);
        var world = Collective.World;
        int first = 0;
        IReadOnlyList<Microsoft.ML.Data.MLImage> images;
        if (options.TryGetValue("shard", out string? text))
        {
            var shard = SeedShard.Parse(text);
            first = shard.Range(count).Start;
            images = sampler.GenerateShard(count, shard);
        }
        else
        {
            images = world.WorldSize > 1 ? sampler.GenerateOnAllRanks(count) : sampler.Generate(count);
        }

        if (world.IsRoot)
        {
            for (int i = 0; i < images.Count; i++)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"image {first + i} {Convert.ToHexString(SHA256.HashData(images[i].GetBGRPixels))}"));
            }
        }

        return 0;
    }

    private static int Collectives(Dictionary<string, string> options)
    {
        var world = Collective.World;
        var device = new Device(options.GetValueOrDefault("device", "cpu") == "cuda" ? $"cuda:{world.LocalRank}" : "cpu");
        // Values made on the host (no temporary Scalars): 1…5 times (rank + 1), the rank, rank + 10.
        using var values = tensor(Enumerable.Range(1, 5).Select(i => (float)(i * (world.Rank + 1))).ToArray(), device: device);
        world.AllReduce(values, ReduceOperation.Sum);
        using var average = tensor(Enumerable.Repeat((float)world.Rank, 3).ToArray(), device: device);
        world.AllReduce(average, ReduceOperation.Average);
        using var broadcast = tensor(Enumerable.Repeat((float)(world.Rank + 10), 4).ToArray(), device: device);
        world.Broadcast(broadcast, 0);
        var gathered = world.AllGather(new[] { (byte)world.Rank }, "gather ranks");
        world.Barrier("the end");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"rank {world.Rank} of {world.WorldSize} ({world.Backend}): sum {string.Join(",", values.cpu().data<float>().ToArray())} average {string.Join(",", average.cpu().data<float>().ToArray())} broadcast {string.Join(",", broadcast.cpu().data<float>().ToArray())} gathered {string.Join(",", gathered.Select(g => g[0]))}"));
        return 0;
    }

    private static Dictionary<string, string> Options(IEnumerable<string> args) =>
        args.Select(a => a.Split('=', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : string.Empty, StringComparer.Ordinal);

    private static int Int(string text) => int.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture);
}
