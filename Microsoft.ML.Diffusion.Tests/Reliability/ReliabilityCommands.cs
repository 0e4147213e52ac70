using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>
/// The reliability campaigns as commands of the test assembly's entry point, for runs longer than the test budget:
/// <c>dotnet exec Microsoft.ML.Diffusion.Tests.dll damage [model|checkpoint|idx|all] CASES-PER-KIND SEED</c>.
/// </summary>
internal static class ReliabilityCommands
{
    public const string Usage = "damage model|checkpoint|idx|all CASES-PER-KIND SEED | train FOLDER STEPS | kill-campaign RUNS KILLS STEPS SEED | folder-trainer ARGS...";

    public static bool TryRun(string[] args, out int exitCode)
    {
        exitCode = 0;
        if (args.Length >= 1 && args[0] == "folder-trainer")
        {
            // The folder trainer in a process of its own (RunFolderTests start, kill and run two of them).
            exitCode = FolderTrainer.FolderTrainerJob.Run(args[1..], Console.Out);
            return true;
        }

        if (args.Length == 3 && args[0] == "train")
        {
            KillAndResume.Train(args[1], int.Parse(args[2], CultureInfo.InvariantCulture));
            return true;
        }

        if (args.Length == 5 && args[0] == "kill-campaign")
        {
            int runs = int.Parse(args[1], CultureInfo.InvariantCulture);
            int kills = int.Parse(args[2], CultureInfo.InvariantCulture);
            int steps = int.Parse(args[3], CultureInfo.InvariantCulture);
            int firstSeed = int.Parse(args[4], CultureInfo.InvariantCulture);
            string root = Directory.CreateTempSubdirectory("mldiffusion-kill-").FullName;
            try
            {
                string expected = KillAndResume.Uninterrupted(Path.Combine(root, "straight"), steps);
                var total = new KillReport();
                for (int run = 0; run < runs; run++)
                {
                    var report = KillAndResume.Interrupted(Path.Combine(root, $"run{run}"), steps, kills, firstSeed + run);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"run {run}: {report}; final weights {(report.FinalWeights == expected ? "identical" : "DIFFERENT")}"));
                    total.Add(report);
                    exitCode |= report.FinalWeights == expected && report.Problems.Count == 0 ? 0 : 1;
                    total.Identical += report.FinalWeights == expected ? 1 : 0;
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"total: {total}; runs with weights identical to the uninterrupted run: {total.Identical} of {runs}"));
            }
            finally
            {
                Directory.Delete(root, recursive: true);
            }

            return true;
        }

        if (args.Length != 4 || args[0] != "damage")
        {
            return false;
        }

        int perKind = int.Parse(args[2], CultureInfo.InvariantCulture);
        int seed = int.Parse(args[3], CultureInfo.InvariantCulture);
        string directory = Directory.CreateTempSubdirectory("mldiffusion-damage-").FullName;
        try
        {
            var reports = new List<DamageReport>();
            foreach (var target in Targets(args[1], directory))
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                var report = DamageCampaign.Run(target, perKind, seed);
                reports.Add(report);
                Console.WriteLine(report.Summary());
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  campaign time {clock.Elapsed.TotalSeconds:F1} s"));
                (target as IDisposable)?.Dispose();
                exitCode |= report.Bad > 0 ? 1 : 0;
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }

        return true;
    }

    private static IEnumerable<IDamageTarget> Targets(string which, string directory)
    {
        if (which is "model" or "all")
        {
            yield return new ModelFileTarget(directory);
            yield return new HostileModelTarget(directory);
        }

        if (which is "checkpoint" or "all")
        {
            yield return new CheckpointTarget(directory);
            yield return new CheckpointTarget(directory, resealed: true);
        }

        if (which is "idx" or "all")
        {
            yield return new IdxTarget(directory, gzip: false);
            yield return new IdxTarget(directory, gzip: true);
        }
    }
}
