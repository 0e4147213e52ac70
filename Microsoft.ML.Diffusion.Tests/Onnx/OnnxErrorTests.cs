using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Export;
using Microsoft.ML.Diffusion.Onnx;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Onnx;

/// <summary>Clear errors: damaged, foreign and network-only files name the file; unsupported exports say what is unsupported.</summary>
[TestClass]
public sealed class OnnxErrorTests
{
    [TestMethod]
    public void ADamagedForeignOrNetworkOnlyFileGetsAnErrorThatNamesIt()
    {
        using var one = TinyModels.OneThread();
        using var diffusion = OnnxTestModels.Diffusion(OnnxTestModels.Network("UNet"), timesteps: 20);
        string folder = Path.Combine(Path.GetTempPath(), $"mldiff-onnx-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            byte[] good = DiffusionOnnxExport.ToBytes(diffusion, new OnnxExportOptions { Scheduler = new DdimScheduler { Steps = 4 } });
            string truncated = Write(folder, "truncated.onnx", good[..(good.Length / 2)]);
            var flippedBytes = good.ToArray();
            for (int i = 0; i < 64; i++)
            {
                flippedBytes[i * 7] ^= 0xA5;
            }

            string flipped = Write(folder, "flipped.onnx", flippedBytes);
            string text = Write(folder, "notes.onnx", System.Text.Encoding.UTF8.GetBytes("this is not a model"));
            string foreign = Write(folder, "foreign.onnx", Foreign());
            string network = Write(folder, "network.onnx", DiffusionOnnxExport.ToBytes(diffusion, new OnnxExportOptions { Content = OnnxGraphContent.Network }));

            foreach (string file in new[] { truncated, flipped, text })
            {
                var e = Assert.ThrowsExactly<InvalidDataException>(() => new OnnxDiffusionGenerator(file));
                StringAssert.Contains(e.Message, file);
                StringAssert.Contains(e.Message, "not a valid ONNX model");
            }

            var f = Assert.ThrowsExactly<InvalidDataException>(() => new OnnxDiffusionGenerator(foreign));
            StringAssert.Contains(f.Message, foreign);
            StringAssert.Contains(f.Message, "not one exported by Microsoft.ML.Diffusion");
            var n = Assert.ThrowsExactly<InvalidDataException>(() => new OnnxDiffusionGenerator(network));
            StringAssert.Contains(n.Message, network);
            StringAssert.Contains(n.Message, "network alone");
            string missing = Path.Combine(folder, "missing.onnx");
            var m = Assert.ThrowsExactly<FileNotFoundException>(() => new OnnxDiffusionGenerator(missing));
            StringAssert.Contains(m.Message, missing);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public void AnUnsupportedExportSaysWhatIsUnsupported()
    {
        using var one = TinyModels.OneThread();
        using var diffusion = OnnxTestModels.Diffusion(OnnxTestModels.Network("UNet"), timesteps: 20);
        foreach (var (scheduler, expected) in new (DiffusionScheduler, string)[]
        {
            (new DdpmScheduler(), "'ddpm' scheduler"),
            (new EulerAncestralScheduler(), "'euler-a' scheduler"),
            (new DdimScheduler { Steps = 10, Eta = 0.5 }, "DDIM with η = 0.5"),
        })
        {
            var e = Assert.ThrowsExactly<NotSupportedException>(() => DiffusionOnnxExport.ToBytes(diffusion, new OnnxExportOptions { Scheduler = scheduler }));
            StringAssert.Contains(e.Message, expected);
        }

        var options = new GaussianDiffusionOptions { ImageHeight = 4, ImageWidth = 4, Timesteps = 100, Network = new ChannelMixOptions() };
        using var custom = options.CreateDiffusion();
        foreach (var content in new[] { OnnxGraphContent.Network, OnnxGraphContent.Sampler })
        {
            var e = Assert.ThrowsExactly<NotSupportedException>(() => DiffusionOnnxExport.ToBytes(custom, new OnnxExportOptions { Content = content }));
            StringAssert.Contains(e.Message, $"'{ChannelMixOptions.KindName}'");
            StringAssert.Contains(e.Message, "UNet");
        }
    }

    [TestMethod]
    public void TheDeployPackageReadsTheKeysTheExportWrites()
    {
        using var one = TinyModels.OneThread();
        using var diffusion = OnnxTestModels.Diffusion(OnnxTestModels.Network("DiT", classCount: 2), timesteps: 20);
        string file = Path.Combine(Path.GetTempPath(), $"mldiff-onnx-{Guid.NewGuid():N}.onnx");
        try
        {
            DiffusionOnnxExport.Export(diffusion, file, new OnnxExportOptions { Scheduler = new DpmSolverScheduler { Steps = 5 } });
            using var generator = new OnnxDiffusionGenerator(file);
            Assert.AreEqual((1, 8, 8, 2), (generator.Channels, generator.ImageHeight, generator.ImageWidth, generator.ClassCount));
            Assert.AreEqual("DiT", generator.Metadata[OnnxMetadataKeys.Network]);
            Assert.AreEqual("unrolled", generator.Metadata[OnnxMetadataKeys.Loop]);
            StringAssert.Contains(generator.Metadata[OnnxMetadataKeys.Scheduler], "dpm-solver++");
            Assert.AreEqual(5, generator.Metadata[OnnxMetadataKeys.VisitedTimesteps].Split(',').Length);
            var images = generator.Generate(new long[] { 1, 2 }, new[] { 0, -1 }, 1.5f);
            Assert.AreEqual(2 * 64, images.Length);
            Assert.IsTrue(images.All(v => v is >= 0 and <= 1));
            Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => generator.Generate(new long[] { 1 }, new[] { 3 }));
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static string Write(string folder, string name, byte[] bytes)
    {
        string path = Path.Combine(folder, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>A valid ONNX model of someone else's: y = Identity(x), no metadata.</summary>
    private static byte[] Foreign()
    {
        var graph = new OnnxGraphProto { Name = "identity" };
        graph.Inputs.Add(new OnnxValueInfo("x", OnnxDataType.Float, new long?[] { 1, 4 }));
        graph.Outputs.Add(new OnnxValueInfo("y", OnnxDataType.Float, new long?[] { 1, 4 }));
        graph.Nodes.Add(new OnnxNode("Identity", new[] { "x" }, new[] { "y" }, "id", Array.Empty<OnnxAttribute>()));
        using var stream = new MemoryStream();
        new OnnxModelProto { Graph = graph, Metadata = new List<KeyValuePair<string, string>>() }.WriteTo(stream);
        return stream.ToArray();
    }
}
