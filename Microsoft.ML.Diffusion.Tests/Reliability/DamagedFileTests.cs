using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Diffusion.Import;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>
/// Seeded damage campaigns small enough for every test run (the long ones: <see cref="ReliabilityCommands"/>, recorded in
/// docs/reliability.md), and hostile configurations that must be refused before anything is allocated.
/// </summary>
[TestClass]
public sealed class DamagedFileTests
{
    private string directory = null!;

    [TestInitialize]
    public void CreateFolder() => directory = Directory.CreateTempSubdirectory("mldiffusion-damage-").FullName;

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(directory, recursive: true);

    [TestMethod]
    public void DamagedModelFilesLoadIdenticallyOrAreRefusedNamingTheFile()
    {
        using var target = new ModelFileTarget(directory);
        var report = DamageCampaign.Run(target, perKind: 60, seed: 12);
        Assert.AreEqual(0, report.Bad, report.Summary());
        Assert.AreEqual(180, report.Count(DamageOutcome.Identical) + report.Count(DamageOutcome.Refused), report.Summary());
        Assert.IsGreaterThan(150, report.Count(DamageOutcome.Refused), report.Summary());
    }

    [TestMethod]
    public void HostileModelStreamsNeverThrowAnythingButInvalidDataException()
    {
        var report = DamageCampaign.Run(new HostileModelTarget(directory), perKind: 40, seed: 12);
        Assert.AreEqual(0, report.Bad, report.Summary());
        Assert.AreEqual(40, report.Count(DamageKind.Truncate, DamageOutcome.Refused), report.Summary());
    }

    [TestMethod]
    public void DamagedCheckpointsAreRefusedNamingTheFileAndHostileOnesNeverThrowAnythingElse()
    {
        using (var target = new CheckpointTarget(directory))
        {
            var report = DamageCampaign.Run(target, perKind: 50, seed: 12);
            Assert.AreEqual(0, report.Bad, report.Summary());
            Assert.AreEqual(150, report.Count(DamageOutcome.Identical) + report.Count(DamageOutcome.Refused), report.Summary());
        }

        using (var hostile = new CheckpointTarget(directory, resealed: true))
        {
            var report = DamageCampaign.Run(hostile, perKind: 30, seed: 12);
            Assert.AreEqual(0, report.Bad, report.Summary());
            Assert.AreEqual(30, report.Count(DamageKind.Truncate, DamageOutcome.Refused), report.Summary());
        }
    }

    [TestMethod]
    public void DamagedIdxFilesAreRefusedOrDifferOnlyInPixelBytes()
    {
        foreach (bool gzip in new[] { false, true })
        {
            var report = DamageCampaign.Run(new IdxTarget(directory, gzip), perKind: 60, seed: 12);
            Assert.AreEqual(0, report.Bad, report.Summary());
            Assert.AreEqual(60, report.Count(DamageKind.Truncate, DamageOutcome.Refused), report.Summary());
            if (gzip)
            {
                Assert.AreEqual(0, report.Count(DamageOutcome.UndetectableChange), "gzip's CRC-32 catches changed pixels: " + report.Summary());
            }
        }
    }

    [TestMethod]
    public void AHostileGeneratorStateIsRefusedInsteadOfEndingTheProcess()
    {
        // libtorch's set_state throws a C++ exception that TorchSharp does not catch (found by the long hostile campaign:
        // "terminate called after throwing an instance of 'c10::Error' … Invalid mt19937 state"). The checkpoint reader checks
        // the fields libtorch checks; this test would end the test process if it did not.
        using (var live = new TorchSharp.torch.Generator(42, TorchSharp.torch.CPU))
        using (var state = live.get_state())
        using (var global = TorchSharp.torch.get_rng_state())
        {
            Assert.IsTrue(Checkpoint.IsValidGeneratorState(state.data<byte>().ToArray()), "a live generator's state");
            Assert.IsTrue(Checkpoint.IsValidGeneratorState(global.data<byte>().ToArray()), "the global generator's state");
        }

        using var target = new CheckpointTarget(directory, resealed: true);
        byte[] body = (byte[])target.Original.Clone();
        int at = IndexOfGeneratorState(body);
        BitConverter.GetBytes(0).CopyTo(body, at + 8); // "left" = 0: libtorch would abort
        File.WriteAllBytes(target.CasePath, target.Finish(body));
        var ex = Assert.ThrowsExactly<InvalidDataException>(target.Load);
        StringAssert.Contains(ex.Message, target.CasePath);
        StringAssert.Contains(ex.Message, "random generator state is invalid");
    }

