using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Onnx;

/// <summary>Tiny models with every weight away from its initial value, and ONNX Runtime helpers, for the export tests.</summary>
internal static class OnnxTestModels
{
    public static DenoiserOptions Network(string kind, int channels = 1, bool learnedVariance = false, int classCount = 0) => kind switch
    {
        "UNet" => TinyModels.Options(channels, learnedVariance, classCount),
        "UNet3" => new UNetOptions { Dim = 8, DimMults = new[] { 1, 2, 2 }, Channels = channels, AttentionHeads = 2, AttentionDimHead = 4, LearnedVariance = learnedVariance, ClassCount = classCount },
        "DiT" => new DiTOptions { PatchSize = 2, HiddenSize = 16, Depth = 2, Heads = 2, Channels = channels, LearnedVariance = learnedVariance, ClassCount = classCount },
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown test network"),
    };

    /// <summary>A diffusion whose network's weights are all perturbed (a fresh DiT predicts exactly 0: nothing to compare).</summary>
    public static GaussianDiffusion Diffusion(
        DenoiserOptions network,
        PredictionTarget objective = PredictionTarget.Noise,
        VarianceType variance = VarianceType.FixedSmall,
        int timesteps = 100,
        int height = 8,
        int width = 8,
        int seed = 1,
        BetaSchedule schedule = BetaSchedule.Linear)
    {
        manual_seed(seed);
        var options = new GaussianDiffusionOptions
        {
            ImageHeight = height,
            ImageWidth = width,
            Schedule = schedule,
            Timesteps = timesteps,
            Objective = objective,
            Variance = variance,
            Network = network,
        };
        var diffusion = options.CreateDiffusion();
        Perturb(diffusion.Model, seed + 100);
        diffusion.eval();
        return diffusion;
    }

    public static void Perturb(nn.Module module, int seed)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator((ulong)seed);
        foreach (var p in module.parameters())
        {
            p.add_(randn(p.shape, generator: generator) * 0.2);
        }
    }

    public static float MaxDifference(float[] a, float[] b)
    {
        if (a.Length != b.Length)
        {
            throw new ArgumentException($"lengths differ: {a.Length} vs {b.Length}");
        }

        float max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            float d = Math.Abs(a[i] - b[i]);
            max = float.IsNaN(d) ? float.PositiveInfinity : Math.Max(max, d);
        }

        return max;
    }

    public static SessionOptions CpuOptions()
    {
        var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        return options;
    }

    /// <summary>Runs a model held in memory and returns the named float output.</summary>
    public static float[] Run(byte[] model, string output, params NamedOnnxValue[] inputs)
    {
        using var options = CpuOptions();
        using var session = new InferenceSession(model, options);
        using var results = session.Run(inputs);
        return results.First(r => r.Name == output).AsTensor<float>().ToArray();
    }

    public static NamedOnnxValue Floats(string name, float[] values, params int[] shape) =>
        NamedOnnxValue.CreateFromTensor(name, new DenseTensor<float>(values, shape));

    public static NamedOnnxValue Longs(string name, long[] values) =>
        NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(values, new[] { values.Length }));

    public static float[] Data(TorchSharp.torch.Tensor t) => t.detach().cpu().contiguous().data<float>().ToArray();

    public static IReadOnlyList<long> Seeds(int count, long first = 11) => Enumerable.Range(0, count).Select(i => first + (i * 7919L)).ToArray();
}
