using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Training;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>What a run that was killed and resumed did.</summary>
internal sealed class KillReport
{
    public int Kills { get; set; }

    /// <summary>Gets or sets how many kills left a temporary file behind (they landed while a checkpoint was being written).</summary>
    public int KillsDuringAWrite { get; set; }

    public int CheckpointsChecked { get; set; }

    /// <summary>Gets or sets the steps done again after the resumes (work lost to the kills).</summary>
    public int StepsRedone { get; set; }

    public int Identical { get; set; }

    public string FinalWeights { get; set; } = string.Empty;

    public List<string> Problems { get; } = new();

    public void Add(KillReport other)
    {
        Kills += other.Kills;
        KillsDuringAWrite += other.KillsDuringAWrite;
        CheckpointsChecked += other.CheckpointsChecked;
        StepsRedone += other.StepsRedone;
        Problems.AddRange(other.Problems);
    }

    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"{Kills} SIGKILLs ({KillsDuringAWrite} while a checkpoint was being written), {CheckpointsChecked} checkpoints left on disk checked, all {(Problems.Count == 0 ? "intact" : "NOT intact: " + string.Join("; ", Problems))}, {StepsRedone} steps redone after resuming");
}

/// <summary>
/// Training in a child process (the test assembly's entry point, <c>train FOLDER STEPS</c>), killed with SIGKILL at random
/// moments and resumed from its checkpoints.
/// </summary>
internal static class KillAndResume
{
    /// <summary>The child: trains the tiny estimator model with a checkpoint after every step, resuming when it can.</summary>
    public static void Train(string folder, int steps)
    {
        var mlContext = new MLContext(seed: 1);
        mlContext.Log += (_, e) =>
        {
            if (e.Message.Contains("Resumed from", StringComparison.Ordinal))
            {
                Console.WriteLine("resumed " + e.Message);
            }
        };
        var options = MLNetTestData.Options(steps);
        options.Network = new UNetOptions { Dim = 4, DimMults = new[] { 1, 2 }, AttentionHeads = 1, AttentionDimHead = 4 };
        options.BatchSize = 4;
        ((UNetOptions)options.Network).Dropout = 0.1; // the global generator must be restored too
        options.CheckpointDirectory = folder;
        options.CheckpointEvery = 1;
        options.KeepCheckpoints = 2;
        options.Resume = true;
        options.LogEvery = 1;
        options.Progress = new SyncProgress<TrainingProgress>(p => Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"step {p.Step}")));
        using var sampler = mlContext.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(mlContext, copies: 5));
        Console.WriteLine("weights " + Convert.ToHexString(SHA256.HashData(sampler.Model.SaveWeights())));
    }

    /// <summary>Trains to the end in one child process; returns the final weights' hash.</summary>
    public static string Uninterrupted(string folder, int steps)
    {
        using var child = Start(folder, steps);
        string weights = ReadToEnd(child);
        return weights;
    }

    /// <summary>
    /// Starts the child <paramref name="kills"/> times and kills each at a random moment (a random step, then a random
    /// delay), checks every checkpoint left on disk, then lets a last child finish.
    /// </summary>
    public static KillReport Interrupted(string folder, int steps, int kills, int seed)
    {
        var random = new Random(seed);
        var report = new KillReport();
        int lastCheckpoint = 0;
        for (int k = 0; k < kills; k++)
        {
            // The k-th kill lands in the k-th fifth of the steps still to go, after a random part of a step.
            int low = Math.Max(lastCheckpoint + 1, 1 + (k * (steps - 2) / kills));
            int high = Math.Max(low + 1, 1 + ((k + 1) * (steps - 2) / kills));
            int target = random.Next(low, high);
            int delay = random.Next(0, 60);
            using var child = Start(folder, steps);
            int lastStep = -1;
            int? resumed = null;
            string? line;
            while ((line = child.StandardOutput.ReadLine()) is not null)
            {
                if (line.StartsWith("resumed ", StringComparison.Ordinal))
                {
                    resumed = int.Parse(line[(line.LastIndexOf(' ') + 1)..].TrimEnd('.'), CultureInfo.InvariantCulture);
                }
                else if (line.StartsWith("step ", StringComparison.Ordinal))
                {
                    lastStep = int.Parse(line[5..], CultureInfo.InvariantCulture);
                    if (lastStep >= target)
                    {
                        break;
                    }
                }
            }

            if (line is null)
            {
                report.Problems.Add($"child {k} ended before it was killed: {child.StandardError.ReadToEnd()}");
                continue;
            }

            // A child resumes from the newest checkpoint, or starts afresh when the kills came before the first one.
            if (k > 0 && resumed != (lastCheckpoint > 0 ? lastCheckpoint : null))
            {
                report.Problems.Add($"child {k} resumed at step {resumed?.ToString(CultureInfo.InvariantCulture) ?? "none"}; the newest checkpoint was {lastCheckpoint}");
            }

            Thread.Sleep(delay);
            child.Kill(); // SIGKILL on Unix
            child.WaitForExit();
            report.Kills++;
            string[] temporary = Directory.GetFiles(folder, "*.tmp");
            report.KillsDuringAWrite += temporary.Length > 0 ? 1 : 0;
            foreach (string checkpoint in Directory.GetFiles(folder, "*" + Checkpoint.Extension))
            {
                report.CheckpointsChecked++;
                try
                {
                    Checkpoint.CheckIntegrity(checkpoint);
                }
                catch (InvalidDataException ex)
                {
                    report.Problems.Add(ex.Message);
                }
            }

            string? latest = Checkpoint.FindLatest(folder);
            int newest = latest is null ? 0 : int.Parse(Path.GetFileNameWithoutExtension(latest)["checkpoint-".Length..], CultureInfo.InvariantCulture);
            report.StepsRedone += Math.Max(0, lastStep - newest);
            lastCheckpoint = newest;
        }

        using (var last = Start(folder, steps))
        {
            report.FinalWeights = ReadToEnd(last);
        }

        return report;
    }

    private static Process Start(string folder, int steps)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };

        // One libtorch thread per child: every child computes the same way (bit-exact resume needs that), and on a shared,
        // busy machine OpenMP's spinning threads make a 2-thread child of this tiny model up to 10× slower.
        start.Environment["OMP_NUM_THREADS"] = "1";
        start.Environment["MKL_NUM_THREADS"] = "1";
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add(typeof(KillAndResume).Assembly.Location);
        start.ArgumentList.Add("train");
        start.ArgumentList.Add(folder);
        start.ArgumentList.Add(steps.ToString(CultureInfo.InvariantCulture));
        return Process.Start(start)!;
    }

    private static string ReadToEnd(Process child)
    {
        var error = child.StandardError.ReadToEndAsync();
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0)
        {
            throw new InvalidOperationException($"training child exited with {child.ExitCode}: {error.Result}");
        }

        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Single(l => l.StartsWith("weights ", StringComparison.Ordinal));
    }
}
