using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

[TestClass]
public sealed class PersistenceTests
{
    private static readonly int[] SeedValues = { 3, 14, 15, 92 };
    private static MLContext context = null!;
    private static DiffusionSampler sampler = null!;
    private static string directory = null!;
    private static string modelPath = null!;

    [ClassInitialize]
    public static void TrainAndSave(TestContext _)
    {
        context = new MLContext(seed: 1);
        sampler = context.Generative().Diffusion(MLNetTestData.Options(steps: 10)).Fit(MLNetTestData.Patterns(context));
        directory = Directory.CreateTempSubdirectory("mldiffusion-").FullName;
        modelPath = Path.Combine(directory, "model.zip");
        context.Model.Save(sampler, null, modelPath);
    }

    [ClassCleanup]
    public static void Cleanup()
    {
        sampler.Dispose();
        Directory.Delete(directory, recursive: true);
    }

    [TestMethod]
    public void ALoadedSamplerGeneratesTheSameBytes()
    {
        var expected = MLNetTestData.PixelHashes(sampler.Transform(MLNetTestData.Seeds(context, SeedValues))).ToArray();
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(modelPath, out var schema);
        Assert.IsInstanceOfType<DiffusionSampler>(loaded);
        var actual = MLNetTestData.PixelHashes(loaded.Transform(MLNetTestData.Seeds(fresh, SeedValues))).ToArray();
        CollectionAssert.AreEqual(expected, actual);
        Assert.AreEqual(SchedulerRegistry.ToJson(sampler.Options.Scheduler), SchedulerRegistry.ToJson(((DiffusionSampler)loaded).Options.Scheduler));
        ((DiffusionSampler)loaded).Dispose();
    }

    [TestMethod]
    public void AFreshProcessLoadsTheModelWithNoRegistrationCall()
    {
        var expected = MLNetTestData.PixelHashes(sampler.Transform(MLNetTestData.Seeds(context, SeedValues))).ToArray();
        var actual = ChildProcess.Run(new[] { "load-model", modelPath }.Concat(SeedValues.Select(s => s.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToArray());
        CollectionAssert.AreEqual(expected, actual);
    }

    [TestMethod]
    public void SaveAndLoadConveniencesWriteAnOrdinaryModelFile()
    {
        string path = Path.Combine(directory, "convenience.zip");
        sampler.Save(context, path);
        Assert.IsFalse(File.Exists(path + ".tmp"));
        using var loaded = DiffusionSampler.Load(new MLContext(), path);
        Assert.AreEqual(((UNetOptions)sampler.Model.Network).Dim, ((UNetOptions)loaded.Model.Network).Dim);
        Assert.AreEqual(UNetOptions.KindName, loaded.Model.Network.Kind);
        var a = MLNetTestData.PixelHashes(sampler.Transform(MLNetTestData.Seeds(context, 7))).Single();
        var b = MLNetTestData.PixelHashes(loaded.Transform(MLNetTestData.Seeds(context, 7))).Single();
        Assert.AreEqual(a, b);
    }

    [TestMethod]
    public void AChainWithImageTransformsRoundTrips()
    {
        string images = Path.Combine(directory, "images");
        Directory.CreateDirectory(images);
        using (var patterns = TinyModels.Patterns().repeat(3, 1, 1, 1))
        {
            for (int i = 0; i < 6; i++)
            {
                // 16×16 files so that ResizeImages has work to do.
                using var big = patterns[i].unsqueeze(0).repeat_interleave(2, 2).repeat_interleave(2, 3);
                ImageConversion.SavePng(ImageConversion.Grid(big, columns: 1, padding: 0), Path.Combine(images, $"p{i}.png"));
            }
        }

        var rows = Directory.GetFiles(images).Select(f => new ImageRow { Path = f, Seed = 5 }).ToArray();
        var data = context.Data.LoadFromEnumerable(rows);
        var options = MLNetTestData.Options(steps: 5);
        options.ImageColumnName = "Pixels";
        var pipeline = context.Transforms.LoadImages("Image", images, nameof(ImageRow.Path))
            .Append(context.Transforms.ResizeImages("Image", 8, 8))
            .Append(context.Transforms.ExtractPixels("Pixels", "Image", colorsToExtract: Microsoft.ML.Transforms.Image.ImagePixelExtractingEstimator.ColorBits.Red))
            .Append(context.Generative().Diffusion(options));
        var chain = pipeline.Fit(data);
        Assert.IsInstanceOfType<DiffusionSampler>(chain.LastTransformer);
        var expected = MLNetTestData.PixelHashes(chain.Transform(data)).ToArray();

        string path = Path.Combine(directory, "chain.zip");
        context.Model.Save(chain, data.Schema, path);
        var loaded = new MLContext().Model.Load(path, out var schema);
        Assert.IsNotNull(schema.GetColumnOrNull(nameof(ImageRow.Path)));
        var actual = MLNetTestData.PixelHashes(loaded.Transform(data)).ToArray();
        CollectionAssert.AreEqual(expected, actual);
        using var last = DiffusionSampler.Load(new MLContext(), path);
        Assert.AreEqual(8, last.Model.ImageWidth);
        chain.LastTransformer.Dispose();
    }

    [TestMethod]
    public void ANewerFormatIsRefusedWithItsOwnMessage()
    {
        string path = Copy("newer.zip");
        RewriteModelStream(path, bytes =>
        {
            int json = IndexOf(bytes, Encoding.UTF8.GetBytes("{\"ImageHeight\""));
            for (int prefix = 1; prefix <= 3; prefix++)
            {
                int at = json - prefix - 4;
                if (BitConverter.ToInt32(bytes, at) == DiffusionModelFile.FormatVersion)
                {
                    BitConverter.GetBytes(7).CopyTo(bytes, at);
                    return;
                }
            }

            Assert.Fail("format version not found before the JSON configuration");
        });
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusionSampler.Load(new MLContext(), path));
        StringAssert.Contains(ex.Message, "newer Microsoft.ML.Diffusion (model format 7)");
        StringAssert.Contains(ex.Message, path);
    }

    [TestMethod]
    public void FlippedWeightBytesAreDetected()
    {
        string path = Copy("flipped.zip");
        RewriteEntry(path, e => e.FullName.EndsWith("DiffusionWeights.bin", StringComparison.Ordinal), bytes => bytes[bytes.Length / 2] ^= 0x40);
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusionSampler.Load(new MLContext(), path));
        StringAssert.Contains(ex.Message, "SHA-256");
        StringAssert.Contains(ex.Message, path);
    }

