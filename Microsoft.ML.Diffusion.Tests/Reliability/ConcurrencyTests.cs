using System;
using System.Collections.Generic;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>One sampler used from 8 threads at once gives the bytes that sequential use gives.</summary>
[TestClass]
public sealed class ConcurrencyTests
{
    private const int Threads = 8;

    [TestMethod]
    public void OneSamplerUsedFromEightThreadsGivesTheSequentialImages()
    {
        var mlContext = new MLContext(seed: 1);
        var config = TinyModelFile.Config();
        config.Diffusion.Network.ClassCount = 2;
        config.Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 2, Eta = 0.5 } };
        using var sampler = TinyModelFile.Sampler(mlContext, config);
        var seeds = mlContext.Data.LoadFromEnumerable(Enumerable.Range(0, 8).Select(i => new SeedRow { Seed = 100 + i }).ToList());
        // Threads 0–3 call Generate with their own run seed (labelled, with guidance: both network passes), threads 4–7 read a
        // cursor of their own transform, which generates unconditionally.
        string Work(int thread) => thread < Threads / 2
            ? Hash(sampler.Generate(4, new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 2, Eta = 0.5 }, Seed = thread, GuidanceScale = 2 }, label: thread % 2).Select(PixelsOf))
            : Hash(MLNetTestData.Pixels(sampler.Transform(seeds)).Select(p => p.Select(v => (byte)v).ToArray()));

        string[] sequential = Enumerable.Range(0, Threads).Select(Work).ToArray();
        Assert.AreEqual(Threads / 2, sequential.Take(Threads / 2).Distinct().Count(), "different run seeds give different images");

        for (int round = 0; round < 3; round++)
        {
            CollectionAssert.AreEqual(sequential, RunConcurrently(Work), $"round {round}");
        }
    }

    [TestMethod]
    public void ConcurrentCursorsOfAFreshTransformAgreeWithEachOther()
    {
        // Every cursor asks for the images before any exists: the first generation must be shared, not raced.
        var mlContext = new MLContext(seed: 1);
        var config = TinyModelFile.Config();
        using var sampler = TinyModelFile.Sampler(mlContext, config);
        var seeds = mlContext.Data.LoadFromEnumerable(Enumerable.Range(0, 9).Select(i => new SeedRow { Seed = i }).ToList());
        string expected = Hash(MLNetTestData.Pixels(sampler.Transform(seeds)).Select(p => p.Select(v => (byte)v).ToArray()));
        var transformed = sampler.Transform(seeds);
        var results = RunConcurrently(_ => Hash(MLNetTestData.Pixels(transformed).Select(p => p.Select(v => (byte)v).ToArray())));
        CollectionAssert.AreEqual(Enumerable.Repeat(expected, Threads).ToArray(), results);
    }

    /// <summary>Starts <see cref="Threads"/> threads at once (a barrier), each running <paramref name="work"/>; fails on any exception.</summary>
    private static string[] RunConcurrently(Func<int, string> work)
    {
        var results = new string[Threads];
        var errors = new List<Exception>();
        using var start = new Barrier(Threads);
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                results[t] = work(t);
            }
#pragma warning disable CA1031 // collected and reported below
            catch (Exception ex)
#pragma warning restore CA1031
            {
                lock (errors)
                {
                    errors.Add(ex);
                }
            }
        })).ToArray();
        Array.ForEach(threads, t => t.Start());
        Array.ForEach(threads, t => t.Join());
        Assert.IsEmpty(errors, string.Join("\n", errors));
        return results;
    }

    private static byte[] PixelsOf(MLImage image) => image.GetBGRPixels.ToArray();

    private static string Hash(IEnumerable<byte[]> images) =>
        string.Join(",", images.Select(i => Convert.ToHexString(SHA256.HashData(i))[..16]));
}
