using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Diffusion.Tests.Devices;
using Microsoft.ML.Diffusion.Tests.MLNet;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Training;

/// <summary>
/// The mixed-precision policy on the CPU: float32 master weights under a 16-bit network copy, float32 islands in the
/// network, the loss scaler's rules in the training loop, and exact resume in 16 bits (docs/mixed-precision.md).
/// </summary>
[TestClass]
public sealed class MixedPrecisionTests : OneThreadTests
{
    private string directory = null!;

    [TestInitialize]
    public void CreateFolder() => directory = Directory.CreateTempSubdirectory("mldiffusion-amp-").FullName;

    [TestCleanup]
    public void DeleteFolder()
    {
        MixedPrecision.AfterBackward = null;
        Directory.Delete(directory, recursive: true);
    }

    [TestMethod]
    public void MasterWeightsStayFloat32WhileTheNetworkCopyIsBFloat16()
    {
        using var d = TinyModels.Diffusion(timesteps: 10);
        using var optimizer = new FusedAdamW(d.Model.parameters(), 1e-3, weightDecay: 0);
        using var mixed = new MixedPrecision(d, optimizer, Precision.BFloat16);
        using var data = TinyModels.Patterns().repeat(2, 1, 1, 1);
        using var generator = new Generator(3, CPU);

        Assert.IsNull(mixed.LossScaler, "bfloat16 has float32's range: no loss scaling");
        Assert.AreEqual(ScalarType.Float32, optimizer.FlatParameters.dtype);
        Assert.AreEqual(ScalarType.Float32, optimizer.FlatGradients.dtype);
        Assert.IsTrue(d.Model.parameters().All(p => p.dtype == ScalarType.Float32), "the master network stays float32");
        var copy = mixed.ReducedNetwork!;
        Assert.IsTrue(copy.parameters().All(p => p.dtype == ScalarType.BFloat16), "the network copy is bfloat16");
        Assert.AreEqual(d.Model.ParameterCount, copy.ParameterCount);

        for (int step = 0; step < 2; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            mixed.BeginStep();
            // The copy holds the master weights rounded to bfloat16, exactly.
            Assert.IsTrue(TestDevice.Same(mixed.FlatParameters!, optimizer.FlatParameters.to(ScalarType.BFloat16)), $"step {step}: the copy is the master weights in bfloat16");
            var loss = mixed.Diffusion.Loss(data, generator: generator);
            Assert.AreEqual(ScalarType.Float32, loss.dtype, "the loss is float32");
            mixed.Backward(loss);
            Assert.IsTrue(optimizer.FlatGradients.abs().sum().item<float>() > 0, "the gradients reached the float32 buffer");
            Assert.IsTrue(copy.parameters().All(p => p.grad is not null && p.grad.dtype == ScalarType.BFloat16 && p.grad.eq(0).all().item<bool>()), "the 16-bit gradient is cleared once added");
            Assert.IsTrue(mixed.EndStep(true, true));
            optimizer.Step();
        }

        Assert.IsTrue(d.Model.parameters().All(p => p.dtype == ScalarType.Float32 && p.isfinite().all().item<bool>()), "the master weights are float32 and finite after the steps");
    }

    [TestMethod]
    public void NormalisationsAndSoftmaxComputeInFloat32ForASixteenBitInput()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var x = randn(2, 8, 4, 4).to(ScalarType.BFloat16);
        var wide = x.to(ScalarType.Float32);

        var norm = new RmsNorm(8);
        var copy = new RmsNorm(8);
        copy.to(ScalarType.BFloat16);
        var normalised = copy.call(x);
        Assert.AreEqual(ScalarType.BFloat16, normalised.dtype);
        Assert.IsTrue(TestDevice.Same(normalised, norm.call(wide).to(ScalarType.BFloat16)), "RMSNorm of a bfloat16 input is the float32 result, rounded once");

