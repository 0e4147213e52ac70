using System;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

[TestClass]
public sealed class CompatibilityTests
{
    [TestMethod]
    public void AModelFileWrittenBeforeTheDenoiserAbstractionLoadsAndGeneratesTheSameImages()
    {
        // Data/Compatibility/model-format1.zip was written by commit 63faeb7 (U-Net settings without a "Kind"), with the
        // program in MakeFormat1Fixture.cs.txt, which also printed the SHA-256 of the images it generated for (seed 1,
        // label 0) and (seed 2, label 1). Today's code must read the file as a U-Net and generate the same bytes.
        string file = Path.Combine(AppContext.BaseDirectory, "Data", "Compatibility", "model-format1.zip");
        var context = new MLContext();
        var model = context.Model.Load(file, out _);
        var sampler = (DiffusionSampler)model;
        var network = (UNetOptions)sampler.Model.Network;
        Assert.AreEqual(8, network.Dim);
        CollectionAssert.AreEqual(new[] { 1, 2 }, network.DimMults.ToArray());
        Assert.AreEqual(2, sampler.Model.ClassCount);
        var seeds = context.Data.LoadFromEnumerable(new[] { new LabelledSeedRow { Seed = 1, Label = 0 }, new LabelledSeedRow { Seed = 2, Label = 1 } });
        var hashes = model.Transform(seeds).GetColumn<VBuffer<float>>("GeneratedPixels")
            .Select(v => Convert.ToHexString(SHA256.HashData(v.DenseValues().Select(x => (byte)x).ToArray())))
            .ToArray();
        CollectionAssert.AreEqual(
            new[] { "A074B8595AAA4DF6CF48523492AB6504759B79941522B74B1854BF7AFA7FFE67", "76BA779FFE51806553A3FBB11E42C9EDC5A9C1CE0E8FFC86EB8C9E8F8438E5D0" },
            hashes);
    }

    [TestMethod]
    public void NewModelFilesKeepTheFlatJsonShapeAndCheckpointFingerprintsKeepTheirText()
    {
        // Written by the code before the model description (GaussianDiffusionOptions) existed: the same training must write
        // the same JSON, or older readers could not read new files and checkpoints written before could not be resumed.
        const string Expected =
            "{\"ImageHeight\":8,\"ImageWidth\":8,\"Schedule\":\"Custom\",\"Betas\":[0.01,0.05,0.1,0.2,0.3],\"Objective\":\"Noise\",\"Loss\":\"MeanSquaredError\","
            + "\"Variance\":\"FixedSmall\",\"MinSnrGamma\":null,\"Network\":{\"Kind\":\"DiT\",\"PatchSize\":2,\"HiddenSize\":16,\"Depth\":1,\"Heads\":2,"
            + "\"MlpRatio\":4,\"SizeDivisor\":2,\"MlpHiddenSize\":64,\"Channels\":1,\"LearnedVariance\":false,\"ClassCount\":2},\"ImageColumnName\":\"Pixels\","
            + "\"LabelColumnName\":\"Label\",\"ClassNames\":null";
        var context = new MLContext(seed: 1);
        var options = MLNetTestData.Options(steps: 3);
        options.LabelColumnName = nameof(PixelRow.Label);
        options.Schedule = Microsoft.ML.Diffusion.Core.Schedules.BetaSchedule.Custom;
        options.CustomBetas = new[] { 0.01, 0.05, 0.1, 0.2, 0.3 };
        options.Sampling.Steps = 3;
        options.Network = new DiTOptions { PatchSize = 2, HiddenSize = 16, Depth = 1, Heads = 2 };
        using var sampler = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 2));
        string json = DiffusionModelFile.ConfigJson(sampler.Model.Config);
        // The sampler's settings follow (their shape is the sampler options' own).
        Assert.AreEqual(Expected + ",\"TrainedSteps\":3,\"Sampling\":{", json[..Math.Min(json.Length, Expected.Length + 30)], "the model file's JSON");
        Assert.AreEqual(Expected + "}", DiffusionModelFile.ConfigJson(sampler.Model.Config, forFingerprint: true), "the checkpoint fingerprint's JSON");
    }
}
