using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Distributed;
using Microsoft.ML.Diffusion.Tests.Devices;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Distributed;

/// <summary>
/// NCCL on CUDA tensors. One GPU: a communicator of one rank all-reduces and broadcasts known values in this process. N
/// GPUs: mpirun -np N ranks, one per GPU, all-reduce known values and train through NCCL against one rank.
/// Inconclusive, with the reason, where there is no CUDA, no NCCL, or fewer than two GPUs.
/// </summary>
[TestClass]
[TestCategory("Device")]
public sealed class NcclDeviceTests
{
    [TestMethod]
    [DataRow("cuda")]
    public void OneRankAllReducesAndBroadcastsOnTheGpu(string name)
    {
        var device = TestDevice.Require(name);
        using var owner = new SingleProcessCommunicator();
        NcclBackend nccl;
        try
        {
            nccl = NcclBackend.Create(owner, device);
        }
        catch (CollectiveException ex) when (ex.Message.Contains("could not be loaded", StringComparison.Ordinal))
        {
            Assert.Inconclusive("Not run: " + ex.Message);
            return;
        }

        using (nccl)
        {
            using var values = tensor(Enumerable.Range(1, 1000).Select(i => (float)i).ToArray(), device: device);
            using var expected = values.clone();
            nccl.AllReduce(values, ReduceOperation.Sum);
            Assert.IsTrue(TestDevice.Same(expected, values), "a sum over one rank is the identity");
            nccl.AllReduce(values, ReduceOperation.Average);
            Assert.IsTrue(TestDevice.Same(expected, values));
            nccl.Broadcast(values, 0);
            Assert.IsTrue(TestDevice.Same(expected, values));
            Console.WriteLine($"NCCL version code {nccl.Version} on {device}");
        }
    }

    [TestMethod]
    [DataRow("cuda")]
    public void RanksOnSeveralGpusAllReduceAndTrainLikeOne(string name)
    {
        TestDevice.Require(name);
        int gpus = cuda.device_count();
        if (gpus < 2)
        {
            Assert.Inconclusive($"Not run: NCCL between ranks needs one GPU per rank; this machine has {gpus}.");
        }

        MpiRun.RequireMpirun();
        int ranks = Math.Min(gpus, 8);
        var run = MpiRun.Ranks(ranks, null, "dist-collectives", "device=cuda");
        Assert.AreEqual(0, run.ExitCode, run.All);
        float n = ranks;
        string sum = string.Join(",", Enumerable.Range(1, 5).Select(i => (i * n * (n + 1) / 2).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Assert.AreEqual(ranks, run.Lines("rank ").Count(l => l.Contains("sum " + sum, StringComparison.Ordinal)), run.Output);

        string root = System.IO.Directory.CreateTempSubdirectory("mldiffusion-nccl-").FullName;
        var one = MpiRun.Single(null, "dist-train", System.IO.Path.Combine(root, "one"), "10", "8", "device=cuda");
        var many = MpiRun.Ranks(2, null, "dist-train", System.IO.Path.Combine(root, "two"), "10", "8", "device=cuda");
        Assert.AreEqual(0, one.ExitCode, one.All);
        Assert.AreEqual(0, many.ExitCode, many.All);
        Console.WriteLine(one.Output + many.Output);
    }
}
