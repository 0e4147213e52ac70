using System;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Training;

[TestClass]
public sealed class TrainingLoopTests
{
    private string directory = null!;

    [TestInitialize]
    public void CreateFolder() => directory = Directory.CreateTempSubdirectory("mldiffusion-ckpt-").FullName;

    [TestCleanup]
    public void DeleteFolder()
    {
        Checkpoint.BeforeRename = null;
        Directory.Delete(directory, recursive: true);
    }

    [TestMethod]
    public void ResumingContinuesBitExactly()
    {
        var context = new MLContext(seed: 1);
        var data = MLNetTestData.Patterns(context, copies: 5);
        byte[] Train(int steps, string folder, bool resume)
        {
            var options = MLNetTestData.Options(steps);
            ((UNetOptions)options.Network).Dropout = 0.1; // the global generator must be restored too
            options.CheckpointDirectory = folder;
            options.CheckpointEvery = 4;
            options.Resume = resume;
            using var sampler = context.Generative().Diffusion(options).Fit(data);
            return sampler.Model.SaveWeights();
        }

        byte[] straight = Train(12, Path.Combine(directory, "straight"), resume: false);
        string split = Path.Combine(directory, "split");
        byte[] half = Train(6, split, resume: false);
        Assert.IsTrue(File.Exists(Checkpoint.PathFor(split, 6)), "a checkpoint is written at the end");
        byte[] resumed = Train(12, split, resume: true);
        CollectionAssert.AreNotEqual(half, resumed);
        CollectionAssert.AreEqual(straight, resumed, "12 steps straight must equal 6 + resume + 6");
    }

