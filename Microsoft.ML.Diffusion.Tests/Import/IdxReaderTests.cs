using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Import;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Import;

[TestClass]
public sealed class IdxReaderTests
{
    private string directory = null!;

    [TestInitialize]
    public void CreateFolder() => directory = Directory.CreateTempSubdirectory("mldiffusion-idx-").FullName;

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(directory, recursive: true);

    [TestMethod]
    public void ReadsGzipAndRawImagesAndLabels()
    {
        byte[] images = Idx(0x803, new[] { 3, 2, 4 }, Enumerable.Range(0, 24).Select(i => (byte)(i * 10)).ToArray());
        byte[] labels = Idx(0x801, new[] { 3 }, new byte[] { 7, 0, 9 });
        string raw = Write("images.idx", images);
        string gz = Write("images.idx.gz", Gzip(images));
        string lab = Write("labels.gz", Gzip(labels));
        foreach (string path in new[] { raw, gz })
        {
            var read = IdxReader.ReadImages(path);
            Assert.AreEqual(3, read.Count);
            Assert.AreEqual(2, read.Rows);
            Assert.AreEqual(4, read.Columns);
            Assert.AreEqual(230, read.Pixels.Span[23]);
        }

        var view = IdxReader.Load(new MLContext(), gz, lab);
        var pixels = view.GetColumn<VBuffer<float>>("Pixels").Select(v => v.DenseValues().ToArray()).ToArray();
        var labelValues = view.GetColumn<int>("Label").ToArray();
        CollectionAssert.AreEqual(new[] { 7, 0, 9 }, labelValues);
        Assert.AreEqual(80f, pixels[1][0]);
        Assert.AreEqual(new VectorDataViewType(NumberDataViewType.Single, 1, 2, 4), view.Schema["Pixels"].Type);
    }

    [TestMethod]
    public void ReadsTheShippedFashionMnistTestSplit()
    {
        string folder = Path.Combine(AppContext.BaseDirectory, "fashion-mnist");
        var images = IdxReader.ReadImages(Path.Combine(folder, "t10k-images-idx3-ubyte.gz"));
        var labels = IdxReader.ReadLabels(Path.Combine(folder, "t10k-labels-idx1-ubyte.gz"));
        Assert.AreEqual(10_000, images.Count);
        Assert.AreEqual(28, images.Rows);
        Assert.AreEqual(10_000, labels.Length);
        Assert.AreEqual(9, labels[0]); // the first test image is an ankle boot
        Assert.AreEqual(10, labels.Distinct().Count());
    }

    [TestMethod]
    public void ABadMagicNumberIsNamed()
    {
        string path = Write("labels-as-images", Idx(0x801, new[] { 1 }, new byte[] { 1 }));
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => IdxReader.ReadImages(path));
        StringAssert.Contains(ex.Message, "magic number 0x00000801, expected 0x00000803");
        StringAssert.Contains(ex.Message, path);
    }

    [TestMethod]
    public void ATruncatedFileIsNamed()
    {
        byte[] images = Idx(0x803, new[] { 10, 28, 28 }, new byte[100]);
        string path = Write("short.idx", images);
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => IdxReader.ReadImages(path));
        StringAssert.Contains(ex.Message, "truncated");
        StringAssert.Contains(ex.Message, path);
        byte[] gz = Gzip(Idx(0x803, new[] { 50, 28, 28 }, Enumerable.Range(0, 50 * 784).Select(i => (byte)(i * 7)).ToArray()));
        string broken = Write("broken.gz", gz[..(gz.Length / 2)]);
        Assert.ThrowsExactly<InvalidDataException>(() => IdxReader.ReadImages(broken));
    }

    [TestMethod]
    public void ImpossibleDimensionsAndMismatchedLabelsAreRefused()
    {
        string zero = Write("zero.idx", Idx(0x803, new[] { 1, 0, 5 }, Array.Empty<byte>()));
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => IdxReader.ReadImages(zero)).Message, "impossible dimensions");
        string images = Write("two.idx", Idx(0x803, new[] { 2, 1, 1 }, new byte[2]));
        string labels = Write("three.idx", Idx(0x801, new[] { 3 }, new byte[3]));
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => IdxReader.Load(new MLContext(), images, labels)).Message, "3 labels");
    }

    private static byte[] Idx(int magic, int[] dims, byte[] payload)
    {
        using var stream = new MemoryStream();
        void Int(int v) => stream.Write(new[] { (byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v });
        Int(magic);
        foreach (int d in dims)
        {
            Int(d);
        }

        stream.Write(payload);
        return stream.ToArray();
    }

    private static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(data);
        }

        return output.ToArray();
    }

    private string Write(string name, byte[] data)
    {
        string path = Path.Combine(directory, name);
        File.WriteAllBytes(path, data);
        return path;
    }
}
