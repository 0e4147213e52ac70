using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using FashionMnist;
using FolderTrainer;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Samples;

/// <summary>
/// The samples' <c>--generate MODEL --shard i/N</c> and <c>--merge DIR</c> (issue #19, docs/distributed.md): the shards of a
/// batch job, merged, write the bytes one unsharded run writes, and that run reproduces the training run's own grid.
/// </summary>
[TestClass]
public sealed class ShardedSampleGenerationTests
{
    private static string directory = null!;
    private static string model = null!;
    private static string trainingGrid = null!;
    private static IDisposable oneThread = null!;

    /// <summary>Trains one tiny class-conditional model with the folder trainer (2 steps, 8×8 RGB, 2 classes).</summary>
    [ClassInitialize]
    public static void TrainTinyModel(TestContext context)
    {
        // One libtorch thread for the whole class: on a loaded machine two-thread kernels wait for each other (TinyModels.OneThread).
        oneThread = TinyModels.OneThread();
        directory = Directory.CreateTempSubdirectory("mldiffusion-shards-").FullName;
        string images = Path.Combine(directory, "images");
        FolderTrainerTests.WriteImages(images, rgb: true);
        string trained = Path.Combine(directory, "trained");
        Run(FolderTrainerJob.Run, 0, images, "--out", trained, "--size", "8", "--dim", "8", "--mults", "1,2", "--timesteps", "20", "--batch", "4",
            "--steps", "2", "--sample-every", "2", "--samples", "5", "--sampling-steps", "2", "--labels");
        model = Path.Combine(trained, "model.zip");
        trainingGrid = Path.Combine(trained, "sample-000002.png");
    }

    /// <summary>Deletes the model and every output.</summary>
    [ClassCleanup]
    public static void DeleteFolder()
    {
        oneThread.Dispose();
        Directory.Delete(directory, recursive: true);
    }

    [TestMethod]
    public void FolderTrainerShardsMergedGiveTheBytesOfOneRunAndOfTheTrainingGrid()
    {
        string single = Path.Combine(directory, "folder-single");
        string log = Run(FolderTrainerJob.Run, 0, "--generate", model, "--count", "5", "--out", single);
        StringAssert.Contains(log, "Merged 1 shard: 5 images");

        // The unsharded run draws the grid the training run drew at that step (same seeds, labels, layout).
        CollectionAssert.AreEqual(File.ReadAllBytes(trainingGrid), File.ReadAllBytes(Path.Combine(single, "samples.png")), "--generate reproduces the milestone grid");

        string sharded = Path.Combine(directory, "folder-sharded");
        log = Run(FolderTrainerJob.Run, 0, "--generate", model, "--count", "5", "--shard", "1/2", "--out", sharded);
        StringAssert.Contains(log, "images 2 to 4");
        Assert.IsFalse(File.Exists(Path.Combine(sharded, "samples.png")), "a shard alone writes no grid");

        // A merge before every shard is done names the missing one and writes nothing.
        log = Run(FolderTrainerJob.Run, 1, "--merge", sharded);
        StringAssert.Contains(log, "1 of 2 shards are missing");
        StringAssert.Contains(log, "0/2");
        Assert.IsFalse(File.Exists(Path.Combine(sharded, "samples.png")));

        Run(FolderTrainerJob.Run, 0, "--generate", model, "--count", "5", "--shard", "0/2", "--out", sharded);
        log = Run(FolderTrainerJob.Run, 0, "--merge", sharded);
        StringAssert.Contains(log, "Merged 2 shards: 5 images");
        AssertSameFiles(single, sharded);
    }

    [TestMethod]
    public void MainJobShardsAsThreeJobsMergedGiveTheBytesOfOneRun()
    {
        string single = Path.Combine(directory, "main-single");
        Run(FashionMnistJob.Run, 0, "--generate", model, "--count", "7", "--out", single);
        string sharded = Path.Combine(directory, "main-sharded");
        foreach (string shard in new[] { "2/3", "0/3", "1/3" })
        {
            Run(FashionMnistJob.Run, 0, "--generate", model, "--count", "7", "--shard", shard, "--out", sharded);
        }

        Run(FashionMnistJob.Run, 0, "--merge", sharded);
        AssertSameFiles(single, sharded);
        string[] names = Directory.GetFiles(Path.Combine(sharded, "images")).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        Assert.AreEqual("image-000000-seed-1000.png", names[0], "the index and the seed (seed·1000 + index) name each image");
        Assert.AreEqual("image-000006-seed-1006.png", names[^1]);

        // A changed image is found by the merge and named.
        File.WriteAllBytes(Path.Combine(sharded, "images", names[3]), File.ReadAllBytes(Path.Combine(sharded, "images", names[2])));
        string log = Run(FashionMnistJob.Run, 1, "--merge", sharded);
        StringAssert.Contains(log, names[3]);
        StringAssert.Contains(log, "SHA-256");

        // Shards of another run (another count) in the same folder are refused, naming both.
        Run(FashionMnistJob.Run, 0, "--generate", model, "--count", "6", "--shard", "0/1", "--out", Path.Combine(directory, "other"));
        File.Copy(Path.Combine(directory, "other", "shard-0-of-1.tsv"), Path.Combine(sharded, "shard-0-of-1.tsv"));
        log = Run(FashionMnistJob.Run, 1, "--merge", sharded);
        StringAssert.Contains(log, "another run");
        StringAssert.Contains(log, "--count");
    }

