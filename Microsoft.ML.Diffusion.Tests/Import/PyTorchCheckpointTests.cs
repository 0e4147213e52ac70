using System;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Import;
using Microsoft.ML.Diffusion.Tests.MLNet;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Import;

/// <summary>
/// Checkpoints of denoising-diffusion-pytorch 2.1.1 written by Data/PyTorch/make_fixture.py (PyTorch 1.13, run once):
/// the reference U-Net's outputs for fixed inputs are in reference.safetensors.
/// </summary>
[TestClass]
public sealed class PyTorchCheckpointTests
{
    // Measured: 7.2e-7 (EMA weights, from model-1.pt and from ema.safetensors), 9.8e-7 (online weights); outputs are O(1).
    private const double Tolerance = 1e-5;

    [TestMethod]
    public void TheEmaAndModelWeightsOfATrainerCheckpointGiveThePyTorchOutputs()
    {
        using var ema = PyTorchCheckpoint.Import(new MLContext(), Fixture("model-1.pt"), Options(PyTorchWeights.Ema));
        using var online = PyTorchCheckpoint.Import(new MLContext(), Fixture("model-1.pt"), Options(PyTorchWeights.Model));
        Assert.AreEqual(50_219L, ema.Model.Diffusion.Model.ParameterCount, "the reference U-Net's parameter count");
        Assert.AreEqual(1, ema.Model.TrainedSteps, "the checkpoint's step");
        Assert.AreEqual(20, ema.Model.Diffusion.Timesteps, "T from the checkpoint's betas");
        double emaDifference = MaxDifference(ema, "ema_output");
        double onlineDifference = MaxDifference(online, "model_output");
        Console.WriteLine($"max |ours - PyTorch|: EMA {emaDifference:E2}, online {onlineDifference:E2}");
        Assert.IsLessThan(Tolerance, emaDifference);
        Assert.IsLessThan(Tolerance, onlineDifference);
        Assert.IsGreaterThan(0.01, MaxDifference(online, "ema_output"), "the two sets of weights differ, so the choice is tested");
    }

    [TestMethod]
    public void ASafetensorsFileGivesTheSameOutputAndItsBetas()
    {
        using var sampler = PyTorchCheckpoint.Import(new MLContext(), Fixture("ema.safetensors"), Options(PyTorchWeights.Ema));
        double difference = MaxDifference(sampler, "ema_output");
        Console.WriteLine($"max |ours - PyTorch| from safetensors: {difference:E2}");
        Assert.IsLessThan(Tolerance, difference);
        using var state = NewDisposeScope();
        var betas = Safetensors.LoadStateDict(Fixture("ema.safetensors"))["betas"].to(float64).data<double>().ToArray();
        CollectionAssert.AreEqual(betas, sampler.Model.Diffusion.Schedule.Betas.ToArray(), "the file's cosine betas, exactly");
    }

    [TestMethod]
    public void AnImportedSamplerGeneratesAndRoundTripsThroughAModelFile()
    {
        var mlContext = new MLContext(seed: 1);
        var options = Options(PyTorchWeights.Ema);
        options.Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 4 } };
        using var sampler = PyTorchCheckpoint.Import(mlContext, Fixture("model-1.pt"), options);
        var seeds = MLNetTestData.Seeds(mlContext, 1, 2);
        var pixels = MLNetTestData.Pixels(sampler.Transform(seeds));
        Assert.HasCount(3 * 8 * 8, pixels[0]);
        string path = Path.Combine(Path.GetTempPath(), $"imported-{Guid.NewGuid():N}.zip");
        try
        {
            sampler.Save(mlContext, path);
            using var loaded = DiffusionSampler.Load(new MLContext(), path);
            CollectionAssert.AreEqual(MLNetTestData.PixelHashes(sampler.Transform(seeds)).ToArray(), MLNetTestData.PixelHashes(loaded.Transform(seeds)).ToArray());
            Assert.AreEqual(4, ((DdimScheduler)loaded.Options.Scheduler).Steps);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public void AnArchitectureThatDoesNotFitIsRefusedNamingTheParameter()
    {
        var wider = Options(PyTorchWeights.Ema);
        wider.Network.Dim = 16;
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => PyTorchCheckpoint.Import(new MLContext(), Fixture("model-1.pt"), wider));
        StringAssert.Contains(ex.Message, "'ema_model.model.init_conv.weight' has shape [8, 3, 7, 7]");

        var deeper = Options(PyTorchWeights.Ema);
        deeper.Network.DimMults = new[] { 1, 2, 4 };
        ex = Assert.ThrowsExactly<InvalidDataException>(() => PyTorchCheckpoint.Import(new MLContext(), Fixture("model-1.pt"), deeper));
        StringAssert.Contains(ex.Message, "ema_model.model.");

        Assert.ThrowsExactly<FileNotFoundException>(() => PyTorchCheckpoint.Import(new MLContext(), Fixture("missing.pt"), Options(PyTorchWeights.Ema)));
        string junk = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(junk, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 });
            ex = Assert.ThrowsExactly<InvalidDataException>(() => PyTorchCheckpoint.Import(new MLContext(), junk, Options(PyTorchWeights.Ema)));
            StringAssert.Contains(ex.Message, junk);
        }
        finally
        {
            File.Delete(junk);
        }
    }

    [TestMethod]
    public void EveryParameterNameMapsToAReferenceKey()
    {
        using var scope = NewDisposeScope();
        var keys = Safetensors.LoadStateDict(Fixture("ema.safetensors")).Keys
            .Where(k => k.StartsWith("model.", StringComparison.Ordinal)).Select(k => k["model.".Length..]).OrderBy(k => k, StringComparer.Ordinal).ToArray();
        using var unet = new UNet(Options(PyTorchWeights.Ema).Network);
        var mapped = unet.named_parameters().Select(p => PyTorchCheckpoint.ReferenceName(p.name)).OrderBy(k => k, StringComparer.Ordinal).ToArray();
        CollectionAssert.AreEqual(keys, mapped, "one to one: no reference key left over, none invented");
        Assert.AreEqual("downs.0.3.1.weight", PyTorchCheckpoint.ReferenceName("downs.0.resample.conv.weight"));
        Assert.AreEqual("downs.1.2.to_out.weight", PyTorchCheckpoint.ReferenceName("downs.1.attn.to_out.weight"));
        Assert.AreEqual("ups.1.2.to_out.1.g", PyTorchCheckpoint.ReferenceName("ups.1.attn.to_out_norm.g"));
    }

    private static PyTorchImportOptions Options(PyTorchWeights weights) => new()
    {
        ImageSize = 8,
        Network = new UNetOptions { Dim = 8, DimMults = new[] { 1, 2 }, Channels = 3, AttentionHeads = 2, AttentionDimHead = 8 },
        Objective = PredictionTarget.Velocity,
        Weights = weights,
    };

    private static double MaxDifference(DiffusionSampler sampler, string expectedName)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var reference = Safetensors.LoadStateDict(Fixture("reference.safetensors"));
        var output = sampler.Model.Diffusion.Model.forward(reference["x"], reference["t"]);
        Assert.IsTrue(output.shape.SequenceEqual(reference[expectedName].shape));
        return (output - reference[expectedName]).abs().max().item<float>();
    }

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Data", "PyTorch", name);
}
