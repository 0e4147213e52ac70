using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using FolderTrainer;
using Microsoft.ML.Diffusion.Core.IO;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Diffusion.Tests.Samples;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>
/// Careless and hostile users of an output folder (issue #23): two runs on one folder, a resume killed at any moment,
/// the checkpoint folder deleted during a run, a damaged newest checkpoint, a failed checkpoint write, an early failure.
/// The folder trainer runs in child processes (the test assembly's <c>folder-trainer</c> command) where they are killed
/// or run side by side.
/// </summary>
[TestClass]
public sealed class RunFolderTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);
    private string directory = null!;
    private string images = null!;

    [TestInitialize]
    public void CreateFolder()
    {
        directory = Directory.CreateTempSubdirectory("mldiffusion-runs-").FullName;
        images = Path.Combine(directory, "images");
        FolderTrainerTests.WriteImages(images, rgb: false);
    }

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(directory, recursive: true);

    [TestMethod]
    public void ASecondRunOnTheSameFolderFailsFastAndTouchesNothing()
    {
        string output = Path.Combine(directory, "out");
        using var first = Child.Start(Args(output, "--steps", "100000", "--sample-every", "2", "--seed", "1"));
        first.WaitFor("step 2: sample-000002.png");

        var clock = Stopwatch.StartNew();
        using var second = Child.Start(Args(output, "--steps", "4", "--sample-every", "2", "--seed", "2"));
        string said = second.WaitForExit();
        Assert.AreEqual(1, second.ExitCode, said);
        StringAssert.Contains(said, "is in use by another run");
        StringAssert.Contains(said, Path.GetFullPath(output));
        StringAssert.Contains(said, string.Create(CultureInfo.InvariantCulture, $"process {first.Id}"));
        Assert.IsLessThan(60.0, clock.Elapsed.TotalSeconds, "fails fast");
        Assert.IsFalse(first.HasExited, "the first run goes on");

        // The first run's files are its own: its log counts 1, 2, 3… with no second run's rows in between, and its
        // checkpoints continue to the end.
        first.Kill();
        int[] steps = LogSteps(output);
        CollectionAssert.AreEqual(Enumerable.Range(1, steps.Length).ToArray(), steps);
        Assert.AreEqual(0, Run(Args(output, "--steps", (steps.Length + 2).ToString(CultureInfo.InvariantCulture), "--sample-every", "2", "--seed", "1", "--resume"), out string log), log);
    }

    [TestMethod]
    public void TheMainJobRefusesAFolderInUseBeforeWritingAnything()
    {
        // This process holds the folder as a run would (flock is per open file: the job's own open is refused too).
        string output = Path.Combine(directory, "job");
        Directory.CreateDirectory(output);
        using (var held = new FileStream(Path.Combine(output, ".lock"), FileMode.Create, FileAccess.ReadWrite, FileShare.None))
        {
            using var console = new StringWriter();
            int code = FashionMnist.FashionMnistJob.Run(new[] { "--steps", "2", "--out", output, "--data", Path.Combine(AppContext.BaseDirectory, "data", "fashion-mnist") }, console);
            Assert.AreEqual(1, code, console.ToString());
            StringAssert.Contains(console.ToString(), "Error: The output folder '" + output + "' is in use by another run");
            if (OperatingSystem.IsLinux())
            {
                StringAssert.Contains(console.ToString(), string.Create(CultureInfo.InvariantCulture, $"(process {Environment.ProcessId})"));
            }
        }

        CollectionAssert.AreEqual(new[] { ".lock" }, Directory.GetFileSystemEntries(output).Select(Path.GetFileName).ToArray(), "nothing else written");
    }

    [TestMethod]
    public void AResumeKilledAtAnyMomentKeepsEveryEarlierLogRow()
    {
        string output = Path.Combine(directory, "out");
        Assert.AreEqual(0, Run(Args(output, "--steps", "4", "--sample-every", "2"), out string log), log);
        string[] before = File.ReadAllLines(Path.Combine(output, "training-log.csv"));
        Assert.HasCount(5, before, "header and steps 1 to 4");

        // Killed as the resume starts, after it said where it continues from, and once it trains.
        foreach (string moment in new[] { "Data:", "Resuming from step 4", "% step" })
        {
            using var child = Child.Start(Args(output, "--steps", "100000", "--sample-every", "2", "--resume"));
            child.WaitFor(moment);
            child.Kill();
            string[] after = File.ReadAllLines(Path.Combine(output, "training-log.csv"));
            CollectionAssert.AreEqual(before, after.Take(before.Length).ToArray(), $"killed after '{moment}': every earlier row is kept");
            int[] steps = LogSteps(output);
            CollectionAssert.AreEqual(Enumerable.Range(1, steps.Length).ToArray(), steps, $"killed after '{moment}'");
        }

        // The killed runs may have written checkpoints beyond step 4: train two steps past the newest.
        int newest = Directory.GetFiles(Path.Combine(output, "checkpoints"), "*" + Checkpoint.Extension)
            .Max(f => int.Parse(Path.GetFileNameWithoutExtension(f)["checkpoint-".Length..], CultureInfo.InvariantCulture));
        string end = (newest + 2).ToString(CultureInfo.InvariantCulture);
        Assert.AreEqual(0, Run(Args(output, "--steps", end, "--sample-every", "2", "--resume"), out log), log);
        CollectionAssert.AreEqual(Enumerable.Range(1, newest + 2).ToArray(), LogSteps(output));
        CollectionAssert.AreEqual(before, File.ReadAllLines(Path.Combine(output, "training-log.csv")).Take(before.Length).ToArray());
    }

    [TestMethod]
    public void ACheckpointFolderDeletedDuringTheRunStopsItWithAnError()
    {
        string output = Path.Combine(directory, "out");
        string checkpoints = Path.Combine(output, "checkpoints");
        using var child = Child.Start(Args(output, "--steps", "100000", "--sample-every", "2"));
        child.WaitFor("step 2: sample-000002.png");
        for (int attempt = 0; Directory.Exists(checkpoints); attempt++)
        {
            try
            {
                Directory.Delete(checkpoints, recursive: true);
            }
            catch (IOException) when (attempt < 100)
            {
                // A checkpoint was being written meanwhile: try again.
            }
        }

        string said = child.WaitForExit();
        Assert.AreEqual(1, child.ExitCode, said);
        StringAssert.Contains(said, "Error:");
        StringAssert.Contains(said, checkpoints);
        int[] steps = LogSteps(output);
        CollectionAssert.AreEqual(Enumerable.Range(1, steps.Length).ToArray(), steps, "never started again from step 1");
    }

    [TestMethod]
    public void ADamagedNewestCheckpointIsReportedAndTheOlderIntactOneIsUsed()
    {
        string output = Path.Combine(directory, "out");
        Assert.AreEqual(0, Run(Args(output, "--steps", "4", "--sample-every", "2"), out string log), log);
        string older = Checkpoint.PathFor(Path.Combine(output, "checkpoints"), 2);
        string newest = Checkpoint.PathFor(Path.Combine(output, "checkpoints"), 4);
        byte[] bytes = File.ReadAllBytes(newest);
        bytes[bytes.Length / 2] ^= 0x40;
        File.WriteAllBytes(newest, bytes);

        Assert.AreEqual(0, Run(Args(output, "--steps", "6", "--sample-every", "2", "--resume"), out log), log);
        StringAssert.Contains(log, "Warning: Checkpoint '" + newest + "' is damaged");
        StringAssert.Contains(log, "Continuing from the older intact checkpoint '" + older + "'");
        StringAssert.Contains(log, "Resuming from step 2 of 6 (" + older + ")");
        CollectionAssert.AreEqual(Enumerable.Range(1, 6).ToArray(), LogSteps(output), "rows 3 and 4 trained again, once each in the log");
        Checkpoint.CheckIntegrity(newest.Replace("00000004", "00000006", StringComparison.Ordinal));
        Checkpoint.CheckIntegrity(newest);
        Assert.IsFalse(File.Exists(older), "the older one was replaced in turn (two kept)");

        // All damaged: refused, naming them and what to do; nothing starts again from step 0.
        foreach (string file in Directory.GetFiles(Path.Combine(output, "checkpoints")))
        {
            byte[] b = File.ReadAllBytes(file);
            b[b.Length / 2] ^= 0x40;
            File.WriteAllBytes(file, b);
        }

        string logBefore = File.ReadAllText(Path.Combine(output, "training-log.csv"));
        Assert.AreEqual(1, Run(Args(output, "--steps", "8", "--sample-every", "2", "--resume"), out log), log);
        StringAssert.Contains(log, "No intact checkpoint is left");
        StringAssert.Contains(log, "move them away");
        Assert.AreEqual(logBefore, File.ReadAllText(Path.Combine(output, "training-log.csv")));
    }

    [TestMethod]
    public void AFailedCheckpointWriteLeavesNoTemporaryFileAndAVanishedFolderIsNamed()
    {
        string folder = Path.Combine(directory, "checkpoints");
        var ex = Assert.ThrowsExactly<IOException>(() => CheckpointFile.Write(folder, 1, 2, writer =>
        {
            writer.Write(new byte[1000]);
            throw new IOException("No space left on device");
        }));
        StringAssert.Contains(ex.Message, "No space left");
        Assert.IsEmpty(Directory.GetFiles(folder), "the temporary file is removed");

        Directory.Delete(folder);
        var gone = Assert.ThrowsExactly<DirectoryNotFoundException>(() => CheckpointFile.Write(folder, 1, 2, writer => writer.Write(1), createDirectory: false));
        StringAssert.Contains(gone.Message, folder);
        Assert.IsFalse(Directory.Exists(folder), "not created again");
    }

    [TestMethod]
    public void AnEarlyFailureLeavesNoOutputFolder()
    {
        string output = Path.Combine(directory, "never");
        Assert.AreEqual(1, Run(new[] { images, "--out", output, "--size", "7", "--mults", "1,2" }, out string log), log);
        StringAssert.Contains(log, "must be divisible by 2");
        Assert.IsFalse(Directory.Exists(output), log);

        Assert.AreEqual(1, Run(new[] { Path.Combine(directory, "missing"), "--out", output }, out log), log);
        Assert.IsFalse(Directory.Exists(output), log);
    }

    private string[] Args(string output, params string[] more) =>
        new[] { images, "--out", output, "--size", "8", "--dim", "8", "--mults", "1,2", "--timesteps", "20", "--batch", "4", "--samples", "4", "--sampling-steps", "2" }
            .Concat(more).ToArray();

    private static int Run(string[] args, out string output)
    {
        using var console = new StringWriter();
        int code = FolderTrainerJob.Run(args, console);
        output = console.ToString();
        return code;
    }

    private static int[] LogSteps(string output) =>
        File.ReadAllLines(Path.Combine(output, "training-log.csv")).Skip(1)
            .Select(l => int.Parse(l.Split(',')[0], CultureInfo.InvariantCulture)).ToArray();

    /// <summary>The folder trainer in a child process, its output read as it comes.</summary>
    private sealed class Child : IDisposable
    {
        private readonly Process process;
        private readonly BlockingCollection<string> lines = new();
        private readonly List<string> seen = new();

        private Child(Process process)
        {
            this.process = process;
            process.OutputDataReceived += (_, e) => Add(e.Data);
            process.ErrorDataReceived += (_, e) => Add(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public int Id => process.Id;

        public bool HasExited => process.HasExited;

        public int ExitCode => process.ExitCode;

        public static Child Start(string[] args)
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            start.Environment["OMP_NUM_THREADS"] = "1";
            start.Environment["MKL_NUM_THREADS"] = "1";
            start.ArgumentList.Add("exec");
            start.ArgumentList.Add(typeof(RunFolderTests).Assembly.Location);
            start.ArgumentList.Add("folder-trainer");
            foreach (string a in args)
            {
                start.ArgumentList.Add(a);
            }

            return new Child(Process.Start(start)!);
        }

        /// <summary>Waits for a line that contains <paramref name="text"/>.</summary>
        public void WaitFor(string text)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < Patience)
            {
                if (lines.TryTake(out string? line, TimeSpan.FromMilliseconds(200)))
                {
                    if (line is not null && line.Contains(text, StringComparison.Ordinal))
                    {
                        return;
                    }
                }
                else if (process.HasExited && lines.Count == 0)
                {
                    break;
                }
            }

            Assert.Fail($"no line with '{text}' (exited: {process.HasExited}); the output:\n{Said()}");
        }

        /// <summary>Waits for the process to end; returns all it wrote.</summary>
        public string WaitForExit()
        {
            if (!process.WaitForExit((int)Patience.TotalMilliseconds))
            {
                process.Kill();
                Assert.Fail($"still running after {Patience}; the output:\n{Said()}");
            }

            process.WaitForExit(); // the output read to its end
            return Said();
        }

        public void Kill()
        {
            process.Kill(); // SIGKILL on Unix
            process.WaitForExit();
        }

        public void Dispose()
        {
            if (!process.HasExited)
            {
                Kill();
            }

            process.Dispose();
            lines.Dispose();
        }

        private void Add(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (seen)
            {
                seen.Add(line);
            }

            lines.Add(line);
        }

        private string Said()
        {
            lock (seen)
            {
                return string.Join('\n', seen);
            }
        }
    }
}
