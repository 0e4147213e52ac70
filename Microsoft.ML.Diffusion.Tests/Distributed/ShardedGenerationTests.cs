using System;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Distributed;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Distributed;

/// <summary>Generation split over MPI ranks or over independent jobs (--shard i/N) gives the bytes of one process.</summary>
[TestClass]
public sealed class ShardedGenerationTests
{
    [TestMethod]
    public void RanksAndShardsGiveTheBytesOfOneProcess()
    {
        MpiRun.RequireMpirun();
        string root = Directory.CreateTempSubdirectory("mldiffusion-shard-").FullName;
        try
        {
            string model = Path.Combine(root, "model.zip");
            var mlContext = new MLContext(seed: 1);
            var options = MLNetTestData.Options(3);
            using (var sampler = mlContext.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(mlContext, copies: 4)))
            {
                sampler.Save(mlContext, model);
            }

            const string Count = "11"; // not a multiple of 2 or 3: shards of unequal size
            var one = MpiRun.Single(null, "dist-generate", model, Count);
            Assert.AreEqual(0, one.ExitCode, one.All);
            string[] expected = one.Lines("image ").ToArray();
            Assert.AreEqual(11, expected.Length);
            Assert.AreEqual(11, expected.Select(l => l.Split(' ')[2]).Distinct().Count(), "every seed its own image");

            var ranks = MpiRun.Ranks(2, null, "dist-generate", model, Count);
            Assert.AreEqual(0, ranks.ExitCode, ranks.All);
            CollectionAssert.AreEqual(expected, ranks.Lines("image ").ToArray(), "2 ranks, merged by rank 0");

            var shards = Enumerable.Range(0, 3).SelectMany(i =>
            {
                var run = MpiRun.Single(null, "dist-generate", model, Count, $"shard={i}/3");
                Assert.AreEqual(0, run.ExitCode, run.All);
                return run.Lines("image ");
            }).ToArray();
            CollectionAssert.AreEqual(expected, shards, "3 independent jobs --shard i/3");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [TestMethod]
    public void ShardsCoverEveryItemOnce()
    {
        foreach (int total in new[] { 0, 1, 7, 64, 1001 })
        {
            foreach (int count in new[] { 1, 2, 3, 8, 13 })
            {
                var items = Enumerable.Range(0, count).SelectMany(i =>
                {
                    var (start, end) = new SeedShard(i, count).Range(total);
                    return Enumerable.Range(start, end - start);
                }).ToArray();
                CollectionAssert.AreEqual(Enumerable.Range(0, total).ToArray(), items, $"{total} items in {count} shards");
            }
        }

        Assert.AreEqual(new SeedShard(3, 8), SeedShard.Parse("3/8"));
        foreach (string bad in new[] { "8/8", "-1/4", "1", "a/b", "1/0", "1/2/3" })
        {
            Assert.ThrowsExactly<FormatException>(() => SeedShard.Parse(bad), bad);
        }
    }

    [TestMethod]
    public void RanksAreReadFromTheLaunchersVariables()
    {
        static RankEnvironment Read(params (string Name, string Value)[] variables) =>
            RankEnvironment.Read(name => variables.FirstOrDefault(v => v.Name == name).Value);

        Assert.AreEqual(new RankEnvironment(0, 1, 0, "none"), Read());
        Assert.AreEqual(new RankEnvironment(3, 8, 1, "OMPI_COMM_WORLD_SIZE"), Read(("OMPI_COMM_WORLD_SIZE", "8"), ("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1")));
        Assert.AreEqual(new RankEnvironment(5, 6, 2, "PMI_SIZE"), Read(("PMI_SIZE", "6"), ("PMI_RANK", "5"), ("MPI_LOCALRANKID", "2")));
        Assert.AreEqual(1, Collective.World.WorldSize, "the test host is one plain process");
    }
}
