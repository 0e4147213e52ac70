using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Devices;

/// <summary>
/// CPU-side guards for device-agnostic code. PyTorch's "meta" device computes shapes only, and mixing a meta tensor with
/// a CPU tensor fails exactly as mixing a CUDA tensor with a CPU tensor does ("Expected all tensors to be on the same
/// device"), so running the paths on meta catches a tensor left on, or created on, the CPU without a GPU.
/// </summary>
[TestClass]
public sealed class DeviceGuardTests
{
    private static readonly Device Meta = new(DeviceType.META);

    [TestMethod]
    public void EveryTensorAModuleHoldsFollowsItToAnotherDevice()
    {
        using var diffusion = Build();
        diffusion.to(Meta);
        var misplaced = new List<string>();
        foreach (var (name, module) in diffusion.named_modules().Prepend(("", (nn.Module)diffusion)))
        {
            for (var type = module.GetType(); type is not null && type != typeof(nn.Module); type = type.BaseType)
            {
                foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public | BindingFlags.DeclaredOnly))
                {
                    if (typeof(Tensor).IsAssignableFrom(field.FieldType) && field.GetValue(module) is Tensor t && t.device_type != DeviceType.META)
                    {
                        misplaced.Add($"{name}.{field.Name} ({t.device})");
                    }
                }
            }
        }

        misplaced.AddRange(diffusion.named_parameters().Where(p => p.parameter.device_type != DeviceType.META).Select(p => p.name));
        misplaced.AddRange(diffusion.named_buffers().Where(b => b.buffer.device_type != DeviceType.META).Select(b => b.name));
        Assert.AreEqual(0, misplaced.Count, "left behind after .to(meta): " + string.Join(", ", misplaced));
    }

    [TestMethod]
    public void TheTimeEmbeddingAndNormalisationRunOnAnotherDevice()
    {
        // libtorch has no C++ meta kernel for convolutions, so the U-Net and its attention layers cannot run on meta; the
        // time embedding (the first GPU failure: a constant left on the CPU) and the normalisation can.
        using var embedding = new Microsoft.ML.Diffusion.Core.Networks.SinusoidalPositionEmbedding(16);
        embedding.to(Meta);
        using var time = embedding.call(tensor(new long[] { 0, 5, 9 }).to(Meta));
        Assert.AreEqual(DeviceType.META, time.device_type);
        CollectionAssert.AreEqual(new long[] { 3, 16 }, time.shape);
        foreach (nn.Module<Tensor, Tensor> layer in new nn.Module<Tensor, Tensor>[] { new Microsoft.ML.Diffusion.Core.Networks.RmsNorm(8) })
        {
            using (layer)
            {
                layer.to(Meta);
                using var output = layer.call(zeros(new long[] { 2, 8, 4, 4 }, device: Meta));
                Assert.AreEqual(DeviceType.META, output.device_type, layer.GetType().Name);
            }
        }
    }

    [TestMethod]
    public void EveryTensorTheCoreCreatesNamesItsDevice()
    {
        // libtorch's C++ meta kernels do not cover the maths (abs, where, convolutions…), so the paths around the network
        // are guarded at the source instead: in the layers that run on the model's device, a tensor is created with a
        // device: argument, or moved with .to(…) on the same line, or is a parameter or buffer made at construction (moved
        // by Module.to), or CPU-side state (checkpoints).
        string library = RepositoryRoot();
        var creation = new Regex(@"(?<![\w.])(zeros|ones|full|arange|tensor|empty|linspace|eye)\s*\(");
        var offenders = new List<string>();
        foreach (string folder in new[] { "Microsoft.ML.Diffusion/Core/Diffusion", "Microsoft.ML.Diffusion/Core/Sampling", "Microsoft.ML.Diffusion/Core/Training", "Microsoft.ML.Diffusion/Core/Networks", "Microsoft.ML.Diffusion.Tools/Evaluation" })
        {
            foreach (string file in Directory.EnumerateFiles(Path.Combine(library, folder.Replace('/', Path.DirectorySeparatorChar)), "*.cs", SearchOption.AllDirectories))
            {
                if (Path.GetFileName(file) is "Checkpoint.cs")
                {
                    continue;
                }

                var lines = File.ReadAllLines(file);
                for (int i = 0; i < lines.Length; i++)
                {
                    string line = lines[i].Trim();
                    bool exempt = line.StartsWith("//", StringComparison.Ordinal) || line.Contains("device", StringComparison.Ordinal) || line.Contains(".to(", StringComparison.Ordinal)
                        || line.Contains("new Parameter(", StringComparison.Ordinal) || line.Contains("Buffer(double[]", StringComparison.Ordinal) || line.Contains("new DeviceCopies(", StringComparison.Ordinal);
                    if (!exempt && creation.IsMatch(line))
                    {
                        offenders.Add($"{Path.GetRelativePath(library, file)}:{i + 1}: {line}");
                    }
                }
            }
        }

        Assert.AreEqual(0, offenders.Count, "tensors created without a device:\n" + string.Join("\n", offenders));
    }

    [TestMethod]
    public void DisposingARespacedDiffusionLeavesTheSharedNetworkAlive()
    {
        using var diffusion = PointwiseDiffusion(PredictionTarget.Noise, VarianceType.FixedSmall);
        diffusion.Respace(4).Dispose();
        using var output = diffusion.Model.call(zeros(new long[] { 1, 1, 8, 8 }), tensor(new long[] { 3 }));
        Assert.AreEqual(1, output.shape[0], "the network still works after its respaced view is disposed");
    }

    [TestMethod]
    public void OnTheCpuASampleIsTheSameWithAndWithoutTheDeviceHelper()
    {
        // DeviceRandom draws on the CPU with the generator and copies: on the CPU it must be exactly torch's own draw.
        using var a = new Generator(42, CPU);
        using var b = new Generator(42, CPU);
        using var viaHelper = DeviceRandom.Normal(new long[] { 3, 5 }, CPU, float32, a);
        using var direct = randn(new long[] { 3, 5 }, dtype: float32, generator: b);
        Assert.IsTrue(TestDevice.Same(viaHelper, direct));
        using var helperInts = DeviceRandom.Integers(0, 1000, new long[] { 7 }, Meta, a);
        Assert.AreEqual(DeviceType.META, helperInts.device_type, "a generator's draw lands on the asked device");
    }

    [TestMethod]
    public void EveryRandomDrawInTheLibraryGoesThroughTheDeviceHelper()
    {
        // A draw with a generator on a non-CPU device fails on CUDA ("Expected a 'cuda' device type for generator"); a draw
        // without one bypasses the seeds. Only DeviceRandom calls torch's samplers; networks may initialise parameters (at construction, on the CPU).
        string library = RepositoryRoot();
        var draw = new Regex(@"(?<![\w.])(randn|rand|randint|randperm|normal|bernoulli|multinomial)\s*\(|\.(normal_|uniform_|random_|bernoulli_)\s*\(");
        var offenders = new List<string>();
        var sources = new[] { "Microsoft.ML.Diffusion", "Microsoft.ML.Diffusion.Tools" }
            .SelectMany(project => Directory.EnumerateFiles(Path.Combine(library, project), "*.cs", SearchOption.AllDirectories));
        foreach (string file in sources.Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)))
        {
            if (Path.GetFileName(file) == "DeviceRandom.cs")
            {
                continue;
            }

            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                string line = lines[i].Trim();
                if (line.StartsWith("//", StringComparison.Ordinal) || line.StartsWith("///", StringComparison.Ordinal) || line.Contains("new Parameter(randn(", StringComparison.Ordinal) || line.Contains("nn.init.", StringComparison.Ordinal))
                {
                    continue;
                }

                if (draw.IsMatch(line))
                {
                    offenders.Add($"{Path.GetRelativePath(library, file)}:{i + 1}: {line}");
                }
            }
        }

        Assert.AreEqual(0, offenders.Count, "random draws outside DeviceRandom:\n" + string.Join("\n", offenders));
    }

    [TestMethod]
    public void TrainingNeverReloadsAModuleWithModuleLoad()
    {
        // TorchSharp's Module.load moves a module off the GPU to the CPU and back, which replaces every parameter: the
        // optimizer and the EMA would then step disposed tensors (the resume failure an H200 showed: "Tensor invalid --
        // empty handle"). On the CPU nothing moves, so only this source check catches it here. Checkpoints load in place.
        string training = Path.Combine(RepositoryRoot(), "Microsoft.ML.Diffusion", "Core", "Training");
        var offenders = Directory.EnumerateFiles(training, "*.cs", SearchOption.AllDirectories)
            .SelectMany(f => File.ReadAllLines(f).Select((line, i) => (File: Path.GetFileName(f), Line: line.Trim(), Number: i + 1)))
            .Where(x => !x.Line.StartsWith("//", StringComparison.Ordinal) && Regex.IsMatch(x.Line, @"\.load\s*\("))
            .Select(x => $"{x.File}:{x.Number}: {x.Line}")
            .ToList();
        Assert.AreEqual(0, offenders.Count, "Module.load in the training code:\n" + string.Join("\n", offenders));
    }

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "MLDiffusion.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"MLDiffusion.sln not found above {AppContext.BaseDirectory}.");
    }

    // A denoiser without convolutions (libtorch has no C++ meta kernels for them), so that everything around the network
    // — the maths, the samplers, the bound — can run on the meta device.
    private static GaussianDiffusion PointwiseDiffusion(PredictionTarget objective, VarianceType variance)
    {
        manual_seed(1);
        var options = new PointwiseOptions { LearnedVariance = variance == VarianceType.LearnedRange, ClassCount = 4 };
        return new GaussianDiffusion(options.CreateDenoiser(), NoiseSchedule.Create(BetaSchedule.Cosine, 10), 8, 8, objective, DiffusionLoss.Huber, variance);
    }

    private static GaussianDiffusion Build(PredictionTarget objective = PredictionTarget.Noise, VarianceType variance = VarianceType.FixedSmall)
    {
        manual_seed(1);
        var options = TinyModels.Options(learnedVariance: variance == VarianceType.LearnedRange, classCount: 4);
        return new GaussianDiffusion(new UNet(options), NoiseSchedule.Create(BetaSchedule.Cosine, 10), 8, 8, objective, DiffusionLoss.Huber, variance);
    }
}

