using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>
/// A network and a scheduler defined outside the library, each registered with one line, go through ML.NET's Fit, Save,
/// Load and Transform; and the library's own scheduler settings (DPM-Solver++'s order) reach the model file.
/// </summary>
[TestClass]
public sealed class CustomComponentTests
{
    private static string directory = string.Empty;

    [ClassInitialize]
    public static void Setup(TestContext context)
    {
        directory = Path.Combine(Path.GetTempPath(), "mld-custom-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        DenoiserKinds.Register<ChannelMixOptions>();
        SchedulerRegistry.Register<CountingScheduler>();
    }

    [ClassCleanup]
    public static void Cleanup()
    {
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void ANetworkAndASchedulerOfOurOwnSurviveFitSaveLoadAndTransform()
    {
        var context = new MLContext(seed: 1);
        var data = MLNetTestData.Patterns(context, copies: 4);
        var options = MLNetTestData.Options(steps: 4);
        options.Network = new ChannelMixOptions { Hidden = 6 };
        options.Sampling = new DiffusionSamplerOptions { Scheduler = new CountingScheduler { Steps = 4, Shrink = 0.5 } };
        using var trained = context.Generative().Diffusion(options).Fit(data);
        Assert.IsInstanceOfType<ChannelMixDenoiser>(trained.Model.Diffusion.Model);

        long before = CountingScheduler.StepsTaken;
        var expected = MLNetTestData.Pixels(trained.Transform(MLNetTestData.Seeds(context, 1, 2, 3)));
        Assert.AreEqual(4, CountingScheduler.StepsTaken - before, "the custom scheduler took the 4 steps (one chunk of 8 rows on the CPU)");
        Assert.IsTrue(expected.All(p => p.All(v => v is >= 63 and <= 192)), "Shrink = 0.5 halves the last (clamped) x̂₀: pixels stay in the middle half of [0, 255]");

        string path = Path.Combine(directory, "custom.zip");
        context.Model.Save(trained, null, path);
        var fresh = new MLContext();
        var loaded = (DiffusionSampler)fresh.Model.Load(path, out _);
        using (loaded)
        {
            var network = (ChannelMixOptions)loaded.Model.Network;
            Assert.AreEqual(6, network.Hidden, "the network's own setting is in the file");
            var scheduler = (CountingScheduler)loaded.Options.Scheduler;
            Assert.AreEqual(4, scheduler.Steps);
            Assert.AreEqual(0.5, scheduler.Shrink, "the scheduler's own setting is in the file");
            before = CountingScheduler.StepsTaken;
            var actual = MLNetTestData.Pixels(loaded.Transform(MLNetTestData.Seeds(fresh, 1, 2, 3)));
            Assert.AreEqual(4, CountingScheduler.StepsTaken - before, "the loaded model samples with the custom scheduler");
            Assert.AreEqual(expected.Count, actual.Count);
            for (int i = 0; i < expected.Count; i++)
            {
                CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}");
            }
        }
    }

    [TestMethod]
    public void DpmSolverOrderAndLowerOrderFinalAreSettingsOfTheSamplerOptionsAndOfTheModelFile()
    {
        var context = new MLContext(seed: 1);
        var options = MLNetTestData.Options(steps: 2);
        options.Sampling = new DiffusionSamplerOptions { Scheduler = new DpmSolverScheduler { Steps = 5, SolverOrder = 2, LowerOrderFinal = false } };
        using var trained = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 4));
        var seeds = MLNetTestData.Seeds(context, 1, 2);
        var secondOrderToTheEnd = MLNetTestData.Pixels(trained.Transform(seeds));
        string path = Path.Combine(directory, "dpm.zip");
        context.Model.Save(trained, null, path);
        string json = ReadConfig(path);
        string stored = json[json.IndexOf("\"Scheduler\":", StringComparison.Ordinal)..];
        stored = stored[..(stored.IndexOf('}', StringComparison.Ordinal) + 1)];
        StringAssert.Contains(stored, "\"SolverOrder\":2", stored);
        StringAssert.Contains(stored, "\"LowerOrderFinal\":false", stored);
        Assert.IsInstanceOfType<DpmSolverScheduler>(SchedulerRegistry.FromJson(stored["\"Scheduler\":".Length..]), stored);