    [TestMethod]
    public void MicroBatchesTrainTheSameModelShapeAndLowerTheLoss()
    {
        var context = new MLContext(seed: 1);
        var reports = new System.Collections.Generic.List<double>();
        var options = MLNetTestData.Options(40);
        options.MicroBatchSize = 3; // 8 images per batch: chunks of 3, 3 and 2
        options.LogEvery = 10;
        options.Progress = new SyncProgress<TrainingProgress>(p => reports.Add(p.Loss));
        using var sampler = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 4));
        Assert.HasCount(4, reports);
        Assert.IsTrue(reports.All(double.IsFinite) && reports[^1] < reports[0], string.Join(", ", reports));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(new DiffusionTrainerOptions { MicroBatchSize = 0 }));
    }

    [TestMethod]
    public void OnlyTheNewestCheckpointsAreKept()
    {
        var context = new MLContext(seed: 1);
        var options = MLNetTestData.Options(10);
        options.CheckpointDirectory = directory;
        options.CheckpointEvery = 2;
        options.KeepCheckpoints = 2;
        context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 2)).Dispose();
        var names = Directory.GetFiles(directory).Select(Path.GetFileName).OrderBy(n => n).ToArray();
        CollectionAssert.AreEqual(new[] { "checkpoint-00000008.ckpt", "checkpoint-00000010.ckpt" }, names);
    }

    [TestMethod]
    public void ACrashBetweenWriteAndRenameLeavesThePreviousCheckpointLoadable()
    {
        var context = new MLContext(seed: 1);
        var data = MLNetTestData.Patterns(context, copies: 2);
        var options = MLNetTestData.Options(8);
        options.CheckpointDirectory = directory;
        options.CheckpointEvery = 4;
        Checkpoint.BeforeRename = temp =>
        {
            if (temp.Contains("00000008", StringComparison.Ordinal))
            {
                throw new IOException("simulated crash before rename");
            }
        };
        Assert.ThrowsExactly<IOException>(() => context.Generative().Diffusion(options).Fit(data));
        Checkpoint.BeforeRename = null;
        Assert.AreEqual(Checkpoint.PathFor(directory, 4), Checkpoint.FindLatest(directory));
        Assert.IsTrue(File.Exists(Checkpoint.PathFor(directory, 8) + ".tmp"), "the interrupted write left only a temporary file");

        options.Resume = true;
        var reports = new System.Collections.Generic.List<int>();
        options.LogEvery = 1;
        options.Progress = new SyncProgress<TrainingProgress>(p => reports.Add(p.Step));
        using var sampler = context.Generative().Diffusion(options).Fit(data);
        Assert.AreEqual(5, reports.Min(), "training resumed after step 4");
    }

    [TestMethod]
    public void ACheckpointFromOtherSettingsIsRefused()
    {
        var context = new MLContext(seed: 1);
        var data = MLNetTestData.Patterns(context, copies: 2);
        var options = MLNetTestData.Options(2);
        options.CheckpointDirectory = directory;
        context.Generative().Diffusion(options).Fit(data).Dispose();
        options.Resume = true;
        options.TrainSteps = 4;
        options.BatchSize = 4;
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => context.Generative().Diffusion(options).Fit(data));
        StringAssert.Contains(ex.Message, "other settings");
    }

    [TestMethod]
    public void StepsWithNonFiniteLossAreSkippedNeverApplied()
    {
        using var d = TinyModels.Diffusion(timesteps: 10);
        var images = TinyModels.Patterns();
        images[1] = full_like(images[1], double.NaN);
        using var data = new TrainingImages(images, null, 0, null);
        var options = new DiffusionTrainerOptions { BatchSize = 1, TrainSteps = 20, LearningRate = 1e-3, EmaDecay = 0, LogEvery = 100, Network = TinyModels.Options() };
        var loop = new DiffusionTrainingLoop(d, options.Training, _ => { }, _ => { });
        loop.Run(data, seed: 5, fingerprint: "test");
        Assert.IsTrue(loop.SkippedSteps is > 0 and < 20, $"skipped {loop.SkippedSteps}");
        Assert.IsTrue(d.parameters().All(p => p.isfinite().all().item<bool>()), "no NaN reached the weights");
    }

    [TestMethod]
    public void TooManyNonFiniteStepsInARowStopWithAClearError()
    {
        using var d = TinyModels.Diffusion(timesteps: 10);
        using var data = new TrainingImages(full(new long[] { 2, 1, 8, 8 }, double.NaN), null, 0, null);
        var options = new DiffusionTrainerOptions { BatchSize = 2, TrainSteps = 50, MaxConsecutiveNonFiniteSteps = 5, Network = TinyModels.Options() };
        var loop = new DiffusionTrainingLoop(d, options.Training, _ => { }, _ => { });
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => loop.Run(data, 1, "test"));
        StringAssert.Contains(ex.Message, "5 steps in a row had a non-finite loss");
    }

    [TestMethod]
    public void TheEmaFollowsItsUpdateRuleWithARampedDecay()
    {
        Assert.AreEqual(0.0, ExponentialMovingAverage.DecayAt(0, 0.995));
        Assert.AreEqual(1 - Math.Pow(11, -2.0 / 3), ExponentialMovingAverage.DecayAt(10, 0.995), 1e-15);
        Assert.AreEqual(0.995, ExponentialMovingAverage.DecayAt(1_000_000, 0.995));

        using var module = nn.Linear(2, 1, hasBias: false);
        using (no_grad())
        {
            module.weight!.copy_(tensor(new float[,] { { 1, 2 } }));
        }

        using var ema = new ExponentialMovingAverage(module, 0.9);
        ema.Update(); // decay 0: the average becomes the weights
        using (no_grad())
        {
            module.weight!.copy_(tensor(new float[,] { { 3, 4 } }));
        }

        ema.Update(); // decay d₁ = 1 − 2^(−2/3)
        double d1 = ExponentialMovingAverage.DecayAt(1, 0.9);
        var shadow = ema.Shadow[0].data<float>().ToArray();
        Assert.AreEqual((d1 * 1) + ((1 - d1) * 3), shadow[0], 1e-6);
        Assert.AreEqual((d1 * 2) + ((1 - d1) * 4), shadow[1], 1e-6);
    }

    [TestMethod]
    public void TheLearningRateWarmsUpLinearly()
    {
        Assert.AreEqual(0.1, DiffusionTrainingLoop.LearningRateAt(0, 1.0, 10), 1e-12);
        Assert.AreEqual(0.5, DiffusionTrainingLoop.LearningRateAt(4, 1.0, 10), 1e-12);
        Assert.AreEqual(1.0, DiffusionTrainingLoop.LearningRateAt(9, 1.0, 10), 1e-12);
        Assert.AreEqual(1.0, DiffusionTrainingLoop.LearningRateAt(500, 1.0, 10), 1e-12);
        Assert.AreEqual(1.0, DiffusionTrainingLoop.LearningRateAt(0, 1.0, 0), 1e-12);
    }
}