/// <summary>Settings of <see cref="PointwiseDenoiser"/>.</summary>
internal sealed class PointwiseOptions : DenoiserOptions
{
    public override string Kind => "TestPointwise";

    public override int SizeDivisor => 1;

    public override Denoiser CreateDenoiser() => new PointwiseDenoiser(this);

    public override DenoiserOptions Clone() => new PointwiseOptions { Channels = Channels, LearnedVariance = LearnedVariance, ClassCount = ClassCount };

    protected override void ValidateShape()
    {
    }
}

/// <summary>A per-pixel linear map conditioned on the time embedding and label: meta-device friendly.</summary>
internal sealed class PointwiseDenoiser : Denoiser
{
    private readonly Microsoft.ML.Diffusion.Core.Networks.SinusoidalPositionEmbedding time_embedding;
    private readonly TorchSharp.Modules.Linear time_mlp;
    private readonly TorchSharp.Modules.Parameter class_embedding;
    private readonly TorchSharp.Modules.Linear mix;
    private readonly PointwiseOptions options;

    public PointwiseDenoiser(PointwiseOptions options)
        : base(nameof(PointwiseDenoiser))
    {
        this.options = (PointwiseOptions)options.Clone();
        int outputs = options.Channels * (options.LearnedVariance ? 2 : 1);
        time_embedding = new Microsoft.ML.Diffusion.Core.Networks.SinusoidalPositionEmbedding(8);
        time_mlp = nn.Linear(8, outputs);
        class_embedding = new TorchSharp.Modules.Parameter(randn(options.ClassCount + 1, outputs));
        mix = nn.Linear(options.Channels, outputs);
        RegisterComponents();
    }

    public override DenoiserOptions Options => options;

    public override Tensor forward(Tensor x, Tensor time, Tensor? classes)
    {
        using var scope = NewDisposeScope();
        var h = mix.call(x.permute(0, 2, 3, 1)) + time_mlp.call(time_embedding.call(time)).unsqueeze(1).unsqueeze(1);
        var labels = classes ?? full(x.shape[0], options.ClassCount, dtype: int64, device: x.device);
        // One-hot product instead of an embedding lookup: index_select has no meta kernel.
        var oneHot = labels.unsqueeze(1).eq(arange(options.ClassCount + 1, device: x.device).unsqueeze(0)).to(x.dtype);
        h = h + matmul(oneHot, class_embedding).unsqueeze(1).unsqueeze(1);
        return h.permute(0, 3, 1, 2).MoveToOuterDisposeScope();
    }
}
