using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Distributed;

/// <summary>
/// Data-parallel training over MPI ranks (mpirun --oversubscribe -np 2 on this machine's CPU), against one plain process:
/// the tiny conditional U-Net with label dropout and random flips, global batch 8.
/// </summary>
[TestClass]
public sealed class DistributedTrainingTests
{
    // Float rounding of a sum split over two ranks, after 20 AdamW steps: measured 2.1e-6 at most on this machine.
    private const double Tolerance = 1e-4;

    private string root = string.Empty;

    [TestInitialize]
    public void Setup() => root = Directory.CreateTempSubdirectory("mldiffusion-dist-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(root, recursive: true);

    [TestMethod]
    public void TwoRanksWithHalfBatchesEndAtTheWeightsOfOneRank()
    {
        MpiRun.RequireMpirun();
        var one = Train(1, "one", 20, 8);
        var two = Train(2, "two", 20, 8);
        double difference = MaxDifference(one, two);
        Console.WriteLine(FormattableString.Invariant($"1 rank × 8 vs 2 ranks × 4, 20 steps: max |Δw| = {difference:G3} over {one.Length} weights"));
        Assert.IsTrue(difference < Tolerance, FormattableString.Invariant($"max |Δw| {difference:G3}"));

        // The comparison can fail: one rank with a batch of 4 (other draws, other data) ends far away.
        var other = Train(1, "other", 20, 4);
        Assert.IsTrue(MaxDifference(one, other) > 100 * Tolerance, "a different run must differ");
    }

    [TestMethod]
    public void KilledRankStopsTheJobNamingItAndResumeReachesTheUninterruptedWeights()
    {
        MpiRun.RequireMpirun();
        var straight = Train(2, "straight", 12, 8, "checkpoint-every=5");

        string folder = Path.Combine(root, "killed");
        var killed = MpiRun.Ranks(2, null, "dist-train", folder, "12", "8", "checkpoint-every=5", "kill-at=7");
        Console.WriteLine(killed.All);
        Assert.AreNotEqual(0, killed.ExitCode, "the job must fail");
        StringAssert.Contains(killed.All, "rank 1", "the failure must name the rank");
        Assert.IsTrue(killed.Elapsed < TimeSpan.FromSeconds(60), $"the job took {killed.Elapsed} to stop");
        Assert.IsFalse(File.Exists(Path.Combine(folder, "weights.bin")), "no result may be written by a failed run");
        string[] checkpoints = Directory.GetFiles(Path.Combine(folder, "checkpoints"));
        CollectionAssert.AreEqual(new[] { "checkpoint-00000005.ckpt" }, checkpoints.Select(Path.GetFileName).ToArray(), "only the checkpoint of step 5, no temporary file");
        foreach (string checkpoint in checkpoints)
        {
            Checkpoint.CheckIntegrity(checkpoint);
        }

        var resumed = MpiRun.Ranks(2, null, "dist-train", folder, "12", "8", "checkpoint-every=5", "resume");
        Assert.AreEqual(0, resumed.ExitCode, resumed.All);
        CollectionAssert.AreEqual(straight, Weights(folder), "resuming with the same ranks must continue exactly");
    }

    [TestMethod]
    public void HungRankIsNamedWithinTheTimeout()
    {
        MpiRun.RequireMpirun();
        var environment = new Dictionary<string, string> { ["MLDIFFUSION_COLLECTIVE_TIMEOUT"] = "4" };
        var hung = MpiRun.Ranks(2, environment, "dist-train", Path.Combine(root, "hung"), "12", "8", "checkpoint-every=5", "stall-at=7");
        Console.WriteLine(hung.All);
        Assert.AreNotEqual(0, hung.ExitCode);
        StringAssert.Contains(hung.Error, "rank 1 did not reach 'step 8' within 4 s");
        Assert.IsTrue(hung.Elapsed < TimeSpan.FromSeconds(60), $"the job took {hung.Elapsed} to stop");
        Checkpoint.CheckIntegrity(Path.Combine(root, "hung", "checkpoints", "checkpoint-00000005.ckpt"));
    }

    [TestMethod]
    public void ResumeWithAnotherNumberOfRanksContinuesFromTheSameStepAndData()
    {
        MpiRun.RequireMpirun();
        var straight = Train(1, "straight", 12, 8);
        string folder = Path.Combine(root, "switched");
        var first = MpiRun.Ranks(2, null, "dist-train", folder, "6", "8", "checkpoint-every=6");
        Assert.AreEqual(0, first.ExitCode, first.All);
        var second = MpiRun.Single(null, "dist-train", folder, "12", "8", "checkpoint-every=6", "resume");
        Assert.AreEqual(0, second.ExitCode, second.All);
        StringAssert.Contains(second.Output, "trained 12 steps on 1 rank(s)");
        double difference = MaxDifference(straight, Weights(folder));
        Console.WriteLine(FormattableString.Invariant($"2 ranks to step 6, then 1 rank to 12, vs 1 rank to 12: max |Δw| = {difference:G3}"));
        Assert.IsTrue(difference < Tolerance, FormattableString.Invariant($"max |Δw| {difference:G3}"));
    }

    [TestMethod]
    public void OptionsThatDifferBetweenRanksAreRefusedNamingTheSetting()
    {
        MpiRun.RequireMpirun();
        var run = MpiRun.Ranks(2, null, "dist-train", Path.Combine(root, "lr"), "4", "8", "lr-rank1=0.01");
        Assert.AreNotEqual(0, run.ExitCode);
        StringAssert.Contains(run.Error, "The training options differ between ranks: rank 1 differs from rank 0 ('lr 0.002' on rank 0, 'lr 0.01' on rank 1)");
        Assert.IsFalse(Directory.Exists(Path.Combine(root, "lr", "checkpoints")) && Directory.GetFiles(Path.Combine(root, "lr", "checkpoints")).Length > 0);
    }

    [TestMethod]
    public void MissingMpiWithSeveralRanksAnnouncedGivesOneLineNamingWhatToInstall()
    {
        var environment = new Dictionary<string, string>
        {
            ["OMPI_COMM_WORLD_SIZE"] = "2",
            ["OMPI_COMM_WORLD_RANK"] = "0",
            ["MLDIFFUSION_MPI_LIBRARY"] = "libmpi-not-installed.so.99",
        };
        var run = MpiRun.Single(environment, "dist-train", Path.Combine(root, "nompi"), "4", "8");
        Assert.AreEqual(1, run.ExitCode, run.All);
        string[] lines = run.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.AreEqual(1, lines.Length, run.Error);
        StringAssert.Contains(lines[0], "MPI is needed (the environment says this is rank 0 of 2: OMPI_COMM_WORLD_SIZE is set)");
        StringAssert.Contains(lines[0], "apt-get install openmpi-bin libopenmpi-dev");
    }

    [TestMethod]
    public void OneProcessNeedsNoMpi()
    {
        // No launcher variables and no loadable MPI: a world of 1, trained as before.
        var environment = new Dictionary<string, string> { ["MLDIFFUSION_MPI_LIBRARY"] = "libmpi-not-installed.so.99" };
        var run = MpiRun.Single(environment, "dist-train", Path.Combine(root, "plain"), "2", "8");
        Assert.AreEqual(0, run.ExitCode, run.All);
        StringAssert.Contains(run.Output, "trained 2 steps on 1 rank(s)");
    }

    private static double MaxDifference(float[] a, float[] b)
    {
        Assert.AreEqual(a.Length, b.Length);
        return a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();
    }

    private static float[] Weights(string folder)
    {
        byte[] bytes = File.ReadAllBytes(Path.Combine(folder, "weights.bin"));
        var weights = new float[bytes.Length / sizeof(float)];
        Buffer.BlockCopy(bytes, 0, weights, 0, bytes.Length);
        return weights;
    }

    private float[] Train(int ranks, string name, int steps, int batch, params string[] extra)
    {
        string folder = Path.Combine(root, name);
        string[] args = new[] { "dist-train", folder, steps.ToString(CultureInfo.InvariantCulture), batch.ToString(CultureInfo.InvariantCulture) }.Concat(extra).ToArray();
        var run = ranks == 1 ? MpiRun.Single(null, args) : MpiRun.Ranks(ranks, null, args);
        Assert.AreEqual(0, run.ExitCode, run.All);
        return Weights(folder);
    }
}
