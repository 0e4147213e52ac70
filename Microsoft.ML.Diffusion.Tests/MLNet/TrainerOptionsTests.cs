using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Threading;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

[TestClass]
public sealed class TrainerOptionsTests : OneThreadTests
{
    // The settings an experiment chooses itself for each trial (documented on DiffusionExperimentSettings.BaseOptions).
    private static readonly string[] SetByTheExperiment =
    {
        nameof(DiffusionTrainerOptions.Schedule), nameof(DiffusionTrainerOptions.Objective), nameof(DiffusionTrainerOptions.Loss),
        nameof(DiffusionTrainerOptions.Variance), nameof(DiffusionTrainerOptions.LearningRate), nameof(DiffusionTrainerOptions.WarmupSteps),
        nameof(DiffusionTrainerOptions.EmaDecay), nameof(DiffusionTrainerOptions.Seed), nameof(DiffusionTrainerOptions.MaxTrainingTime),
        nameof(DiffusionTrainerOptions.TrainSteps), nameof(DiffusionTrainerOptions.CheckpointDirectory),
        nameof(DiffusionTrainerOptions.CheckpointEvery), nameof(DiffusionTrainerOptions.Resume),
    };

    private static readonly Lazy<DiffusionModel> TinyInitialModel = new(() =>
    {
        var diffusion = TinyModels.Diffusion();
        return new DiffusionModel(new DiffusionModelConfig { Diffusion = diffusion.Options }, diffusion);
    });

