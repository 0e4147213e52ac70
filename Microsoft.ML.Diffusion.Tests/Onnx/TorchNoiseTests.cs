using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Onnx;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Onnx;

/// <summary>The deploy-only package draws x_T from a seed as TorchSharp's CPU generator does (MT19937 + libtorch's normal fill).</summary>
[TestClass]
public sealed class TorchNoiseTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void ManagedNoiseIsTorchSharpsNoiseForManySeedsAndShapes()
    {
        var shapes = new[]
        {
            new long[] { 1, 8, 8 }, new long[] { 1, 28, 28 }, new long[] { 3, 32, 32 }, new long[] { 3, 5, 7 }, new long[] { 16 },
            new long[] { 17 }, new long[] { 1, 2, 3 }, new long[] { 1, 1, 1 }, new long[] { 15 }, new long[] { 3, 64, 64 },
        };
        var seeds = new long[] { 0, 1, 2, 7, 42, 4_294_967_295, 4_294_967_296, -1, long.MaxValue, long.MinValue }
            .Concat(Enumerable.Range(0, 40).Select(i => SeededNoise.DeriveSeed(123, i))).ToArray();
        double worst = 0;
        int exact = 0, total = 0;
        foreach (var shape in shapes)
        {
            int count = (int)shape.Aggregate(1L, (a, b) => a * b);
            foreach (long seed in seeds)
            {
                using var generator = new Generator(SeededNoise.GeneratorSeed(seed), CPU);
                using var expected = DeviceRandom.Normal(shape, CPU, ScalarType.Float32, generator);
                float[] reference = expected.data<float>().ToArray();
                float[] managed = TorchNoise.Normal(seed, count);
                for (int i = 0; i < count; i++)
                {
                    double d = Math.Abs(reference[i] - managed[i]);
                    worst = Math.Max(worst, d);
                    exact += d == 0 ? 1 : 0;
                    total++;
                }
            }
        }

        TestContext.WriteLine($"{total} values, {exact} bit-identical, max |difference| {worst:E2}");
        Assert.IsTrue(worst <= 2e-6, $"managed x_T differs from TorchSharp's by up to {worst:E2}");
        Assert.IsTrue(exact > total * 0.5, $"only {exact} of {total} values are bit-identical: not the same generator");
    }

    [TestMethod]
    public void SeedsFoldAndDeriveAsTheLibraryDoes()
    {
        foreach (long seed in new long[] { 0, 5, -3, long.MaxValue, 1L << 40, 123_456_789_012 })
        {
            Assert.AreEqual(SeededNoise.GeneratorSeed(seed), (ulong)TorchNoise.GeneratorSeed(seed));
            Assert.AreEqual(SeededNoise.DeriveSeed(seed, 3), TorchNoise.DeriveSeed(seed, 3));
        }
    }
}