    [TestMethod]
    public void TheParameterCountUsedToBoundAllocationsMatchesTheNetwork()
    {
        var shapes = new[]
        {
            new UNetOptions { Dim = 4, DimMults = new[] { 1, 2 }, AttentionHeads = 1, AttentionDimHead = 4 },
            new UNetOptions { Dim = 8, DimMults = new[] { 1 }, Channels = 3, AttentionHeads = 2, AttentionDimHead = 8, LearnedVariance = true },
            new UNetOptions { Dim = 8, DimMults = new[] { 1, 2, 4 }, AttentionHeads = 2, AttentionDimHead = 16, ClassCount = 10 },
            new UNetOptions { Dim = 16, DimMults = new[] { 1, 1, 2, 3 }, Channels = 2, AttentionHeads = 3, AttentionDimHead = 5 },
            new UNetOptions(),
        };
        foreach (var shape in shapes)
        {
            using var unet = new UNet(shape);
            Assert.AreEqual(unet.ParameterCount, shape.CountParameters(), $"Dim {shape.Dim}, mults {string.Join(",", shape.DimMults)}");
        }
    }

    [TestMethod]
    public void AbsurdConfigurationsAreRefusedBeforeAnythingIsBuilt()
    {
        var cases = new (string Name, Action<DiffusionModelConfig> Edit, string Expected)[]
        {
            ("gigantic Dim", c => ((UNetOptions)c.Diffusion.Network).Dim = 1_000_000_000, "U-Net Dim 1000000000"),
            ("gigantic widths", c => ((UNetOptions)c.Diffusion.Network).DimMults = new[] { 1, 8192 }, "every level's width"),
            ("a network the weights cannot hold", c => ((UNetOptions)c.Diffusion.Network).Dim = 64, "parameters but holds only"),
            ("gigantic image", c => { c.Diffusion.ImageHeight = 1 << 20; c.Diffusion.ImageWidth = 1 << 20; }, "image size 1048576×1048576"),
            ("gigantic T", c => c.Diffusion.Betas = Enumerable.Repeat(0.01, ModelLimits.MaxTimesteps + 1).ToArray(), "100001 timesteps"),
            ("negative β", c => ((double[])c.Diffusion.Betas!)[3] = -0.25, "β at index 3 is -0.25"),
            ("β of 1", c => ((double[])c.Diffusion.Betas!)[9] = 1.0, "β at index 9 is 1"),
            ("gigantic class count", c => c.Diffusion.Network.ClassCount = int.MaxValue, "2147483647 classes"),
            ("gigantic sampler micro-batch", c => c.Diffusion.Network.Channels = 1, "micro-batch of 50000000"),
            ("learned variance without its output", c => c.Diffusion.Variance = VarianceType.LearnedRange, "learned-variance"),
            ("indivisible image", c => { c.Diffusion.ImageHeight = 5; c.Diffusion.ImageWidth = 5; }, "not divisible by 2"),
        };
        var mlContext = new MLContext(seed: 1);
        foreach (var (name, edit, expected) in cases)
        {
            // The writer is the library's own: the file is valid in every other way (both SHA-256s match).
            string path = Path.Combine(directory, name.Replace(' ', '-') + ".zip");
            var config = TinyModelFile.Config();
            using (var sampler = TinyModelFile.Sampler(mlContext, config))
            {
                edit(config);
                if (name.Contains("micro-batch", StringComparison.Ordinal))
                {
                    sampler.Options.MicroBatchSize = 50_000_000; // the saved sampler settings are the sampler's own
                }

                mlContext.Model.Save(sampler, null, path);
            }

            long before = GC.GetAllocatedBytesForCurrentThread();
            var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusionSampler.Load(mlContext, path), name);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            StringAssert.Contains(ex.Message, path, name);
            StringAssert.Contains(ex.Message, expected, name);
            Assert.IsLessThan(64L << 20, allocated, $"{name}: {allocated:N0} managed bytes allocated before the refusal");
        }
    }

    [TestMethod]
    public void WeightsOfAnotherShapeAreRefusedNamingTheFile()
    {
        var mlContext = new MLContext(seed: 1);
        string path = Path.Combine(directory, "other-shape.zip");
        var config = TinyModelFile.Config();
        using (var sampler = TinyModelFile.Sampler(mlContext, config))
        {
            ((UNetOptions)config.Diffusion.Network).AttentionDimHead = 2; // a narrower network than the weights: fewer parameters, so only the shapes disagree
            mlContext.Model.Save(sampler, null, path);
        }

        var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusionSampler.Load(mlContext, path));
        StringAssert.Contains(ex.Message, path);
        StringAssert.Contains(ex.Message, "Mismatched tensor shape");
    }

    [TestMethod]
    public void NotANumberInTheConfigurationIsRefused()
    {
        // JSON has no NaN: a file carrying one (written by hand, hashes recomputed) fails in the parser, naming the source.
        string json = DiffusionModelFile.ConfigJson(TinyModelFile.Config()).Replace("\"MinSnrGamma\":null", "\"MinSnrGamma\":NaN", StringComparison.Ordinal);
        Assert.Contains("NaN", json);
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(DiffusionModelFile.FormatVersion);
            writer.Write(json);
            writer.Write((byte)1);
            writer.Write(100_000L);
            writer.Write(new byte[32]);
            writer.Write(SHA256.HashData(Encoding.UTF8.GetBytes(json)));
        }

        stream.Position = 0;
        using var reader = new BinaryReader(stream);
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusionModelFile.ReadHeader(reader, "Model file 'hand-made.zip'"));
        StringAssert.Contains(ex.Message, "hand-made.zip");
        StringAssert.Contains(ex.Message, "damaged diffusion model configuration");
    }

    [TestMethod]
    public void AnIdxFileWhoseCountWasDamagedIsRefusedNotReadInPart()
    {
        byte[] header = { 0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2 };
        byte[] file = header.Concat(new byte[5 * 4]).ToArray(); // 5 images of 2×2 present, 4 declared
        string path = Path.Combine(directory, "count.idx");
        File.WriteAllBytes(path, file);
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => IdxReader.ReadImages(path));
        StringAssert.Contains(ex.Message, path);
        StringAssert.Contains(ex.Message, "declares 4 images");
    }

    // The first generator state follows the magic, the format, the step, the fingerprint and the EMA update count; its
    // int32 length prefix is the live state's length.
    private static int IndexOfGeneratorState(byte[] checkpoint)
    {
        using var live = new TorchSharp.torch.Generator(1, TorchSharp.torch.CPU);
        using var state = live.get_state();
        byte[] prefix = BitConverter.GetBytes((int)state.numel());
        for (int i = 12; i < checkpoint.Length - 4; i++)
        {
            if (checkpoint.AsSpan(i, 4).SequenceEqual(prefix))
            {
                return i + 4;
            }
        }

        throw new InvalidOperationException("no generator state found");
    }

    [TestMethod]
    public void AGzipIdxFileIsDecompressedOnlyAsFarAsItsHeaderDeclares()
    {
        // A gzip "bomb": the header declares one 2×2 image; 256 MiB of zeros follow (a few hundred KiB compressed).
        string path = Path.Combine(directory, "bomb.idx.gz");
        using (var output = File.Create(path))
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal))
        {
            gzip.Write(new byte[] { 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2 });
            byte[] zeros = new byte[1 << 20];
            for (int i = 0; i < 256; i++)
            {
                gzip.Write(zeros);
            }
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => IdxReader.ReadImages(path));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        StringAssert.Contains(ex.Message, path);
        StringAssert.Contains(ex.Message, "goes on after them");
        Assert.IsLessThan(16L << 20, allocated, $"{allocated:N0} bytes allocated");
    }
}
