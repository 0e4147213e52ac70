using System;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Export;
using Microsoft.ML.Diffusion.Onnx;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Onnx;

/// <summary>
/// Deployment without TorchSharp: the deploy-only generator and ML.NET's <c>ApplyOnnxModel</c> give, for the same seeds,
/// the pixels the TorchSharp <see cref="DiffusionSampler"/> gives (each pixel within 1 of 255, almost all equal).
/// </summary>
[TestClass]
public sealed class OnnxDeployTests
{
    public TestContext TestContext { get; set; } = null!;

    internal static DiffusionModelConfig Config(DiffusionScheduler scheduler, double guidance) => new()
    {
        Diffusion = new GaussianDiffusionOptions
        {
            ImageHeight = 8,
            ImageWidth = 8,
            Schedule = BetaSchedule.Cosine,
            Timesteps = 100,
            Objective = PredictionTarget.Velocity,
            Variance = VarianceType.FixedSmall,
            Network = TinyModels.Options(classCount: 3),
        },
        ClassNames = new[] { "a", "b", "c" },
        Sampling = new DiffusionSamplerOptions { Scheduler = scheduler, GuidanceScale = guidance },
    };

    private static DiffusionSampler Sampler(MLContext mlContext, DiffusionModelConfig config)
    {
        var diffusion = config.Diffusion.CreateDiffusion();
        OnnxTestModels.Perturb(diffusion.Model, 9);
        diffusion.eval();
        return new DiffusionSampler(mlContext, new DiffusionModel(config, diffusion));
    }

    [TestMethod]
    public void TheDeployOnlyGeneratorGivesTheSamplersPixelsForTheSameSeeds()
    {
        using var one = TinyModels.OneThread();
        var mlContext = new MLContext(seed: 1);
        using var sampler = Sampler(mlContext, Config(new DpmSolverScheduler { Steps = 20 }, guidance: 2));
        string file = Path.Combine(Path.GetTempPath(), $"mldiff-onnx-{Guid.NewGuid():N}.onnx");
        try
        {
            sampler.ExportOnnx(file);
            var seeds = Enumerable.Range(0, 10).Select(i => TorchNoise.DeriveSeed(77, i)).ToArray();
            var labels = new[] { 0, 1, 2, -1, 0, 1, 2, -1, 2, 2 };
            var expected = sampler.Model.GeneratePixels(seeds, labels, sampler.Options);
            using var generator = new OnnxDiffusionGenerator(file, OnnxTestModels.CpuOptions());
            Assert.AreEqual("[\"a\",\"b\",\"c\"]", generator.Metadata[OnnxMetadataKeys.ClassNames]);
            var actual = generator.GeneratePixels(seeds, labels, guidanceScale: 2f);
            AssertSamePixels(expected, actual);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [TestMethod]
    public void ApplyOnnxModelGeneratesTheSamplersPixelsInAProcessWithNoTorchSharp()
    {
        using var one = TinyModels.OneThread();
        var mlContext = new MLContext(seed: 1);
        using var sampler = Sampler(mlContext, Config(new DdimScheduler { Steps = 20 }, guidance: 2));
        string file = Path.Combine(Path.GetTempPath(), $"mldiff-onnx-{Guid.NewGuid():N}.onnx");
        try
        {
            sampler.ExportOnnx(file, new OnnxExportOptions { Scheduler = new DdimScheduler { Steps = 20 }, Loop = OnnxSamplerLoop.Loop });
            long[] seeds = { 3, 1_000_000_007, 42, 5 };
            int[] labels = { 0, 2, 3, 1 }; // 3 = the class count = no label
            var expected = sampler.Model.GeneratePixels(seeds, labels, sampler.Options);
            var lines = ChildProcess.Run(new[] { "onnx-pipeline", file }.Concat(seeds.Zip(labels, (s, l) => $"{s}:{l}")).ToArray());
            Assert.AreEqual("torch: none", lines[^1], "the ML.NET pipeline process loaded TorchSharp");
            AssertSamePixels(expected, lines[..^1].Select(Convert.FromHexString).ToArray());
        }
        finally
        {
            File.Delete(file);
        }
    }

    private void AssertSamePixels(byte[][] expected, byte[][] actual)
    {
        Assert.AreEqual(expected.Length, actual.Length);
        int different = 0, worst = 0, total = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.AreEqual(expected[i].Length, actual[i].Length);
            for (int j = 0; j < expected[i].Length; j++)
            {
                int d = Math.Abs(expected[i][j] - actual[i][j]);
                different += d > 0 ? 1 : 0;
                worst = Math.Max(worst, d);
                total++;
            }
        }

        int distinct = expected.SelectMany(p => p).Distinct().Count();
        TestContext.WriteLine($"{total} pixels, {different} differ, by at most {worst}; {distinct} distinct values in the reference");
        Assert.IsTrue(distinct > 20, "the reference images are nearly flat: the comparison would show little");
        Assert.IsTrue(worst <= 1, $"a pixel differs by {worst} of 255");
        Assert.IsTrue(different <= total / 50, $"{different} of {total} pixels differ");
    }
}