    [TestMethod]
    public void AMissingWeightsEntryIsReported()
    {
        string path = Copy("missing.zip");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            zip.Entries.Single(e => e.FullName.EndsWith("DiffusionWeights.bin", StringComparison.Ordinal)).Delete();
        }

        var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusionSampler.Load(new MLContext(), path));
        StringAssert.Contains(ex.Message, "missing its 'DiffusionWeights.bin' entry");
    }

    [TestMethod]
    public void ATruncatedFileIsReported()
    {
        string path = Copy("truncated.zip");
        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusionSampler.Load(new MLContext(), path));
        StringAssert.Contains(ex.Message, path);
    }

    [TestMethod]
    public void ATruncatedWeightsEntryIsReported()
    {
        string path = Copy("short.zip");
        RewriteEntry(path, e => e.FullName.EndsWith("DiffusionWeights.bin", StringComparison.Ordinal), null, truncate: true);
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusionSampler.Load(new MLContext(), path));
        StringAssert.Contains(ex.Message, "truncated");
    }

    private static string Copy(string name)
    {
        string path = Path.Combine(directory, name);
        File.Copy(modelPath, path, overwrite: true);
        return path;
    }

    private static void RewriteModelStream(string path, Action<byte[]> edit) =>
        RewriteEntry(path, e => e.FullName.EndsWith("Model.key", StringComparison.Ordinal) && Contains(e, "{\"ImageHeight\""), edit);

    private static bool Contains(ZipArchiveEntry entry, string text)
    {
        using var stream = entry.Open();
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return IndexOf(memory.ToArray(), Encoding.UTF8.GetBytes(text)) >= 0;
    }

    private static void RewriteEntry(string path, Func<ZipArchiveEntry, bool> which, Action<byte[]>? edit, bool truncate = false)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Update);
        var entry = zip.Entries.Single(which);
        byte[] bytes;
        using (var stream = entry.Open())
        using (var memory = new MemoryStream())
        {
            stream.CopyTo(memory);
            bytes = memory.ToArray();
        }

        edit?.Invoke(bytes);
        if (truncate)
        {
            bytes = bytes[..(bytes.Length / 2)];
        }

        string name = entry.FullName;
        entry.Delete();
        using var output = zip.CreateEntry(name).Open();
        output.Write(bytes);
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i <= haystack.Length - needle.Length; i++)
        {
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle))
            {
                return i;
            }
        }

        return -1;
    }

    public sealed class ImageRow
    {
        public string Path { get; set; } = string.Empty;

        public int Seed { get; set; }
    }
}
