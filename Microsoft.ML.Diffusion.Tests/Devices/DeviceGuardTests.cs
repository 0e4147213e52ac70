using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text.RegularExpressions;
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
        using var embedding = new Microsoft.ML.Diffusion.Networks.SinusoidalPositionEmbedding(16);
        embedding.to(Meta);
        using var time = embedding.call(tensor(new long[] { 0, 5, 9 }).to(Meta));
        Assert.AreEqual(DeviceType.META, time.device_type);
        CollectionAssert.AreEqual(new long[] { 3, 16 }, time.shape);
        foreach (nn.Module<Tensor, Tensor> layer in new nn.Module<Tensor, Tensor>[] { new Microsoft.ML.Diffusion.Networks.RmsNorm(8) })
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
        // without one bypasses the seeds. Only DeviceRandom calls torch's samplers; networks may initialise parameters.
        string library = Path.Combine(RepositoryRoot(), "Microsoft.ML.Diffusion");
        var draw = new Regex(@"(?<![\w.])(randn|rand|randint|randperm|normal|bernoulli|multinomial)\s*\(|\.(normal_|uniform_|random_|bernoulli_)\s*\(");
        var offenders = new List<string>();
        foreach (string file in Directory.EnumerateFiles(library, "*.cs", SearchOption.AllDirectories).Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)))
        {
            if (Path.GetFileName(file) == "DeviceRandom.cs")
            {
                continue;
            }

            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                string line = lines[i].Trim();
                if (line.StartsWith("//", StringComparison.Ordinal) || line.StartsWith("///", StringComparison.Ordinal) || line.Contains("new Parameter(randn(", StringComparison.Ordinal))
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

    private static GaussianDiffusion Build(PredictionTarget objective = PredictionTarget.Noise, VarianceType variance = VarianceType.FixedSmall)
    {
        manual_seed(1);
        var options = TinyModels.Options(learnedVariance: variance == VarianceType.LearnedRange, classCount: 4);
        return new GaussianDiffusion(new UNet(options), NoiseSchedule.Create(BetaSchedule.Cosine, 10), 8, 8, objective, DiffusionLoss.Huber, variance);
    }
}