    private static PropertyInfo[] Settable<T>() => typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.SetMethod is { IsPublic: true }).ToArray();

    [TestMethod]
    public void CloneCopiesEveryPublicSettingDeeply()
    {
        var original = new DiffusionTrainerOptions();
        foreach (var property in Settable<DiffusionTrainerOptions>())
        {
            property.SetValue(original, Different(property, property.GetValue(original)));
        }

        var copy = original.Clone();
        foreach (var property in Settable<DiffusionTrainerOptions>())
        {
            AssertSameValue(property.GetValue(original), property.GetValue(copy), property.Name);
        }

        Assert.AreNotSame(original.Network, copy.Network);
        Assert.AreNotSame(original.Sampling, copy.Sampling);
        Assert.AreNotSame(original.CustomBetas, copy.CustomBetas);
        ((UNetOptions)copy.Network).Dim = 128;
        copy.Sampling.Scheduler = new DdimScheduler { Steps = 99 };
        Assert.AreNotSame(original.Sampling.Scheduler, copy.Sampling.Scheduler);
        Assert.AreNotEqual(128, ((UNetOptions)original.Network).Dim, "the copy has its own network options");
        Assert.IsInstanceOfType<DdpmScheduler>(original.Sampling.Scheduler, "the copy has its own sampler options");
    }

    [TestMethod]
    public void TheFlatPropertiesReadAndWriteOneDescriptionAndOneSettingsObject()
    {
        foreach (var options in new[]
        {
            new DiffusionTrainerOptions { ImageHeight = 8, ImageSize = 16, Timesteps = 50, BatchSize = 4, TrainSteps = 100 },
            new DiffusionTrainerOptions { ImageSize = 16, ImageHeight = 8, Timesteps = 50, BatchSize = 4, TrainSteps = 100 },
        })
        {
            Assert.AreEqual(8, options.Height);
            Assert.AreEqual(16, options.Width);
            Assert.AreEqual(8, options.Diffusion.ImageHeight, "the order of the initializer does not matter");
            Assert.AreEqual(16, options.Diffusion.ImageWidth);
            Assert.AreEqual(50, options.Diffusion.Timesteps);
            Assert.AreSame(options.Network, options.Diffusion.Network);
            Assert.AreEqual(4, options.Training.BatchSize);
            Assert.AreEqual(10, options.Training.EffectiveWarmupSteps);
            options.ImageHeight = null;
            Assert.AreEqual(16, options.Diffusion.ImageHeight, "without an override the side is ImageSize");
        }

        var trainer = MLNetTestData.Options();
        trainer.Channels = 3;
        trainer.Variance = VarianceType.LearnedRange;
        var model = trainer.DescribeModel(classCount: 5);
        Assert.AreEqual(3, model.Network.Channels);
        Assert.IsTrue(model.Network.LearnedVariance);
        Assert.AreEqual(5, model.Network.ClassCount);
        Assert.AreEqual(1, trainer.Network.Channels, "the options' own network is left as it was");
        model.Validate();
    }

    [TestMethod]
    public void EveryBaseSettingReachesTheExperimentsTrials()
    {
        var context = new MLContext(seed: 1);
        var baseOptions = MLNetTestData.Options();
        baseOptions.MicroBatchSize = 4;
        baseOptions.WeightDecay = 0.01;
        baseOptions.CustomBetas = new[] { 0.1, 0.2, 0.3 };
        baseOptions.KeepCheckpoints = 5;
        baseOptions.MaxConsecutiveNonFiniteSteps = 7;
        baseOptions.GradientClip = 0.5;
        baseOptions.GradientAccumulationSteps = 2;
        baseOptions.RandomHorizontalFlip = true;
        baseOptions.ConditionDropout = 0.2;
        baseOptions.MinSnrGamma = 5;
        baseOptions.LogEvery = 3;
        ((UNetOptions)baseOptions.Network).AttentionHeads = 1;
        baseOptions.Sampling.Scheduler = new DdimScheduler { Steps = 3 };
        baseOptions.MaxTrainingTime = TimeSpan.FromHours(1);
        var settings = new DiffusionExperimentSettings
        {
            BaseOptions = baseOptions,
            SearchSpace = new DiffusionSearchSpace { Widths = new[] { 8 } },
            Trials = 1,
            FirstRoundSteps = 1,
            ValidationFraction = 0.25,
            ValidationImages = 4,
        };
        using var result = context.Generative().CreateDiffusionExperiment(settings).Run(MLNetTestData.Patterns(context, copies: 8));
        var trial = result.Trials.Single().Options;
        foreach (var property in Settable<DiffusionTrainerOptions>().Where(p => !SetByTheExperiment.Contains(p.Name) && p.Name != nameof(DiffusionTrainerOptions.Network)))
        {
            AssertSameValue(property.GetValue(baseOptions), property.GetValue(trial), property.Name);
        }

        foreach (var property in Settable<UNetOptions>().Where(p => p.Name is not (nameof(UNetOptions.Dim) or nameof(UNetOptions.Dropout))))
        {
            AssertSameValue(property.GetValue(baseOptions.Network), property.GetValue(trial.Network), "Network." + property.Name);
        }

        Assert.IsNull(trial.MaxTrainingTime, "the experiment's MaxTime is the budget, not each trial's");
        Assert.AreNotSame(baseOptions.Network, trial.Network, "trials never change the base options");
        Assert.AreEqual(3, ((DdimScheduler)result.BestSampler.Options.Scheduler).Steps, "the base sampler settings reach the trained sampler");
    }

    [TestMethod]
    public void WithoutASeedTheMLContextsSeedMakesTrainingRepeatable()
    {
        static byte[] Train(int contextSeed)
        {
            var context = new MLContext(seed: contextSeed);
            var options = MLNetTestData.Options(steps: 3);
            options.Seed = null;
            using var sampler = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 2));
            return sampler.Model.SaveWeights();
        }

        byte[] first = Train(1);
        CollectionAssert.AreEqual(first, Train(1), "new MLContext(seed: 1) twice must train the same weights");
        CollectionAssert.AreNotEqual(first, Train(2), "another context seed gives another initialisation");
    }

    [TestMethod]
    public void ACheckpointIsNotResumedWithAnotherMicroBatchSize()
    {
        string directory = Directory.CreateTempSubdirectory("mldiffusion-micro-").FullName;
        try
        {
            var context = new MLContext(seed: 1);
            var data = MLNetTestData.Patterns(context, copies: 2);
            var options = MLNetTestData.Options(steps: 2);
            options.CheckpointDirectory = directory;
            context.Generative().Diffusion(options).Fit(data).Dispose();

            options.Resume = true;
            options.TrainSteps = 3;
            options.MicroBatchSize = 3; // splits the batch of 8: other timestep and noise draws, so not an exact resume
            var ex = Assert.ThrowsExactly<InvalidOperationException>(() => context.Generative().Diffusion(options).Fit(data));
            StringAssert.Contains(ex.Message, "other settings");
            StringAssert.Contains(ex.Message, "chunks of 3");

            options.MicroBatchSize = 8; // does not split a batch of 8: the same run
            using var resumed = context.Generative().Diffusion(options).Fit(data);
            Assert.AreEqual(3, resumed.Model.TrainedSteps);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void UNetShapesThatCannotBeBuiltAreRefusedBeforeAnyDataIsRead()
    {
        var context = new MLContext(seed: 1);
        foreach (int dim in new[] { 7, 2, 0, -4 })
        {
            var options = MLNetTestData.Options();
            ((UNetOptions)options.Network).Dim = dim;
            var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(options), $"Dim {dim}");
            StringAssert.Contains(ex.Message, "even and at least 4");
            StringAssert.Contains(ex.Message, $"got {dim}");
        }

        var deep = MLNetTestData.Options();
        ((UNetOptions)deep.Network).DimMults = Enumerable.Repeat(1, 17).ToArray();
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(deep));

        // The smallest accepted width builds and runs.
        using var unet = new UNet(new UNetOptions { Dim = 4, DimMults = new[] { 1, 2 }, AttentionHeads = 1, AttentionDimHead = 4 });
        using var scope = NewDisposeScope();
        var output = unet.forward(zeros(2, 1, 8, 8), tensor(new long[] { 0, 5 }));
        CollectionAssert.AreEqual(new long[] { 2, 1, 8, 8 }, output.shape);
    }

    // A value of the property's type that differs from the current one; every settable type must be covered here.
    private static object? Different(PropertyInfo property, object? current)
    {
        Type type = property.PropertyType;
        Type? underlying = Nullable.GetUnderlyingType(type);
        if (type == typeof(int) || underlying == typeof(int))
        {
            return ((int?)current ?? 2) + 7;
        }

        if (type == typeof(double) || underlying == typeof(double))
        {
            return ((double?)current ?? 0.5) + 0.25;
        }

        if (type == typeof(bool))
        {
            return !(bool)current!;
        }

        if (type == typeof(string))
        {
            return (string?)current + "X";
        }

        if (type.IsEnum)
        {
            return Enum.GetValues(type).Cast<object>().First(v => !v.Equals(current));
        }

        if (underlying == typeof(TimeSpan))
        {
            return TimeSpan.FromMinutes(3);
        }

        if (type == typeof(IReadOnlyList<double>))
        {
            return new[] { 0.01, 0.02, 0.03 };
        }

        if (type == typeof(DenoiserOptions) || type == typeof(UNetOptions))
        {
            return new UNetOptions { Dim = 12, DimMults = new[] { 1, 3 }, Channels = 3, Dropout = 0.2, AttentionHeads = 3, AttentionDimHead = 5, LearnedVariance = true, ClassCount = 4 };
        }

        if (type == typeof(DiffusionSamplerOptions))
        {
            return new DiffusionSamplerOptions { Scheduler = new DdpmScheduler(), GuidanceScale = 3, Seed = 11, ClipDenoised = false, MicroBatchSize = 4, SeedColumnName = "S", LabelColumnName = "L", OutputImageColumnName = "I", OutputPixelsColumnName = "P" };
        }

        if (type == typeof(CancellationToken))
        {
            return new CancellationTokenSource().Token;
        }

        if (type == typeof(IProgress<TrainingProgress>))
        {
            return new SyncProgress<TrainingProgress>(_ => { });
        }

        if (type == typeof(DiffusionModel))
        {
            // Fine-tuning's starting model (InitialModel): a tiny one, shared by the test run.
            return TinyInitialModel.Value;
        }

        Assert.Fail($"DiffusionTrainerOptions.{property.Name} has a type ({type}) this test does not know: add a value for it here.");
        return null;
    }

    private static void AssertSameValue(object? expected, object? actual, string name)
    {
        switch (expected)
        {
            case UNetOptions or DiffusionSamplerOptions:
                Assert.IsNotNull(actual, name);
                foreach (var property in expected.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
                {
                    AssertSameValue(property.GetValue(expected), property.GetValue(actual), name + "." + property.Name);
                }

                break;
            case DiffusionScheduler scheduler:
                Assert.IsInstanceOfType<DiffusionScheduler>(actual, name);
                Assert.AreEqual(SchedulerRegistry.ToJson(scheduler), SchedulerRegistry.ToJson((DiffusionScheduler)actual), name);
                break;
            case IEnumerable sequence and not string:
                Assert.IsInstanceOfType<IEnumerable>(actual, name);
                CollectionAssert.AreEqual(sequence.Cast<object>().ToArray(), ((IEnumerable)actual).Cast<object>().ToArray(), name);
                break;
            default:
                Assert.AreEqual(expected, actual, name);
                break;
        }
    }
}
