using System;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Sampling;

[TestClass]
public sealed class SamplerFeatureTests : OneThreadTests
{
    private static MLContext context = null!;
    private static DiffusionSampler sampler = null!;

    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        using var oneThread = TinyModels.OneThread();
        context = new MLContext(seed: 1);
        sampler = context.Generative().Diffusion(MLNetTestData.Options(steps: 3)).Fit(MLNetTestData.Patterns(context, copies: 2));
    }

    [ClassCleanup]
    public static void Cleanup() => sampler.Dispose();

    [TestMethod]
    public void Int32UInt32AndInt64SeedColumnsGiveTheImageOfTheirValue()
    {
        string Int32Seed(int seed) => MLNetTestData.PixelHashes(sampler.Transform(context.Data.LoadFromEnumerable(new[] { new SeedRow { Seed = seed } }))).Single();
        string UInt32Seed(uint seed) => MLNetTestData.PixelHashes(sampler.Transform(context.Data.LoadFromEnumerable(new[] { new UInt32SeedRow { Seed = seed } }))).Single();
        string Int64Seed(long seed) => MLNetTestData.PixelHashes(sampler.Transform(context.Data.LoadFromEnumerable(new[] { new Int64SeedRow { Seed = seed } }))).Single();

        Assert.AreEqual(Int32Seed(5), UInt32Seed(5));
        Assert.AreEqual(Int32Seed(5), Int64Seed(5));
        Assert.AreNotEqual(Int32Seed(5), Int32Seed(6));
        // Values outside Int32 keep their value: the image is the one the core sampler makes for that seed.
        Assert.AreEqual(CoreHash(4_000_000_000L), UInt32Seed(4_000_000_000u));
        Assert.AreEqual(CoreHash(1L << 40), Int64Seed(1L << 40));
        Assert.AreNotEqual(Int64Seed(1L << 40), Int64Seed(0), "the high bits count");
    }

    [TestMethod]
    public void SampleOfNImagesUsesTheDerivedSeedOfEachIndex()
    {
        var d = sampler.Model.Diffusion;
        var ddim = new DdimScheduler { Steps = 4 };
        using var batch = d.Sample(batchSize: 3, sampler: ddim, seed: 9);
        using var expected = new SamplingLoop(ddim).Sample(d, Enumerable.Range(0, 3).Select(i => SeededNoise.DeriveSeed(9, i)).ToArray());
        Assert.IsTrue(batch.eq(expected).all().item<bool>());
        Assert.IsFalse(batch[0].eq(batch[1]).all().item<bool>(), "each image has its own seed");
        using var ancestral = d.Sample(batchSize: 2, seed: 9);
        using var ddpm = new SamplingLoop(new DdpmScheduler()).Sample(d, new[] { SeededNoise.DeriveSeed(9, 0), SeededNoise.DeriveSeed(9, 1) });
        Assert.IsTrue(ancestral.eq(ddpm).all().item<bool>(), "without a sampler: ancestral sampling through all T steps");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => d.Sample(batchSize: 0));
    }

    [TestMethod]
    public void WithoutClampingTheDenoisedEstimateIsTheRawOne()
    {
        using var d = TinyModels.Diffusion(timesteps: 20, seed: 5);
        using var trajectoryOff = new SamplingTrajectory();
        using var trajectoryOn = new SamplingTrajectory();
        var seeds = new long[] { 1, 2 };
        using var off = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 5 }, ClipDenoised = false }.CreateSamplingLoop().Sample(d, seeds, trajectory: trajectoryOff);
        using var on = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 5 } }.CreateSamplingLoop().Sample(d, seeds, trajectory: trajectoryOn);
        using var scope = NewDisposeScope();

        // The first step, from the same x_T: x̂₀ = (x_T − √(1 − ᾱ) ε̂)/√ᾱ, raw or clamped to [−1, 1].
        var xT = trajectoryOff.States[0];
        var t = full(2, 19, dtype: int64);
        var raw = d.PredictStartFromNoise(xT, t, d.ModelOutput(xT, t));
        Assert.IsTrue(raw.abs().max().item<float>() > 1.5f, "an untrained model's x̂₀ at t = T − 1 leaves [−1, 1]");
        AssertClose(raw, trajectoryOff.PredictedStarts[0], "clamping off");
        AssertClose(raw.clamp(-1, 1), trajectoryOn.PredictedStarts[0], "clamping on");
        Assert.IsTrue(off.abs().max().item<float>() > 1f, "unclamped samples may leave [−1, 1]");
        Assert.IsTrue(on.abs().max().item<float>() <= 1f);
    }

    [TestMethod]
    public void TrajectoryFramesHoldTheDenoisedEstimateOfEachCapturedState()
    {
        var d = sampler.Model.Diffusion;
        using var trajectory = new SamplingTrajectory(every: 2);
        using var images = new SamplingLoop(new DdimScheduler { Steps = 5 }).Sample(d, new long[] { 3, 4, 5 }, trajectory: trajectory);
        CollectionAssert.AreEqual(new[] { 19, 10, 0, -1 }, trajectory.Timesteps.ToArray(), "steps 0, 2 and 4 of t = 19, 14, 10, 5, 0, then the image");
        Assert.HasCount(trajectory.States.Count, trajectory.PredictedStarts);
        using var scope = NewDisposeScope();
        for (int k = 0; k < trajectory.Timesteps.Count - 1; k++)
        {
            var t = full(3, trajectory.Timesteps[k], dtype: int64);
            var expected = d.PMeanVariance(trajectory.States[k], t, clipDenoised: true).PredictedStart;
            AssertClose(expected, trajectory.PredictedStarts[k], $"frame {k}");
        }

        Assert.IsTrue(trajectory.PredictedStarts[^1].eq(images).all().item<bool>(), "the last frame is the image");
        Assert.IsFalse(trajectory.PredictedStarts[0].eq(trajectory.States[0]).all().item<bool>(), "x̂₀ is not x_t");
    }

    private static string CoreHash(long seed)
    {
        using var scope = NewDisposeScope();
        var images = sampler.Options.CreateSamplingLoop().Sample(sampler.Model.Diffusion, new[] { seed });
        var pixels = ImageConversion.ModelToPixels(images).to(ScalarType.Byte).data<byte>().ToArray();
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(pixels));
    }

    // Up to rounding: the sampler runs the network on padded chunks of 8 images, the check on the captured rows alone.
    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        double difference = (expected - actual).abs().max().item<float>();
        double scale = Math.Max(1, expected.abs().max().item<float>());
        Assert.IsTrue(difference <= 1e-4 * scale, $"{what}: max |difference| {difference:G3} at scale {scale:G3}");
    }

    public sealed class UInt32SeedRow
    {
        public uint Seed { get; set; }
    }

    public sealed class Int64SeedRow
    {
        public long Seed { get; set; }
    }
}
