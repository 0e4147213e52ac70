using System;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Import;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Import;

[TestClass]
public sealed class ImageFolderTests
{
    private string directory = null!;

    [TestInitialize]
    public void CreateFolder() => directory = Directory.CreateTempSubdirectory("mldiffusion-images-").FullName;

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(directory, recursive: true);

    [TestMethod]
    public void LoadsMixedSizesResizedWithLabelsFromSubfolders()
    {
        Write("shirts/a.png", 12, 12, 0.5f);
        Write("shirts/b.png", 20, 10, 0.2f);
        Write("shoes/c.png", 8, 8, -0.5f);
        var view = ImageFolder.Load(new MLContext(), directory, imageSize: 8, channels: 1, labelsFromSubfolders: true);
        var pixels = view.GetColumn<VBuffer<float>>("Pixels").Select(v => v.DenseValues().ToArray()).ToArray();
        Assert.HasCount(3, pixels);
        Assert.IsTrue(pixels.All(p => p.Length == 64));
        Assert.AreEqual(191f, pixels[0][27], 2f, "0.5 in model space is pixel 191");
        var labels = view.GetColumn<uint>("Label").ToArray();
        CollectionAssert.AreEqual(new uint[] { 1, 1, 2 }, labels);

        var rgb = ImageFolder.Load(new MLContext(), directory, imageSize: 4, channels: 3);
        Assert.AreEqual(48, rgb.GetColumn<VBuffer<float>>("Pixels").First().Length);
    }

    [TestMethod]
    public void ACorruptFileIsNamed()
    {
        Write("ok.png", 8, 8, 0f);
        string bad = Path.Combine(directory, "broken.png");
        File.WriteAllBytes(bad, new byte[] { 0x89, 0x50, 0x4E, 0x47, 1, 2, 3 });
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => ImageFolder.Load(new MLContext(), directory, 8));
        StringAssert.Contains(ex.Message, bad);
    }

    [TestMethod]
    public void AFolderWithoutImagesIsRefused()
    {
        File.WriteAllText(Path.Combine(directory, "notes.txt"), "no images here");
        Assert.ThrowsExactly<InvalidOperationException>(() => ImageFolder.Load(new MLContext(), directory, 8));
        Assert.ThrowsExactly<DirectoryNotFoundException>(() => ImageFolder.Load(new MLContext(), Path.Combine(directory, "missing"), 8));
    }

    private void Write(string name, int width, int height, float value)
    {
        string path = Path.Combine(directory, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var image = full(new long[] { 1, 1, height, width }, value);
        ImageConversion.SavePng(ImageConversion.Grid(image, columns: 1, padding: 0), path);
    }
}
