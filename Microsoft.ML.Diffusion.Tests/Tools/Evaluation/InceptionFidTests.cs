using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Tools.Evaluation;

/// <summary>
/// Pytorch-fid's FID InceptionV3 and FID maths against fixtures made once by Data/Inception/make_fixture.py from
/// pytorch-fid's own source (Debian's PyTorch 1.13): the weights come from a closed-form generator reproduced here bit for
/// bit, so the 88 MB network needs no weight file in the repository.
/// </summary>
[TestClass]
public sealed class InceptionFidTests
{
    private static readonly string Folder = Path.Combine(AppContext.BaseDirectory, "Data", "Inception");

    [TestMethod]
    public void PoolFeaturesEqualPyTorchFidsWithTheSameWeights()
    {
        string directory = TemporaryFolder();
        try
        {
            string file = Path.Combine(directory, FidInception.WeightFileName);
            WriteGeneratedWeights(file, Layout());
            using var scope = NewDisposeScope();
            using var inception = FidInception.Load(file);
            var fixture = ReadNpz("features.npz");

            var small = cat(Enumerable.Range(0, 3).Select(b => Image(b, 32)).ToArray(), 0);
            var expected32 = tensor(fixture["features32"].Values).reshape(3, 2048);
            var features32 = inception.Features(small);
            Assert.AreEqual(float64, features32.dtype);
            double error32 = (features32 - expected32).abs().max().item<double>();
            Assert.IsTrue(error32 <= 1e-4, $"32×32 pool features differ from pytorch-fid's by {error32:G3}.");

            var expected299 = tensor(fixture["features299"].Values).reshape(1, 2048);
            double error299 = (inception.Features(Image(3, 299)) - expected299).abs().max().item<double>();
            Assert.IsTrue(error299 <= 1e-4, $"299×299 pool features differ from pytorch-fid's by {error299:G3}.");

            // Grayscale is repeated over RGB, as pytorch-fid's Image.convert('RGB') does; model-space images are first
            // rounded to the 8-bit pixels their PNG would hold, as ToTensor reads them.
            var gray = small[..1, ..1];
            Assert.IsTrue(FidInception.NetworkInput(gray).eq(FidInception.NetworkInput(gray.expand(-1, 3, -1, -1))).all().item<bool>());
            var model = small[..1].mul(2.0).sub(1.0);
            Assert.IsTrue(FidInception.ModelImagesToUnit(model).eq(model.add(1.0).mul(127.5).round().div(255.0)).all().item<bool>());
            Assert.ThrowsExactly<ArgumentException>(() => inception.Features(model));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void TheNetworkHasPyTorchFidsKeysAndShapes()
    {
        using var network = new FidInceptionV3();
        var ours = network.state_dict().Select(p => $"{p.Key} {string.Join(",", p.Value.shape)}").ToList();
        var theirs = Layout().Select(p => $"{p.Key} {string.Join(",", p.Shape)}").ToList();
        CollectionAssert.AreEquivalent(theirs, ours); // loading goes by key; TorchSharp lists buffers after parameters
    }

    [TestMethod]
    public void FrechetDistanceEqualsPyTorchFidsCalculateFrechetDistance()
    {
        using var scope = NewDisposeScope();
        var fixture = ReadNpz("features.npz");
        var a = tensor(fixture["set_a"].Values).reshape(fixture["set_a"].Shape);
        var b = tensor(fixture["set_b"].Values).reshape(fixture["set_b"].Shape);
        double expected = fixture["fid"].Values[0];
        var statsA = FidStatistics.FromFeatures(a);
        var statsB = FidStatistics.FromFeatures(b);
        Assert.AreEqual(200, statsA.Count);
        Assert.AreEqual(expected, statsA.FrechetDistanceTo(statsB), 1e-6 * expected);
        Assert.AreEqual(expected, statsB.FrechetDistanceTo(statsA), 1e-6 * expected);

        var report = InceptionFidReport.Measure(a, b, kidSubsets: 5, kidSubsetSize: 100);
        Assert.AreEqual(expected, report.Fid, 1e-6 * expected);
        StringAssert.Contains(report.ToString(), "N_real = 200, N_gen = 180");
    }

    [TestMethod]
    public void StatisticsFilesInteroperateWithNumpyAndPyTorchFid()
    {
        using var scope = NewDisposeScope();
        var fixture = ReadNpz("features.npz");
        var ours = FidStatistics.FromFeatures(tensor(fixture["set_a"].Values).reshape(fixture["set_a"].Shape));

        // Theirs read here: save_fid_stats's np.savez_compressed file.
        var theirs = FidStatistics.Load(Path.Combine(Folder, "stats_a.npz"));
        Assert.AreEqual(0, theirs.Count, "pytorch-fid's files do not record the count");
        Assert.AreEqual(48, theirs.Dimension);
        for (int i = 0; i < ours.Covariance.Length; i++)
        {
            Assert.AreEqual(theirs.Covariance[i], ours.Covariance[i], 1e-12 * Math.Max(1, Math.Abs(theirs.Covariance[i])));
        }

        // Ours read there: the .npy members equal numpy's np.savez output byte for byte, and the file reads back.
        string directory = TemporaryFolder();
        try
        {
            string file = Path.Combine(directory, "stats.npz");
            var numpyWritten = FidStatistics.Load(Path.Combine(Folder, "stats_a_plain.npz"));
            FidStatistics.FromArrays(numpyWritten.Mean, numpyWritten.Covariance, 200).Save(file);
            using (var mine = ZipFile.OpenRead(file))
            using (var numpy = ZipFile.OpenRead(Path.Combine(Folder, "stats_a_plain.npz")))
            {
                foreach (string member in new[] { "mu.npy", "sigma.npy" })
                {
                    CollectionAssert.AreEqual(Bytes(numpy, member), Bytes(mine, member), member);
                }
            }

            var back = FidStatistics.Load(file);
            Assert.AreEqual(200, back.Count);
            CollectionAssert.AreEqual(numpyWritten.Mean, back.Mean);
            Assert.AreEqual(0.0, back.FrechetDistanceTo(numpyWritten), 1e-9);
            Assert.AreEqual(1, Directory.GetFiles(directory).Length, "no temporary file is left behind");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void LegacyTorchSaveFilesReadAsPyTorchWroteThem()
    {
        using var scope = NewDisposeScope();
        var state = FidInception.ReadStateDict(Path.Combine(Folder, "legacy.pth"));
        var layout = Layout();
        CollectionAssert.AreEquivalent(layout.Take(5).Select(p => p.Key).Append("big").Append("view").ToList(), state.Keys.ToList());
        for (int k = 0; k < 5; k++)
        {
            var (key, shape) = layout[k];
            var expected = Generated(key, k, shape);
            Assert.IsTrue(expected.dtype == state[key].dtype && expected.eq(state[key]).all().item<bool>(), key);
        }

        var big = arange(24, dtype: float32).reshape(4, 6);
        Assert.IsTrue(big.eq(state["big"]).all().item<bool>());
        Assert.IsTrue(big[1.., TensorIndex.Slice(step: 2)].eq(state["view"]).all().item<bool>(), "a view keeps its storage offset and strides");
    }

    [TestMethod]
    public void WrongOrDamagedWeightFilesAreRefusedNamingTheFileAndKey()
    {
        string directory = TemporaryFolder();
        try
        {
            var layout = Layout();
            string missing = Path.Combine(directory, "missing.pth");
            WriteZeroWeights(missing, layout.Where(p => p.Key != "Mixed_6b.branch7x7_2.conv.weight").ToList());
            var error = Assert.ThrowsExactly<InvalidDataException>(() => FidInception.Load(missing));
            StringAssert.Contains(error.Message, missing);
            StringAssert.Contains(error.Message, "'Mixed_6b.branch7x7_2.conv.weight'");

            string reshaped = Path.Combine(directory, "reshaped.pth");
            WriteZeroWeights(reshaped, layout.Select(p => p.Key == "fc.bias" ? (p.Key, new long[] { 1000 }) : p).ToList());
            error = Assert.ThrowsExactly<InvalidDataException>(() => FidInception.Load(reshaped));
            StringAssert.Contains(error.Message, "'fc.bias' has shape [1000], expected [1008]");

            string truncated = Path.Combine(directory, "truncated.pth");
            File.WriteAllBytes(truncated, File.ReadAllBytes(Path.Combine(Folder, "legacy.pth"))[..3000]);
            error = Assert.ThrowsExactly<InvalidDataException>(() => FidInception.Load(truncated));
            StringAssert.Contains(error.Message, truncated);

            string text = Path.Combine(directory, "notes.pth");
            File.WriteAllText(text, "not a weight file");
            error = Assert.ThrowsExactly<InvalidDataException>(() => FidInception.Load(text));
            StringAssert.Contains(error.Message, text);

            Assert.ThrowsExactly<FileNotFoundException>(() => FidInception.Load(Path.Combine(directory, "absent.pth")));
            var npzError = Assert.ThrowsExactly<InvalidDataException>(() => FidStatistics.Load(truncated));
            StringAssert.Contains(npzError.Message, truncated);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void KernelDistanceIsTheUnbiasedPolynomialMmdAndPrecisionRecallCountsBalls()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var x = randn(40, 5, dtype: float64);
        var y = randn(30, 5, dtype: float64).add(0.5);

        // One subset of all 30 samples: the estimate over the whole of y and a random 30 of x; with x cut to 30 rows
        // and the subset the full sets, the order drawn does not matter, so a direct double loop must agree.
        var x30 = x[..30];
        var kid = FeatureMetrics.KernelInceptionDistance(x30, y, subsets: 1, subsetSize: 30);
        Assert.AreEqual(30, kid.SubsetSize);
        Assert.AreEqual(DirectMmd(x30, y), kid.Mean, 1e-9);
        Assert.AreEqual(0.0, kid.StandardDeviation);
        var near = randn(400, 5, dtype: float64);
        var same = FeatureMetrics.KernelInceptionDistance(near[..200], near[200..], subsets: 10, subsetSize: 200);
        Assert.IsTrue(Math.Abs(same.Mean) < kid.Mean / 5, $"KID of two draws of one distribution ({same.Mean:G3}) should be near 0 beside a shifted set's ({kid.Mean:G3}).");

        var self = FeatureMetrics.ImprovedPrecisionRecall(x, x);
        Assert.AreEqual(1.0, self.Precision);
        Assert.AreEqual(1.0, self.Recall);
        var far = FeatureMetrics.ImprovedPrecisionRecall(x, x.add(100.0));
        Assert.AreEqual(0.0, far.Precision);
        Assert.AreEqual(0.0, far.Recall);

        // A generated set collapsed onto a few real points: precise, but it recalls little of the real set.
        var collapsed = x[..4].repeat(5, 1).add(randn(20, 5, dtype: float64).mul(1e-3));
        var mode = FeatureMetrics.ImprovedPrecisionRecall(x, collapsed);
        Assert.AreEqual(1.0, mode.Precision);
        Assert.IsTrue(mode.Recall < 0.5, $"recall {mode.Recall}");
    }

    private static double DirectMmd(Tensor x, Tensor y)
    {
        var a = x.data<double>().ToArray();
        var b = y.data<double>().ToArray();
        int m = (int)x.shape[0], d = (int)x.shape[1];
        double K(double[] p, int i, double[] q, int j)
        {
            double dot = 0;
            for (int c = 0; c < d; c++)
            {
                dot += p[(i * d) + c] * q[(j * d) + c];
            }

            return Math.Pow((dot / d) + 1, 3);
        }

        double xx = 0, yy = 0, xy = 0;
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < m; j++)
            {
                if (i != j)
                {
                    xx += K(a, i, a, j);
                    yy += K(b, i, b, j);
                }

                xy += K(a, i, b, j);
            }
        }

        return ((xx + yy) / (m * (m - 1.0))) - (2 * xy / ((double)m * m));
    }

    private static List<(string Key, long[] Shape)> Layout() =>
        File.ReadAllLines(Path.Combine(Folder, "keys.txt"))
            .Where(line => line.Length > 0)
            .Select(line =>
            {
                var parts = line.Split(' ');
                return (parts[0], parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray());
            })
            .ToList();

    // make_fixture.py's generator: u = ((31 i² + 7919 i + 104729 k + 12345) mod 65521) / 65521, in double, rounded once.
    private static Tensor Generated(string key, int k, long[] shape)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        if (key.EndsWith("num_batches_tracked", StringComparison.Ordinal))
        {
            return zeros(shape, ScalarType.Int64);
        }

        long fanIn = shape.Skip(1).Aggregate(1L, (a, b) => a * b);
        var i = arange(n, dtype: ScalarType.Int64);
        var u = i.mul(i).mul(31).add(i.mul(7919)).add((104729L * k) + 12345).remainder(65521).to(float64).div(65521.0);
        var v = key switch
        {
            _ when key.EndsWith("bn.weight", StringComparison.Ordinal) => u.mul(0.4).add(0.8),
            _ when key.EndsWith("bn.bias", StringComparison.Ordinal) => u.mul(2.0).sub(1.0).mul(0.2),
            _ when key.EndsWith("running_mean", StringComparison.Ordinal) => u.mul(2.0).sub(1.0).mul(0.1),
            _ when key.EndsWith("running_var", StringComparison.Ordinal) => u.add(0.5),
            _ when key.EndsWith("weight", StringComparison.Ordinal) => u.mul(2.0).sub(1.0).mul(Math.Sqrt(6.0 / fanIn)),
            _ => u.mul(2.0).sub(1.0).mul(0.1),
        };
        return v.to(float32).reshape(shape);
    }

    private static void WriteZeroWeights(string file, List<(string Key, long[] Shape)> layout)
    {
        using var scope = NewDisposeScope();
        PyTorchPickler.PickleStateDict(file, layout.ToDictionary(p => p.Key, p => p.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal) ? zeros(p.Shape, ScalarType.Int64) : zeros(p.Shape)));
    }

    private static void WriteGeneratedWeights(string file, List<(string Key, long[] Shape)> layout)
    {
        using var scope = NewDisposeScope();
        var full = Layout();
        var state = new Dictionary<string, Tensor>();
        foreach (var (key, shape) in layout)
        {
            int k = full.FindIndex(p => p.Key == key);
            state[key] = Generated(key, k, shape);
        }

        PyTorchPickler.PickleStateDict(file, state);
    }

    // image b: x = ((131 b + 71 c + 37 h + 17 w + h w) mod 97) / 96, rounded once to float32; 1×3×size×size.
    private static Tensor Image(int b, int size)
    {
        var values = new float[3 * size * size];
        for (int c = 0; c < 3; c++)
        {
            for (int h = 0; h < size; h++)
            {
                for (int w = 0; w < size; w++)
                {
                    values[(((c * size) + h) * size) + w] = (float)((((131 * b) + (71 * c) + (37 * h) + (17 * w) + (h * w)) % 97) / 96.0);
                }
            }
        }

        return tensor(values).reshape(1, 3, size, size);
    }

    private static Dictionary<string, (double[] Values, long[] Shape)> ReadNpz(string name)
    {
        string path = Path.Combine(Folder, name);
        using var archive = ZipFile.OpenRead(path);
        return archive.Entries.ToDictionary(e => e.Name[..^4], e => FidStatistics.ReadArray(archive, e.Name[..^4], path));
    }

    private static byte[] Bytes(ZipArchive archive, string member)
    {
        using var stream = archive.GetEntry(member)!.Open();
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return memory.ToArray();
    }

    private static string TemporaryFolder()
    {
        string directory = Path.Combine(Path.GetTempPath(), "inception-fid-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        return directory;
    }
}
