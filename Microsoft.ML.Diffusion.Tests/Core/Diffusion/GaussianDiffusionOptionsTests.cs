using System;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Diffusion;

[TestClass]
public sealed class GaussianDiffusionOptionsTests
{
    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    private static GaussianDiffusionOptions Tiny() => new()
    {
        ImageHeight = 8,
        ImageWidth = 8,
        Schedule = BetaSchedule.Cosine,
        Timesteps = 10,
        MinSnrGamma = 5,
        Network = TinyModels.Options(),
    };

    [TestMethod]
    public void ADiffusionExposesItsDescriptionWithItsExactBetasAndItRebuildsTheSameDiffusion()
    {
        manual_seed(1);
        using var first = Tiny().CreateDiffusion();
        var described = first.Options;
        Assert.AreEqual(BetaSchedule.Cosine, described.Schedule);
        CollectionAssert.AreEqual(NoiseSchedule.Cosine(10).Betas.ToArray(), described.Betas!.ToArray(), "the exact β values are recorded");
        Assert.AreEqual(5.0, described.MinSnrGamma);
        Assert.AreEqual(first.MinSnrGamma, described.MinSnrGamma);
        Assert.AreNotSame(described, first.Options, "the diffusion hands out copies");

        manual_seed(1);
        using var second = new GaussianDiffusion(described);
        Assert.AreEqual(JsonSerializer.Serialize(described, Json), JsonSerializer.Serialize(second.Options, Json));
        foreach (var (a, b) in first.Model.parameters().Zip(second.Model.parameters()))
        {
            Assert.IsTrue(a.eq(b).all().item<bool>(), "the same seed builds the same weights from the description");
        }
    }

    [TestMethod]
    public void TheExistingConstructorsBuildTheDescription()
    {
        using var unet = new UNet(TinyModels.Options(learnedVariance: true));
        using var d = new GaussianDiffusion(unet, NoiseSchedule.Linear(12), 8, 16, PredictionTarget.Velocity, DiffusionLoss.Huber, VarianceType.LearnedRange) { HybridLambda = 0.01 };
        var options = d.Options;
        Assert.AreEqual(8, options.ImageHeight);
        Assert.AreEqual(16, options.ImageWidth);
        Assert.AreEqual(12, options.Betas!.Count);
        Assert.AreEqual(PredictionTarget.Velocity, options.Objective);
        Assert.AreEqual(DiffusionLoss.Huber, options.Loss);
        Assert.AreEqual(VarianceType.LearnedRange, options.Variance);
        Assert.AreEqual(0.01, options.HybridLambda);
        Assert.IsTrue(options.Network.LearnedVariance);
    }

    [TestMethod]
    public void EachRuleIsCheckedByTheDescription()
    {
        void Refused<T>(Action<GaussianDiffusionOptions> edit, string message)
            where T : Exception
        {
            var options = Tiny();
            edit(options);
            var ex = Assert.ThrowsExactly<T>(options.Validate, message);
            StringAssert.Contains(ex.Message, message);
            Assert.ThrowsExactly<T>(() => options.CreateDiffusion(), "building validates");
        }

        Tiny().Validate();
        Refused<ArgumentOutOfRangeException>(o => o.ImageWidth = 9, "8×9 is not divisible by 2");
        Refused<ArgumentOutOfRangeException>(o => o.ImageWidth = 9, "for a U-Net with 2 levels");
        Refused<ArgumentOutOfRangeException>(o => o.ImageHeight = GaussianDiffusionOptions.MaxImageSide + 4, "each side must be in [1, 8192]");
        Refused<ArgumentOutOfRangeException>(o => o.Timesteps = 1, "T must be in [2, 100000]");
        Refused<ArgumentOutOfRangeException>(o => o.Betas = new double[GaussianDiffusionOptions.MaxTimesteps + 1], "100001 timesteps");
        Refused<ArgumentOutOfRangeException>(o => o.Betas = new[] { 0.1, 1.5 }, "β at index 1 is 1.5");
        Refused<ArgumentOutOfRangeException>(o => o.Schedule = BetaSchedule.Custom, "needs its β values");
        Refused<ArgumentOutOfRangeException>(o => o.MinSnrGamma = -1, "MinSnrGamma");
        Refused<ArgumentException>(o => o.Variance = VarianceType.LearnedRange, "learned-variance");
        Refused<ArgumentOutOfRangeException>(o => o.Network.Channels = 65, "at most 64");
        Refused<ArgumentOutOfRangeException>(o => ((UNetOptions)o.Network).Dim = 20_000, "U-Net Dim 20000");
        Refused<ArgumentOutOfRangeException>(o => o.Network = new DiTOptions { Depth = 2000 }, "Depth must be at least 1 and at most 1024");
        Refused<ArgumentNullException>(o => o.Network = null!, "network settings are missing");
    }

    [TestMethod]
    public void GivenBetasAreTheScheduleAndTheFamilyOnlyNamesThem()
    {
        var options = Tiny();
        options.Betas = new[] { 0.1, 0.2, 0.3 };
        var schedule = options.CreateSchedule();
        Assert.AreEqual(3, schedule.Timesteps);
        Assert.AreEqual(BetaSchedule.Cosine, schedule.Kind);
        options.Betas = null;
        Assert.AreEqual(10, options.CreateSchedule().Timesteps);
    }

    [TestMethod]
    public void JsonIsFlatWithTimestepsOnlyWithoutBetasAndLambdaOnlyWhenSet()
    {
        var options = Tiny();
        string computed = JsonSerializer.Serialize(options, Json);
        StringAssert.Contains(computed, "\"Timesteps\":10");
        Assert.DoesNotContain("HybridLambda", computed);
        var back = JsonSerializer.Deserialize<GaussianDiffusionOptions>(computed, Json)!;
        Assert.AreEqual(10, back.Timesteps);
        Assert.IsNull(back.Betas);
        Assert.IsInstanceOfType<UNetOptions>(back.Network);

        options.Betas = NoiseSchedule.Cosine(10).Betas;
        options.HybridLambda = 0.5;
        string exact = JsonSerializer.Serialize(options, Json);
        Assert.DoesNotContain("Timesteps", exact, "a model file's shape: the β values say T");
        StringAssert.StartsWith(exact, "{\"ImageHeight\":8,\"ImageWidth\":8,\"Schedule\":\"Cosine\",\"Betas\":[");
        Assert.AreEqual(0.5, JsonSerializer.Deserialize<GaussianDiffusionOptions>(exact, Json)!.HybridLambda);
    }

    [TestMethod]
    public void CloneIsDeep()
    {
        var options = Tiny();
        options.Betas = new[] { 0.1, 0.2 };
        var copy = options.Clone();
        Assert.AreNotSame(options.Network, copy.Network);
        Assert.AreNotSame(options.Betas, copy.Betas);
        Assert.AreEqual(JsonSerializer.Serialize(options, Json), JsonSerializer.Serialize(copy, Json));
    }
}
