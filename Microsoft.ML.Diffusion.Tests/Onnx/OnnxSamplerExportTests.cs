using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Export;
using Microsoft.ML.OnnxRuntime;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Onnx;

/// <summary>The exported sampler graph against TorchSharp's <see cref="SamplingLoop"/> on the same x_T: max |difference| ≤ 2e-3 in [−1, 1].</summary>
[TestClass]
public sealed class OnnxSamplerExportTests
{
    private const float Tolerance = 2e-3f;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow("UNet", "ddim", 50, PredictionTarget.Noise, VarianceType.FixedSmall, 0, OnnxSamplerLoop.Unrolled, true)]
    [DataRow("UNet", "ddim", 50, PredictionTarget.Velocity, VarianceType.LearnedRange, 3, OnnxSamplerLoop.Loop, true)]
    [DataRow("DiT", "ddim", 50, PredictionTarget.Velocity, VarianceType.FixedSmall, 0, OnnxSamplerLoop.Loop, false)]
    [DataRow("DiT", "dpm", 20, PredictionTarget.Start, VarianceType.FixedLarge, 2, OnnxSamplerLoop.Unrolled, false)]
    [DataRow("UNet", "dpm", 20, PredictionTarget.Noise, VarianceType.FixedLarge, 3, OnnxSamplerLoop.Unrolled, true)]
    [DataRow("UNet", "dpm-karras", 20, PredictionTarget.Velocity, VarianceType.FixedSmall, 0, OnnxSamplerLoop.Loop, true)]
    [DataRow("DiT", "dpm", 20, PredictionTarget.Start, VarianceType.LearnedRange, 3, OnnxSamplerLoop.Loop, true)]
    [DataRow("DiT", "ddim", 50, PredictionTarget.Velocity, VarianceType.FixedSmall, 0, OnnxSamplerLoop.Unrolled, true)]
    public void TheExportedSamplerGeneratesWhatTorchSharpGenerates(string kind, string sampler, int steps, PredictionTarget objective, VarianceType variance, int classes, OnnxSamplerLoop loop, bool clip)
    {
        using var one = TinyModels.OneThread();
        using var diffusion = OnnxTestModels.Diffusion(OnnxTestModels.Network(kind, 1, variance == VarianceType.LearnedRange, classes), objective, variance, schedule: Microsoft.ML.Diffusion.Core.Schedules.BetaSchedule.Cosine);
        DiffusionScheduler scheduler = sampler switch
        {
            "ddim" => new DdimScheduler { Steps = steps },
            "dpm" => new DpmSolverScheduler { Steps = steps },
            _ => new DpmSolverScheduler { Steps = steps, Spacing = TimestepSpacing.Karras },
        };
        byte[] onnx = DiffusionOnnxExport.ToBytes(diffusion, new OnnxExportOptions { Scheduler = scheduler, Loop = loop, ClipDenoised = clip });

        var seeds = OnnxTestModels.Seeds(5);
        long[]? labels = classes > 0 ? new long[] { 0, 1, 2, classes, 1 } : null;
        const float guidance = 2.5f;
        using var scope = NewDisposeScope();
        var loopReference = new SamplingLoop(scheduler) { ClipDenoised = clip, GuidanceScale = guidance };
        float[] expected = OnnxTestModels.Data(loopReference.Sample(diffusion, seeds, labels is null ? null : tensor(labels)));
        using var noise = new SeededNoise(seeds, new long[] { 1, 8, 8 }, CPU);
        float[] start = OnnxTestModels.Data(noise.Next());

        var inputs = new List<NamedOnnxValue> { OnnxTestModels.Floats("noise", start, seeds.Count, 1, 8, 8) };
        if (labels is not null)
        {
            inputs.Add(OnnxTestModels.Longs("class", labels));
            inputs.Add(OnnxTestModels.Floats("guidance", Enumerable.Repeat(guidance, seeds.Count).ToArray(), seeds.Count));
        }

        float[] actual = OnnxTestModels.Run(onnx, "images", inputs.ToArray()).Select(v => (2 * v) - 1).ToArray();
        float difference = OnnxTestModels.MaxDifference(expected, clip ? actual : expected.Zip(actual, (e, a) => e is >= -1 and <= 1 ? a : e).ToArray());
        int inside = expected.Count(v => v is > -0.99f and < 0.99f);
        TestContext.WriteLine($"{kind} {sampler}-{steps} {objective} {variance} classes {classes} {loop} clip {clip}: max |difference| {difference:E2}; {inside} of {expected.Length} values inside (−0.99, 0.99)");
        Assert.IsTrue(inside > expected.Length / 4, $"only {inside} values are not saturated: the comparison would show little");
        Assert.IsTrue(difference <= Tolerance, $"max |ONNX − TorchSharp| = {difference:E2} in [−1, 1]");
    }
}
