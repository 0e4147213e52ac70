using System;
using System.Collections.Generic;
using System.Linq;
using System.Security.Cryptography;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

public sealed class PixelRow
{
    [VectorType(64)]
    public float[] Pixels { get; set; } = Array.Empty<float>();

    public int Label { get; set; }
}

public sealed class SeedRow
{
    public int Seed { get; set; }
}

public sealed class LabelledSeedRow
{
    public int Seed { get; set; }

    public int Label { get; set; }
}

/// <summary>Tiny ML.NET data for the estimator tests: 8×8 grayscale patterns as pixel vectors in [0, 255].</summary>
internal static class MLNetTestData
{
    public static IDataView Patterns(MLContext mlContext, int copies = 16)
    {
        using var patterns = TinyModels.Patterns();
        float[][] images = Enumerable.Range(0, 2).Select(i => ((patterns[i].flatten() + 1) * 127.5f).data<float>().ToArray()).ToArray();
        var rows = Enumerable.Range(0, copies * 2).Select(i => new PixelRow { Pixels = images[i % 2], Label = i % 2 }).ToList();
        return mlContext.Data.LoadFromEnumerable(rows);
    }

    public static DiffusionTrainerOptions Options(int steps = 30) => new()
    {
        ImageColumnName = nameof(PixelRow.Pixels),
        ImageSize = 8,
        Channels = 1,
        Timesteps = 20,
        Schedule = BetaSchedule.Cosine,
        Network = TinyModels.Options(),
        BatchSize = 8,
        TrainSteps = steps,
        LearningRate = 2e-3,
        Seed = 3,
        LogEvery = 5,
        Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 5 } },
    };

    public static IDataView Seeds(MLContext mlContext, params int[] seeds) =>
        mlContext.Data.LoadFromEnumerable(seeds.Select(s => new SeedRow { Seed = s }).ToList());

    public static List<float[]> Pixels(IDataView output, string column = "GeneratedPixels") =>
        output.GetColumn<VBuffer<float>>(column).Select(v => v.DenseValues().ToArray()).ToList();

    public static IEnumerable<string> PixelHashes(IDataView output) =>
        Pixels(output).Select(p => Convert.ToHexString(SHA256.HashData(p.Select(v => (byte)v).ToArray())));
}
