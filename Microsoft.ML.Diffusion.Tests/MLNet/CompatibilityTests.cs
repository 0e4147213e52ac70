using System;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

[TestClass]
public sealed class CompatibilityTests : OneThreadTests
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

    // Data/Compatibility/format2/ was written by commit b74c3dd (the last commit before the layered redesign) with the
    // program in format2/MakeFormat2Fixture.cs.txt, on one libtorch thread; it printed the SHA-256 of the pixels (each value
    // cast to a byte) generated for (seed 1, label 0), (seed 2, label 1), (seed 7, label 1), or seeds 1, 2, 7 for the
    // unconditional models. Today's code must load the files and generate the same bytes.
    private static readonly string Format2 = Path.Combine(AppContext.BaseDirectory, "Data", "Compatibility", "format2");

    [TestMethod]
    public void AFormat2ConditionalUNetWithLearnedVarianceAndNamedDpmSolverLoadsAndGeneratesTheSameImages() =>
        // Cosine schedule, learned-range variance (hybrid loss), 2 classes; sampler "dpm-solver++", Karras spacing, 6 steps, guidance 2.
        AssertGenerates(
            "model-format2-unet.zip",
            labelled: true,
            "47BAD8F1B9341969944EEEDE9F7DE2F6154A58F6F4E19FBCC3C4E5D1F335980B",
            "0C6D9FB87A15E04A22AA33373FFDB8A8266CE33C517C7145C511F9073E4FC66C",
            "FED459D6391022DDD8E9A6992CA9C440E139061197D64ADFBD9F367B0311DA51");

    [TestMethod]
    public void AFormat2DiTWithEulerAncestralAtEtaZeroLoadsAndGeneratesTheSameImages() =>
        // Unconditional DiT (patch 2, hidden 16, depth 2, 2 heads, MLP ratio 2); sampler "euler-a", 5 steps, Eta = 0, which
        // before the redesign meant η = 1 for Euler-ancestral: these hashes pin that reading of the stored 0.
        AssertGenerates(
            "model-format2-dit.zip",
            labelled: false,
            "89D589BA599325CBFA4BC30D3D52363C851B654E510F9E65688767434C0ED732",
            "D6D4E52BB8976A589C667FFAB5FE806A87F64E3B4A268547FFBDB77564AC7567",
            "921F42D86A1E53283E7E3D27C58765D5D3927A68AB67452977B3C3CAA5553FC7");

    [TestMethod]
    public void AFormat2StochasticDdimModelLoadsAndGeneratesTheSameImages() =>
        // Unconditional U-Net predicting v, linear schedule; Method = Ddim (no sampler name), 4 steps, Eta = 0.5.
        AssertGenerates(
            "model-format2-ddim.zip",
            labelled: false,
            "2B59E5BD6A8801631FABF44B621B2D6787C1576EF188866C8A513C3992836685",
            "B9F2CA9E1C99011F4734D2EF79A75A74AAC16A60A1A8F8A53BCFB5F000F34A87",
            "29BAD7B3301E4C0E18EA0CED251D147917DB450235C5174E8AFE62BD1B9A6CD7");

    [TestMethod]
    public void AFormat2CheckpointResumesToTheSameModel()
    {
        // format2/checkpoint/checkpoint-00000002.ckpt is step 2 of the run ResumeOptions describes, except that its first 2
        // steps trained on the negatives of GradientData's images (same rows, labels and count: the fingerprint accepts the
        // resume). The old code resumed it on GradientData to step 4 and generated the images hashed below; a run that ignored
        // the checkpoint (4 steps from scratch on GradientData) generates others (MakeFormat2Fixture prints them), so these
        // hashes need the checkpoint's weights, EMA, optimizer moments, data order and RNG states all read as written.
        // The fixture is copied first: resuming writes a step-4 checkpoint and deletes older ones.
        string temp = Path.Combine(Path.GetTempPath(), "mldiffusion-compat-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        try
        {
            foreach (string file in Directory.GetFiles(Path.Combine(Format2, "checkpoint")))
            {
                File.Copy(file, Path.Combine(temp, Path.GetFileName(file)));
            }

            var context = new MLContext(seed: 1);
            using var sampler = context.Generative().Diffusion(ResumeOptions(temp)).Fit(GradientData(context));
            CollectionAssert.AreEqual(
                new[]
                {
                    "8A06EB043B19716C0C1806C138FA45BC478E0C2D590CE99C0582252A7C389D79",
                    "B4E39F8F5157BAE7A1D091E5B972F3CF22A4D2CA6A41266454AE8CD87AEB8685",
                    "59AF648DFBA3D9C68EBC2407B8350F93D97890FA830DB27BC8A777B245BEF001",
                },
                Hashes(sampler.Transform(Seeds(context, labelled: true))));
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    // Everything the checkpoint's run was trained with (MakeFormat2Fixture's CheckpointRun): the resume must match it, or the
    // checkpoint's fingerprint refuses it. Sampling is the same too, since it decides the hashes.
    private static DiffusionTrainerOptions ResumeOptions(string checkpointDirectory) => new()
    {
        ImageColumnName = nameof(PixelRow.Pixels),
        LabelColumnName = nameof(PixelRow.Label),
        ImageSize = 8,
        Channels = 1,
        Timesteps = 20,
        Network = new UNetOptions { Dim = 4, DimMults = new[] { 1, 2 }, AttentionHeads = 1, AttentionDimHead = 4 },
        BatchSize = 4,
        TrainSteps = 4,
        Seed = 11,
        EmaDecay = 0.9,
        CheckpointDirectory = checkpointDirectory,
        CheckpointEvery = 2,
        KeepCheckpoints = 1,
        Resume = true,
        Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 4 } },
    };

    // The generator's training data: 16 rows of 8×8 gradients, even rows rising (label 0), odd rows falling (label 1).
    private static IDataView GradientData(MLContext context) => context.Data.LoadFromEnumerable(
        Enumerable.Range(0, 16)
            .Select(i => new PixelRow { Pixels = Enumerable.Range(0, 64).Select(j => (float)(((i % 2 == 0 ? j : 63 - j) * 4) % 256)).ToArray(), Label = i % 2 })
            .ToList());

    private static IDataView Seeds(MLContext context, bool labelled) => labelled
        ? context.Data.LoadFromEnumerable(new[] { new LabelledSeedRow { Seed = 1, Label = 0 }, new LabelledSeedRow { Seed = 2, Label = 1 }, new LabelledSeedRow { Seed = 7, Label = 1 } })
        : context.Data.LoadFromEnumerable(new[] { new SeedRow { Seed = 1 }, new SeedRow { Seed = 2 }, new SeedRow { Seed = 7 } });

    private static string[] Hashes(IDataView generated) =>
        generated.GetColumn<VBuffer<float>>("GeneratedPixels")
            .Select(v => Convert.ToHexString(SHA256.HashData(v.DenseValues().Select(x => (byte)x).ToArray())))
            .ToArray();

    private static void AssertGenerates(string file, bool labelled, params string[] expected)
    {
        var context = new MLContext();
        var model = context.Model.Load(Path.Combine(Format2, file), out _);
        try
        {
            CollectionAssert.AreEqual(expected, Hashes(model.Transform(Seeds(context, labelled))));
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
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
        options.Sampling.Scheduler = new DdimScheduler { Steps = 3 };
        options.Network = new DiTOptions { PatchSize = 2, HiddenSize = 16, Depth = 1, Heads = 2 };
        using var sampler = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 2));
        string json = DiffusionModelFile.ConfigJson(sampler.Model.Config);
        // The sampler's settings follow (their shape is the sampler options' own).
        Assert.AreEqual(Expected + ",\"TrainedSteps\":3,\"Sampling\":{", json[..Math.Min(json.Length, Expected.Length + 30)], "the model file's JSON");
        Assert.AreEqual(Expected + "}", DiffusionModelFile.ConfigJson(sampler.Model.Config, forFingerprint: true), "the checkpoint fingerprint's JSON");
    }
}
