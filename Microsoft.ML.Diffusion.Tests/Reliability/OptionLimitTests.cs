using System;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using FolderTrainer;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Tests.MLNet;
using Microsoft.ML.Diffusion.Tests.Samples;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>
/// Absurd option values and combinations (issue #23), as a careless or hostile user gives them to the programs and the
/// API: each is refused before anything large is allocated and before anything is written to the output folder, in one
/// line that names the option, the value and the limit (or the estimated size and the memory available), with a
/// non-zero exit code and no stack trace. The memory cases run the folder trainer in a child process whose peak resident
/// memory is measured (and bounded: a regression is killed, not left to take the machine).
/// </summary>
[TestClass]
public sealed class OptionLimitTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);
    private string directory = null!;
    private string images = null!;
    private string output = null!;

    [TestInitialize]
    public void CreateFolder()
    {
        directory = Directory.CreateTempSubdirectory("mldiffusion-limits-").FullName;
        images = Path.Combine(directory, "images");
        FolderTrainerTests.WriteImages(images, rgb: false);
        output = Path.Combine(directory, "out");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "keep.txt"), "a file of the user's, there before the run");
    }

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(directory, recursive: true);

    [TestMethod]
    public void SizesThatCannotFitAreRefusedBeforeAllocatingWithTheEstimateAndTheMemoryAvailable()
    {
        // Before: --batch 1000000 on a few images, and a network of billions of parameters, allocated gigabytes before
        // step 1 (killed by the watchdog at 3 GB: docs/reliability-runs/limits-before.txt).
        foreach (var (option, value, says) in new[]
        {
            ("--batch", "1000000", "1,000,000 images per pass"),
            ("--dim", "2048", "2,876,611,585 parameters"),
            ("--size", "8192", "data: 12 images"),
        })
        {
            var before = ProgramRun.Snapshot(images, output);
            var run = ProgramRun.FolderTrainer(maxMiB: 1024, Patience, Args(option, value));
            Assert.AreEqual(1, run.ExitCode, run.Output);
            StringAssert.Contains(run.Output, $"{option} {value}", "the option and its value are named");
            StringAssert.Contains(run.Output, "needs about", run.Output);
            StringAssert.Contains(run.Output, says, run.Output);
            StringAssert.Contains(run.Output, "of memory is available", run.Output);
            Assert.IsEmpty(run.StackTraceLines, run.Output);
            Assert.IsLessThan(1024.0, run.PeakMiB, $"{option} {value}: peak {run.PeakMiB:F0} MiB");
            CollectionAssert.AreEqual(before, ProgramRun.Snapshot(images, output), $"{option} {value}: the files are untouched");
            CollectionAssert.AreEqual(new[] { "keep.txt" }, Directory.GetFileSystemEntries(output).Select(Path.GetFileName).ToArray(), "nothing written to --out");
        }
    }

    [TestMethod]
    public void ValuesOutOfRangeNameTheOptionTheValueAndTheLimit()
    {
        var before = ProgramRun.Snapshot(images, output);
        foreach (var (option, value, says) in new[]
        {
            ("--steps", "99999999999999", "--steps expects a positive integer of at most 1000000000; got '99999999999999'."),
            ("--size", "100000", "--size expects a positive integer of at most 8192; got '100000'."),
            ("--timesteps", "10000000", "--timesteps expects an integer in [2, 100000]; got '10000000'."),
            ("--dim", "100000", "--dim expects a positive integer of at most 16384; got '100000'."),
            ("--batch", "2000000", "--batch expects a positive integer of at most 1048576; got '2000000'."),
            ("--minutes", "1e300", "--minutes expects a positive number of at most 1000000; got '1e300'."),
            ("--samples", "100000000", "--samples expects a positive integer of at most 1024; got '100000000'."),
            ("--mults", "1,2,100000", "--mults expects a comma-separated list of at most 16 positive integers of at most 16384"),
        })
        {
            string said = RunFolderTrainer(2, Args(option, value));
            StringAssert.StartsWith(said, says, said);
        }

        // The main job: its own limits (T is 1,000 there; the Fréchet distance compares at most the test split).
        StringAssert.StartsWith(RunJob(2, "--sampling-steps", "100000"), "--sampling-steps expects a positive integer of at most 1000; got '100000'.");
        StringAssert.StartsWith(RunJob(2, "--metric-images", "100000000"), "--metric-images expects an integer in [2, 10000]; got '100000000'.");
        StringAssert.StartsWith(RunJob(2, "--experiment", "1e300"), "--experiment expects a positive number of at most 1000000; got '1e300'.");
        CollectionAssert.AreEqual(before, ProgramRun.Snapshot(images, output));
    }

    [TestMethod]
    public void CombinationsThatUsedToFailLateFailBeforeAnythingIsWritten()
    {
        // Before: --sampling-steps above T was refused at the first milestone, after training (the main job: with a stack
        // trace); now before the folder is read.
        var before = ProgramRun.Snapshot(images, output);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string said = RunFolderTrainer(1, Args("--sampling-steps", "100"));
        StringAssert.Contains(said, "Error: --sampling-steps:");
        StringAssert.Contains(said, "ddim with 100 steps needs at least as many diffusion timesteps; the model has 20");
        Assert.IsFalse(said.Contains("Data:", StringComparison.Ordinal), "refused before the folder is read:\n" + said);

        said = RunFolderTrainer(1, Args("--samples", "1000", "--size", "1024"));
        StringAssert.Contains(said, "--samples 1000 at --size 1024 makes a sample grid over 32768 pixels wide; the limit is 16384");
        StringAssert.Contains(said, "at most 256 samples at this size");

        StringAssert.Contains(RunFolderTrainer(1, Args("--device", "tpu")), "Error: --device: Unknown device \"tpu\"");
        StringAssert.Contains(RunFolderTrainer(1, Args("--mults", "1,2,4", "--size", "6")), "Error: --size: The image size 6×6 is not divisible by 4");
        StringAssert.Contains(RunJob(1, "--minutes", "1e-300"), "Error: --minutes: MaxTrainingTime must be positive.");
        StringAssert.Contains(RunJob(1, "--device", "tpu"), "Error: --device: Unknown device \"tpu\"");
        StringAssert.Contains(RunJob(1, "--data", images), "Error: No IDX files");
        string file = Path.Combine(output, "keep.txt");
        StringAssert.Contains(RunFolderTrainer(1, new[] { images, "--out", file, "--size", "8" }), $"Error: --out '{file}' is a file, not a folder");
        Assert.IsLessThan(60.0, clock.Elapsed.TotalSeconds, "each is refused in a second or so");
        CollectionAssert.AreEqual(before, ProgramRun.Snapshot(images, output));
        CollectionAssert.AreEqual(new[] { "keep.txt" }, Directory.GetFileSystemEntries(output).Select(Path.GetFileName).ToArray(), "nothing written to --out");
    }

    [TestMethod]
    public void AnOptionGivenTwiceIsRefusedByEveryProgram()
    {
        // The choice (docs/reliability.md): refused, exit code 2 in the samples, naming the option and both values; the
        // benchmarks refuse it too, in their own words.
        StringAssert.StartsWith(RunFolderTrainer(2, new[] { images, "--out", output, "--size", "8", "--size", "16" }), "--size is given twice ('8', then '16'): give it once.");
        StringAssert.StartsWith(RunFolderTrainer(2, new[] { images, "--out", output, "--size=8", "--size", "16", "--size", "32" }), "--size is given 3 times ('8', then '16', then '32'): give it once.");
        StringAssert.StartsWith(RunFolderTrainer(2, new[] { images, "--out", output, "--resume", "--resume" }), "--resume is given more than once: give it once.");
        StringAssert.StartsWith(RunJob(2, "--seed", "1", "--seed", "2"), "--seed is given twice ('1', then '2'): give it once.");
        foreach (var (project, args) in new[]
        {
            ("Microsoft.ML.Diffusion.Benchmarks", new[] { "--batch", "2", "--batch", "4" }),
            ("StreamingMemory", new[] { "--rows", "1", "--rows", "2" }),
            ("SamplerQuality", new[] { "model.zip", "classifier.bin", "idx", "--device", "cpu", "--device", "cuda" }),
        })
        {
            var run = ProgramRun.Benchmark(project, 1024, Patience, args);
            if (run is null)
            {
                Assert.Inconclusive($"{project} is not built next to the tests (build the solution).");
            }

            Assert.AreNotEqual(0, run.ExitCode, run.Output);
            StringAssert.Contains(run.Output, $"{args[^2]} is given more than once: give it once.", project);
            Assert.IsEmpty(run.StackTraceLines, run.Output);
        }
    }

    [TestMethod]
    public void TheApiRefusesARunThatCannotFitBeforeReadingTheDataOrBuildingTheNetwork()
    {
        var mlContext = new MLContext(seed: 1);
        var options = MLNetTestData.Options(steps: 2);
        options.BatchSize = 1_000_000;
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var ex = Assert.ThrowsExactly<InsufficientMemoryException>(() => mlContext.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(mlContext)));
        StringAssert.Contains(ex.Message, "Training needs about");
        StringAssert.Contains(ex.Message, "1,000,000 images per pass");
        StringAssert.Contains(ex.Message, "lower BatchSize (or set MicroBatchSize)");
        Assert.IsLessThan(64L << 20, GC.GetAllocatedBytesForCurrentThread() - allocated, "refused before anything large is allocated");
        Assert.IsLessThan(30.0, clock.Elapsed.TotalSeconds);

        // The estimate: the network's own parameter count; a micro-batch bounds the activations; an unknown row count
        // leaves the data out.
        options.MicroBatchSize = 4;
        var estimate = options.EstimateMemory(imageCount: 0);
        Assert.AreEqual(options.Network.CountParameters(), estimate.ParameterCount);
        Assert.AreEqual(4, estimate.ImagesPerPass);
        Assert.AreEqual(0L, estimate.DataBytes);
        Assert.IsTrue(estimate.ActivationsKnown);

        // The sampler of the trained model must fit its schedule: refused by Validate (before, after training).
        options.MicroBatchSize = null;
        options.BatchSize = 8;
        options.Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 21 } };
        var late = Assert.ThrowsExactly<ArgumentOutOfRangeException>(options.Validate);
        Assert.AreEqual("Sampling", late.ParamName);
        StringAssert.Contains(late.Message, "the model has 20");
        options.Sampling = new DiffusionSamplerOptions { MicroBatchSize = 5_000_000 };
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(options.Validate).Message, "MicroBatchSize must be in [1, 4096]; got 5000000");
    }

    [TestMethod]
    public void LibtorchsAllocationFailureIsSaidInOneSentenceWithTheSize()
    {
        // 2^50 float32 values (4 PiB): more than any address space, so malloc refuses at once and nothing is allocated.
        var ex = Assert.Throws<ExternalException>(() => empty(new long[] { 1L << 50 }, dtype: float32).Dispose());
        string? said = TrainingMemoryEstimate.DescribeNativeOutOfMemory(ex);
        Assert.IsNotNull(said, ex.Message);
        Assert.AreEqual("libtorch could not allocate 4096 TiB on the CPU (the system refused the allocation)", said);
        Assert.IsNull(TrainingMemoryEstimate.DescribeNativeOutOfMemory(new InvalidOperationException("something else")));
    }

    private string[] Args(params string[] overrides)
    {
        // The small settings of the other folder-trainer tests, with the case's own values in their place (an option given
        // twice is refused).
        var settings = new System.Collections.Generic.Dictionary<string, string>
        {
            ["--size"] = "8", ["--dim"] = "8", ["--mults"] = "1,2", ["--timesteps"] = "20", ["--batch"] = "4",
            ["--samples"] = "4", ["--sampling-steps"] = "2", ["--steps"] = "2", ["--sample-every"] = "2",
        };
        for (int i = 0; i + 1 < overrides.Length; i += 2)
        {
            settings[overrides[i]] = overrides[i + 1];
        }

        return new[] { images, "--out", output }.Concat(settings.SelectMany(p => new[] { p.Key, p.Value })).ToArray();
    }

    private static string RunFolderTrainer(int expectedExitCode, string[] args)
    {
        using var console = new StringWriter();
        int code = FolderTrainerJob.Run(args, console);
        Assert.AreEqual(expectedExitCode, code, console.ToString());
        Assert.IsFalse(console.ToString().Contains("   at ", StringComparison.Ordinal), console.ToString());
        return console.ToString().Trim();
    }

    private string RunJob(int expectedExitCode, params string[] args)
    {
        using var console = new StringWriter();
        var all = new[] { "--out", output, "--no-metrics" }.Concat(args).ToArray();
        if (!args.Contains("--steps") && !args.Contains("--minutes"))
        {
            all = all.Concat(new[] { "--steps", "2" }).ToArray();
        }

        int code = FashionMnist.FashionMnistJob.Run(all, console);
        Assert.AreEqual(expectedExitCode, code, console.ToString());
        return console.ToString().Trim();
    }
}