        using var loaded = DiffusionSampler.Load(new MLContext(), path);
        var dpm = (DpmSolverScheduler)loaded.Options.Scheduler;
        Assert.AreEqual(2, dpm.SolverOrder);
        Assert.IsFalse(dpm.LowerOrderFinal);
        CollectionAssert.AreEqual(secondOrderToTheEnd[0], MLNetTestData.Pixels(loaded.Transform(MLNetTestData.Seeds(new MLContext(), 1, 2)))[0]);

        var firstOrderLast = loaded.Options.Clone();
        firstOrderLast.Scheduler = new DpmSolverScheduler { Steps = 5, LowerOrderFinal = true };
        using var other = new DiffusionSampler(new MLContext(), loaded.Model, firstOrderLast);
        Assert.IsFalse(secondOrderToTheEnd[0].SequenceEqual(MLNetTestData.Pixels(other.Transform(seeds))[0]), "LowerOrderFinal changes the last step");
    }

    private static string ReadConfig(string path)
    {
        using var zip = System.IO.Compression.ZipFile.OpenRead(path);
        foreach (var entry in zip.Entries)
        {
            using var stream = entry.Open();
            using var reader = new StreamReader(stream, System.Text.Encoding.UTF8);
            string text = reader.ReadToEnd();
            if (text.Contains("\"Sampling\"", StringComparison.Ordinal))
            {
                return text;
            }
        }

        Assert.Fail("no configuration in " + path);
        return string.Empty;
    }
}

/// <summary>A network of the test assembly: a per-pixel two-layer map of the channels and the time.</summary>
public sealed class ChannelMixOptions : DenoiserOptions
{
    /// <summary>The kind's name in model files.</summary>
    public const string KindName = "TestChannelMix";

    public override string Kind => KindName;

    public int Hidden { get; set; } = 4;

    public override int SizeDivisor => 1;

    public override Denoiser CreateDenoiser() => new ChannelMixDenoiser(this);

    public override DenoiserOptions Clone() => new ChannelMixOptions { Channels = Channels, LearnedVariance = LearnedVariance, ClassCount = ClassCount, Hidden = Hidden };

    protected override void ValidateShape()
    {
        if (Hidden < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Hidden), Hidden, "At least one hidden unit.");
        }
    }
}

/// <summary>The network of <see cref="ChannelMixOptions"/>.</summary>
public sealed class ChannelMixDenoiser : Denoiser
{
    private readonly TorchSharp.Modules.Linear first;
    private readonly TorchSharp.Modules.Linear second;
    private readonly ChannelMixOptions options;

    public ChannelMixDenoiser(ChannelMixOptions options)
        : base(nameof(ChannelMixDenoiser))
    {
        this.options = (ChannelMixOptions)options.Clone();
        first = nn.Linear(options.Channels + 1, options.Hidden);
        second = nn.Linear(options.Hidden, options.Channels * (options.LearnedVariance ? 2 : 1));
        RegisterComponents();
    }

    public override DenoiserOptions Options => options;

    public override Tensor forward(Tensor x, Tensor time, Tensor? classes)
    {
        using var scope = NewDisposeScope();
        var pixels = x.permute(0, 2, 3, 1);
        var t = (time.to(x.dtype) / 1000).view(-1, 1, 1, 1).expand(pixels.shape[0], pixels.shape[1], pixels.shape[2], 1);
        var h = nn.functional.silu(first.call(cat(new[] { pixels, t }, 3)));
        return second.call(h).permute(0, 3, 1, 2).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A scheduler of the test assembly: DDIM with η = 0, whose result at t = 0 is x̂₀ times <see cref="Shrink"/>; it counts
/// its steps (all instances together).
/// </summary>
public sealed class CountingScheduler : DiffusionScheduler
{
    private static long stepsTaken;

    public static long StepsTaken => Interlocked.Read(ref stepsTaken);

    public override string Name => "test-counting";

    public override bool UsesStepNoise => false;

    public int Steps { get; set; } = 3;

    public double Shrink { get; set; } = 1;

    protected override IReadOnlyList<int> SelectTimesteps(NoiseSchedule schedule) => SpacedTimesteps(schedule, Steps, TimestepSpacing.Uniform);

    protected override Tensor StepTo(DiffusionPrediction modelOutput, int timestep, int next, Tensor sample, Tensor? noise)
    {
        Interlocked.Increment(ref stepsTaken);
        if (next < 0)
        {
            return Shrink * modelOutput.PredictedStart;
        }

        double aNext = Schedule.AlphasCumprod[next];
        return (Math.Sqrt(aNext) * modelOutput.PredictedStart) + (Math.Sqrt(1 - aNext) * modelOutput.PredictedNoise);
    }
}
