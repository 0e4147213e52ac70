using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>
/// What a damaged model file is called (issue #23): an empty file said "Invalid argument", one flipped byte in the
/// compressed weights said "truncated", and the sampler benchmark printed a stack trace for each. Now each message names
/// the file and what is wrong with it, loading never changes the file, and the programs print one line.
/// </summary>
[TestClass]
public sealed class ModelFileMessageTests
{
    private readonly MLContext mlContext = new(seed: 1);
    private string directory = null!;
    private byte[] original = null!;

    [TestInitialize]
    public void CreateModel()
    {
        directory = Directory.CreateTempSubdirectory("mldiffusion-model-messages-").FullName;
        using var sampler = TinyModelFile.Sampler(mlContext, TinyModelFile.Config());
        original = TinyModelFile.Save(mlContext, sampler, Path.Combine(directory, "model.zip"));
    }

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(directory, recursive: true);

    [TestMethod]
    public void EmptyTextAndCutShortModelFilesAreNamedForWhatTheyAre()
    {
        foreach (var (name, bytes, says) in new[]
        {
            ("empty.zip", Array.Empty<byte>(), "is empty (0 bytes)"),
            ("text.zip", "not a model\n"u8.ToArray(), "is not an ML.NET model file: it does not start as a zip archive does (its first bytes are 6E6F7420"),
            ("half.zip", original[..(original.Length / 2)], "it is cut short or its end is damaged"),
        })
        {
            string path = Write(name, bytes);
            var ex = Assert.ThrowsExactly<System.IO.InvalidDataException>(() => DiffusionSampler.Load(mlContext, path).Dispose(), name);
            StringAssert.Contains(ex.Message, $"Model file '{path}'", name);
            StringAssert.Contains(ex.Message, says, name);
            Assert.IsFalse(ex.Message.Contains("Invalid argument", StringComparison.Ordinal), ex.Message);
            CollectionAssert.AreEqual(bytes, File.ReadAllBytes(path), $"{name} is unchanged by the load");
        }
    }

    [TestMethod]
    public void DamageInsideTheCompressedWeightsIsCalledDamageNotTruncation()
    {
        // Every 97th byte of the weights entry's compressed data flipped in turn (the zip directory and every header
        // intact): the file is whole, so "is truncated" alone would send the user looking for a copy that was cut short.
        // (An entry written short reads the same as one whose deflate data stops early: that message names both.)
        var (start, length) = WeightsData(original);
        int cases = 0;
        for (int offset = 0; offset < length; offset += 97)
        {
            byte[] damaged = original.ToArray();
            damaged[start + offset] ^= 0x10;
            string path = Write("flipped.zip", damaged);
            try
            {
                DiffusionSampler.Load(mlContext, path).Dispose();
                continue; // a flip the deflate format absorbs (as the campaign's "identical" cases)
            }
            catch (System.IO.InvalidDataException ex)
            {
                cases++;
                StringAssert.Contains(ex.Message, $"Model file '{path}'");
                StringAssert.Contains(ex.Message, "damaged", ex.Message);
                Assert.IsFalse(ex.Message.Contains(" is truncated", StringComparison.OrdinalIgnoreCase), $"byte {offset}: {ex.Message}");
            }

            CollectionAssert.AreEqual(damaged, File.ReadAllBytes(path), "unchanged by the load");
        }

        Assert.IsGreaterThan(length / 97 / 2, cases, "most flips are refused");
    }

    [TestMethod]
    public void TheSamplerBenchmarkPrintsOneLineForADamagedModelFile()
    {
        // Before: a stack trace of 4 to 15 lines for each (docs/reliability-runs/limits-before.txt, cases 26 to 28).
        string idx = Path.Combine(directory, "idx");
        Directory.CreateDirectory(idx);
        foreach (var (name, bytes, says) in new[]
        {
            ("empty.zip", Array.Empty<byte>(), "is empty (0 bytes)"),
            ("half.zip", original[..(original.Length / 2)], "is damaged: it is cut short"),
        })
        {
            string path = Write(name, bytes);
            var run = ProgramRun.Benchmark("SamplerQuality", 1024, TimeSpan.FromSeconds(60), path, Path.Combine(directory, "classifier.bin"), idx);
            if (run is null)
            {
                Assert.Inconclusive("benchmarks/SamplerQuality is not built next to the tests (build the solution).");
            }

            Assert.AreEqual(1, run.ExitCode, run.Output);
            Assert.AreEqual($"Error: Model file '{path}' {says}", run.Output.Trim()[..$"Error: Model file '{path}' {says}".Length], run.Output);
            Assert.HasCount(1, run.Output.Trim().Split('\n'), run.Output);
            Assert.IsEmpty(run.StackTraceLines, run.Output);
        }

        var missing = ProgramRun.Benchmark("SamplerQuality", 1024, TimeSpan.FromSeconds(60), Path.Combine(directory, "model.zip"), Path.Combine(directory, "classifier.bin"), idx)!;
        Assert.AreEqual(1, missing.ExitCode, missing.Output);
        StringAssert.StartsWith(missing.Output.Trim(), "Error: ");
        Assert.IsEmpty(missing.StackTraceLines, missing.Output);
    }

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(directory, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // Where the weights entry's compressed data lies in the zip.
    private static (int Start, int Length) WeightsData(byte[] zip)
    {
        long compressed;
        using (var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read))
        {
            compressed = archive.Entries.Single(e => e.FullName.EndsWith(DiffusionModelFile.WeightsEntryName, StringComparison.Ordinal)).CompressedLength;
        }

        byte[] needle = System.Text.Encoding.UTF8.GetBytes(DiffusionModelFile.WeightsEntryName);
        for (int i = 0; i + 30 < zip.Length; i++)
        {
            if (zip[i] == 0x50 && zip[i + 1] == 0x4b && zip[i + 2] == 3 && zip[i + 3] == 4
                && zip.AsSpan(i + 30, BitConverter.ToUInt16(zip, i + 26)).EndsWith(needle))
            {
                return (i + 30 + BitConverter.ToUInt16(zip, i + 26) + BitConverter.ToUInt16(zip, i + 28), (int)compressed);
            }
        }

        throw new System.IO.InvalidDataException("no local header for the weights entry");
    }
}