        var shift = randn(2, 8).to(ScalarType.BFloat16);
        var gain = randn(2, 8).to(ScalarType.BFloat16);
        var tokens = x.view(2, 16, 8);
        Assert.IsTrue(
            TestDevice.Same(AdaptiveLayerNorm.Modulate(tokens, shift, gain), AdaptiveLayerNorm.Modulate(tokens.to(ScalarType.Float32), shift.to(ScalarType.Float32), gain.to(ScalarType.Float32)).to(ScalarType.BFloat16)),
            "the adaptive layer norm of a bfloat16 input is the float32 result, rounded once");
        Assert.IsTrue(TestDevice.Same(x.SoftmaxInFloat32(-1), wide.softmax(-1).to(ScalarType.BFloat16)), "softmax of a bfloat16 input is the float32 result, rounded once");
        Assert.IsTrue(TestDevice.Same(wide.SoftmaxInFloat32(-1), wide.softmax(-1)), "float32 softmax is unchanged");
    }

    [TestMethod]
    public void Float16LossScalingSkipsAStepWithAnInjectedInfHalvesThenGrowsAgain()
    {
        // The loss scale each step backs up with: 1024 for steps 0–2; step 2's gradient gets an inf, so it is skipped and
        // the scale halves; three good steps (3, 4, 5) at 512 grow it back to 1024 for steps 6 and 7.
        var scales = new List<double>();
        MixedPrecision? seen = null;
        int backward = 0;
        MixedPrecision.AfterBackward = (mixed, gradient) =>
        {
            seen = mixed;
            scales.Add(mixed.LossScaler!.Scale);
            if (backward++ == 2)
            {
                gradient[0] = tensor(double.PositiveInfinity);
            }
        };

        using var d = TinyModels.Diffusion(timesteps: 10);
        using var data = new TrainingImages(TinyModels.Patterns().repeat(2, 1, 1, 1), null, 0, null);
        var options = new DiffusionTrainerOptions
        {
            BatchSize = 4, TrainSteps = 8, LearningRate = 1e-3, EmaDecay = 0, LogEvery = 100, Network = TinyModels.Options(),
            Precision = Precision.Float16, InitialLossScale = 1024, LossScaleGrowthInterval = 3,
        };
        var loop = new DiffusionTrainingLoop(d, options.Training, _ => { }, _ => { });
        loop.Run(data, seed: 5, fingerprint: "test");

        CollectionAssert.AreEqual(new double[] { 1024, 1024, 1024, 512, 512, 512, 1024, 1024 }, scales);
        Assert.AreEqual(1, loop.SkippedSteps, "the step with the inf is skipped");
        Assert.AreEqual(1L, seen!.LossScaler!.Overflows);
        Assert.AreEqual(2, seen.LossScaler.GoodSteps, "two good steps since the scale grew");
        Assert.IsTrue(d.Model.parameters().All(p => p.dtype == ScalarType.Float32 && p.isfinite().all().item<bool>()), "no inf reached the float32 weights");
    }

    [TestMethod]
    public void AScaleTooLargeForHalfPrecisionBacksOffWithoutStoppingTraining()
    {
        // 2⁴⁰ overflows half precision (largest 65504) in every gradient: the scaler halves it step after step, which the
        // loop must not count as the non-finite steps that stop training (5 in a row here), until gradients fit.
        var scales = new List<double>();
        MixedPrecision? seen = null;
        MixedPrecision.AfterBackward = (mixed, _) =>
        {
            seen = mixed;
            scales.Add(mixed.LossScaler!.Scale);
        };
        using var d = TinyModels.Diffusion(timesteps: 10);
        using var data = new TrainingImages(TinyModels.Patterns().repeat(2, 1, 1, 1), null, 0, null);
        var options = new DiffusionTrainerOptions
        {
            BatchSize = 4, TrainSteps = 40, LearningRate = 1e-3, EmaDecay = 0, LogEvery = 100, Network = TinyModels.Options(),
            Precision = Precision.Float16, InitialLossScale = Math.Pow(2, 40), MaxConsecutiveNonFiniteSteps = 5,
        };
        var loop = new DiffusionTrainingLoop(d, options.Training, _ => { }, _ => { });
        loop.Run(data, seed: 5, fingerprint: "test");

        Assert.AreEqual(40, loop.CompletedSteps);
        Assert.IsTrue(loop.SkippedSteps is >= 5 and < 35, $"skipped {loop.SkippedSteps} steps");
        Assert.AreEqual((long)loop.SkippedSteps, seen!.LossScaler!.Overflows);
        Assert.AreEqual(Math.Pow(2, 40 - loop.SkippedSteps), seen.LossScaler.Scale, "halved once per overflow");
        Assert.IsTrue(scales.Zip(scales.Skip(1)).All(pair => pair.Second == pair.First || pair.Second == pair.First / 2), "the scale only backs off here");
        Assert.IsTrue(d.Model.parameters().All(p => p.isfinite().all().item<bool>()));
    }

    [TestMethod]
    [DataRow("BFloat16")]
    [DataRow("Float16")]
    public void ResumingInSixteenBitsContinuesBitExactly(string name)
    {
        var precision = Enum.Parse<Precision>(name);
        var context = new MLContext(seed: 1);
        var data = MLNetTestData.Patterns(context, copies: 5);
        byte[] Train(int steps, string folder, bool resume)
        {
            var options = MLNetTestData.Options(steps);
            ((UNetOptions)options.Network).Dropout = 0.1; // the global generator must be restored too
            options.Precision = precision;
            options.LossScaleGrowthInterval = 4; // the scale grows at steps 4, 8 and 12: its state must cross the resume
            options.CheckpointDirectory = folder;
            options.CheckpointEvery = 6;
            options.Resume = resume;
            using var sampler = context.Generative().Diffusion(options).Fit(data);
            Assert.IsTrue(sampler.Model.Diffusion.Model.parameters().All(p => p.dtype == ScalarType.Float32), "the trained model is float32");
            return sampler.Model.SaveWeights();
        }

        string straight = Path.Combine(directory, "straight"), split = Path.Combine(directory, "split");
        byte[] whole = Train(12, straight, resume: false);
        byte[] half = Train(6, split, resume: false);
        byte[] resumed = Train(12, split, resume: true);
        CollectionAssert.AreNotEqual(half, resumed);
        CollectionAssert.AreEqual(whole, resumed, "12 steps straight must equal 6 + resume + 6");
        // The whole checkpoint too: weights, EMA, moments, generators and (for Float16) the loss scaler's state.
        CollectionAssert.AreEqual(File.ReadAllBytes(Checkpoint.PathFor(straight, 12)), File.ReadAllBytes(Checkpoint.PathFor(split, 12)), "the step-12 checkpoints");
    }

    [TestMethod]
    [DataRow("BFloat16")]
    [DataRow("Float16")]
    public void ACheckpointWrittenBeforeMixedPrecisionResumesInSixteenBits(string name)
    {
        // The format-2 fixture (no mixed-precision section) resumes in 16 bits: the scaler starts afresh.
        foreach (string file in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "Data", "Compatibility", "format2", "checkpoint")))
        {
            File.Copy(file, Path.Combine(directory, Path.GetFileName(file)));
        }

        var context = new MLContext(seed: 1);
        var options = new DiffusionTrainerOptions
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
            CheckpointDirectory = directory,
            CheckpointEvery = 2,
            KeepCheckpoints = 1,
            Resume = true,
            Precision = Enum.Parse<Precision>(name),
            Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 4 } },
        };
        var logs = new List<string>();
        context.Log += (_, e) => logs.Add(e.Message);
        var rows = Enumerable.Range(0, 16).Select(i => new PixelRow { Pixels = Enumerable.Range(0, 64).Select(j => (float)(((i % 2 == 0 ? j : 63 - j) * 4) % 256)).ToArray(), Label = i % 2 });
        using var sampler = context.Generative().Diffusion(options).Fit(context.Data.LoadFromEnumerable(rows.ToList()));
        Assert.IsTrue(logs.Any(l => l.Contains("Resumed from", StringComparison.Ordinal) && l.Contains("at step 2", StringComparison.Ordinal)), "it resumed from the old checkpoint");
        Assert.AreEqual(4, sampler.Model.TrainedSteps);
        Assert.IsTrue(sampler.Model.Diffusion.Model.parameters().All(p => p.dtype == ScalarType.Float32 && p.isfinite().all().item<bool>()));
        Assert.IsTrue(File.Exists(Checkpoint.PathFor(directory, 4)));
    }

    [TestMethod]
    public void BadPrecisionSettingsAreRefusedByName()
    {
        var options = MLNetTestData.Options();
        options.Precision = (Precision)7;
        Assert.AreEqual("Precision", Assert.ThrowsExactly<ArgumentOutOfRangeException>(options.Validate).ParamName);
        options = MLNetTestData.Options();
        options.InitialLossScale = 0;
        Assert.AreEqual("InitialLossScale", Assert.ThrowsExactly<ArgumentOutOfRangeException>(options.Validate).ParamName);
        options = MLNetTestData.Options();
        options.LossScaleGrowthInterval = 0;
        Assert.AreEqual("LossScaleGrowthInterval", Assert.ThrowsExactly<ArgumentOutOfRangeException>(options.Validate).ParamName);
        var sampling = new DiffusionSamplerOptions { Precision = (Precision)3 };
        Assert.AreEqual("Precision", Assert.ThrowsExactly<ArgumentOutOfRangeException>(sampling.Validate).ParamName);
    }
}