    [TestMethod]
    public void MainJobTwoShardsMergedRedrawTheTrainingRunsSamplesGrid()
    {
        // One training step of the main job (1 DDIM step in its pictures), then its model in two shards of 64 images.
        string trained = Path.Combine(directory, "main-trained");
        Run(FashionMnistJob.Run, 0, "--steps", "1", "--sampling-steps", "1", "--no-metrics", "--out", trained, "--data", Path.Combine(AppContext.BaseDirectory, "data", "fashion-mnist"));
        string sharded = Path.Combine(directory, "main-trained-shards");
        Run(FashionMnistJob.Run, 0, "--generate", Path.Combine(trained, "model.zip"), "--shard", "0/2", "--out", sharded);
        Run(FashionMnistJob.Run, 0, "--generate", Path.Combine(trained, "model.zip"), "--shard", "1/2", "--out", sharded);
        string log = Run(FashionMnistJob.Run, 0, "--merge", sharded);
        StringAssert.Contains(log, "Merged 2 shards: 64 images");
        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(trained, "samples.png")), File.ReadAllBytes(Path.Combine(sharded, "samples.png")), "the merged grid is the training run's samples.png");
        Assert.AreEqual(64, Directory.GetFiles(Path.Combine(sharded, "images"), "*.png").Length);
    }

    [TestMethod]
    [DataRow("2/2")]
    [DataRow("-1/2")]
    [DataRow("1/0")]
    [DataRow("3")]
    [DataRow("a/b")]
    [DataRow("1/2/3")]
    public void ABadShardIsRefusedNamingTheOptionAndTheValue(string shard)
    {
        foreach (Func<string[], TextWriter, int> program in new Func<string[], TextWriter, int>[] { FashionMnistJob.Run, FolderTrainerJob.Run })
        {
            string output = Path.Combine(directory, "bad-" + Guid.NewGuid().ToString("N"));
            string log = Run(program, 2, "--generate", model, "--shard", shard, "--out", output);
            StringAssert.Contains(log, "--shard expects i/N with N ≥ 1 and 0 ≤ i < N");
            StringAssert.Contains(log, $"got '{shard}'");
            Assert.IsFalse(Directory.Exists(output), "nothing is written");
        }
    }

    [TestMethod]
    public void GenerateAndMergeTogetherOrMergeWithOptionsAreRefused()
    {
        StringAssert.Contains(Run(FolderTrainerJob.Run, 2, "--generate", model, "--merge", directory), "two steps");
        StringAssert.Contains(Run(FashionMnistJob.Run, 2, "--merge", directory, "--shard", "0/2"), "--merge DIR takes no other option");
        StringAssert.Contains(Run(FashionMnistJob.Run, 1, "--merge", Path.Combine(directory, "images")), "holds no shard list");
    }

    private static void AssertSameFiles(string expected, string actual)
    {
        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(expected, "samples.png")), File.ReadAllBytes(Path.Combine(actual, "samples.png")), "the merged grid");
        string[] names = Directory.GetFiles(Path.Combine(expected, "images")).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        CollectionAssert.AreEqual(names, Directory.GetFiles(Path.Combine(actual, "images")).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray(), "the same file names");
        foreach (string name in names)
        {
            CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(expected, "images", name)), File.ReadAllBytes(Path.Combine(actual, "images", name)), name);
        }
    }

    private static string Run(Func<string[], TextWriter, int> program, int expectedExitCode, params string[] args)
    {
        using var console = new StringWriter();
        int code = program(args, console);
        Assert.AreEqual(expectedExitCode, code, console.ToString());
        return console.ToString();
    }
}
