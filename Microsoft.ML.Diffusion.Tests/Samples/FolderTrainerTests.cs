using System;
using System.IO;
using System.Linq;
using FolderTrainer;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Tests.Tools.Pictures;
using Microsoft.ML.Diffusion.Tools.Pictures;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Samples;

[TestClass]
public sealed class FolderTrainerTests
{
    private static readonly byte[] White = { 255, 255, 255 };
    private string directory = null!;

    [TestInitialize]
    public void CreateFolder() => directory = Directory.CreateTempSubdirectory("mldiffusion-folder-").FullName;

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(directory, recursive: true);

    [TestMethod]
    public void TrainsOnAFolderWritesMilestonesAndResumesExactly()
    {
        string images = Path.Combine(directory, "images");
        WriteImages(images, rgb: true);
        string[] common = { images, "--size", "8", "--dim", "8", "--mults", "1,2", "--timesteps", "20", "--batch", "4", "--sample-every", "2", "--samples", "4", "--sampling-steps", "2", "--labels" };

        // 4 steps, a milestone every 2.
        string first = Path.Combine(directory, "first");
        string log = Run(0, common.Concat(new[] { "--out", first, "--steps", "4" }));
        StringAssert.Contains(log, "Data: 12 images");
        StringAssert.Contains(log, "2 classes: bars, rings");
        StringAssert.Contains(log, "as 8×8 RGB");
        StringAssert.Contains(log, "step 2: sample-000002.png, model-000002.zip");
        foreach (string file in new[] { "sample-000002.png", "sample-000004.png", "model-000002.zip", "model-000004.zip", "model.zip", "training-curve.png", "training-log.csv" })
        {
            Assert.IsTrue(File.Exists(Path.Combine(first, file)), $"{file} missing; output:\n{log}");
        }

        using (var grid = MLImage.CreateFromFile(Path.Combine(first, "sample-000004.png")))
        {
            // 4 samples of 8×8 shown 8× larger (64 px) in 2 columns, captioned with the sub-folder names, in colour.
            Assert.IsTrue(grid.Width >= 2 * 64 && grid.Height >= 2 * 64, $"{grid.Width}×{grid.Height}");
            Assert.IsTrue(PictureAssert.ContainsText(grid, "BARS", White), "caption BARS");
            Assert.IsTrue(PictureAssert.ContainsText(grid, "RINGS", White), "caption RINGS");
            var pixels = Enumerable.Range(0, 64).Select(i => PictureAssert.Pixel(grid, 2 + i, 2 + i)).ToArray();
            Assert.IsTrue(pixels.Any(p => p.R != p.G || p.G != p.B), "an RGB model draws in colour");
        }

        using (var curve = MLImage.CreateFromFile(Path.Combine(first, "training-curve.png")))
        {
            Assert.IsTrue(PictureAssert.ContainsText(curve, "LEARNING RATE", TrainingCurve.TextColor));
        }

        // The milestone model is an ordinary ML.NET model file: a fresh process loads it with mlContext.Model.Load and generates.
        string[] hashes = ChildProcess.Run("load-model", Path.Combine(first, "model-000004.zip"), "1", "2");
        Assert.HasCount(2, hashes);
        Assert.AreNotEqual(hashes[0], hashes[1]);

        // Without --resume an existing run is not overwritten.
        Run(2, common.Concat(new[] { "--out", first, "--steps", "6" }));

        // Resume to 6 steps; the same 6 steps in one go (one segment, no milestone on the way) give the same model, bit for bit.
        log = Run(0, common.Concat(new[] { "--out", first, "--steps", "6", "--resume" }));
        StringAssert.Contains(log, "Resuming from step 4 of 6");
        StringAssert.Contains(log, "step 6: sample-000006.png, model-000006.zip");
        CollectionAssert.AreEqual(
            Enumerable.Range(1, 6).Select(s => s.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
            File.ReadAllLines(Path.Combine(first, "training-log.csv")).Skip(1).Select(l => l.Split(',')[0]).ToArray(),
            "the log continues where it stopped");
        string straight = Path.Combine(directory, "straight");
        Run(0, common.Where((_, i) => common[i] != "--sample-every" && (i == 0 || common[i - 1] != "--sample-every")).Concat(new[] { "--out", straight, "--steps", "6", "--sample-every", "6" }));
        CollectionAssert.AreEqual(Generate(Path.Combine(straight, "model-000006.zip")), Generate(Path.Combine(first, "model-000006.zip")), "resumed = uninterrupted");
        CollectionAssert.AreNotEqual(Generate(Path.Combine(first, "model-000004.zip")), Generate(Path.Combine(first, "model-000006.zip")), "training went on");
    }

    [TestMethod]
    public void GrayFoldersAreDetectedAndRunTimeErrorsAreNamed()
    {
        string images = Path.Combine(directory, "gray");
        WriteImages(images, rgb: false);
        // A setting that can never work is refused before the folder is read; one that does not fit this machine's memory,
        // after the folder is read (its channels detected) and before anything is written.
        string log = Run(1, new[] { images, "--out", Path.Combine(directory, "out"), "--size", "7", "--mults", "1,2" });
        StringAssert.Contains(log, "Error: --size:");
        StringAssert.Contains(log, "must be divisible by 2");
        log = Run(1, new[] { images, "--out", Path.Combine(directory, "out"), "--size", "8", "--mults", "1,2", "--batch", "1048576" });
        StringAssert.Contains(log, "as 8×8 gray");
        StringAssert.Contains(log, "needs about");
        Assert.IsFalse(Directory.Exists(Path.Combine(directory, "out")), log);

        log = Run(1, new[] { Path.Combine(directory, "missing"), "--out", Path.Combine(directory, "out") });
        StringAssert.Contains(log, "Error: The image folder");
    }

    [TestMethod]
    public void TheCommandLineIsExplained()
    {
        string help = Run(0, new[] { "--help" });
        StringAssert.Contains(help, "Run it from the repository root as: dotnet run -c Release --project samples/FolderTrainer -- IMAGES [options]");
        foreach (string option in new[] { "--out <DIR>", "--size <N>", "--labels", "--sample-every <N>", "--resume", "--mults <A,B,..>" })
        {
            StringAssert.Contains(help, option);
        }

        StringAssert.StartsWith(Run(2, Array.Empty<string>()), "Missing IMAGES: the folder of images to train on");
        StringAssert.StartsWith(Run(2, new[] { "imgs", "--size", "big" }), "--size expects a positive integer of at most 8192; got 'big'.");
        StringAssert.StartsWith(Run(2, new[] { "imgs", "--mults", "1,x" }), "--mults expects a comma-separated list of at most 16 positive integers of at most 16384, e.g. 1,2,4; got '1,x'.");
        StringAssert.StartsWith(Run(2, new[] { "imgs", "--channels", "2" }), "--channels expects one of auto, 1, 3; got '2'.");
        string typo = Run(2, new[] { "imgs", "--sample-evry", "5" });
        StringAssert.StartsWith(typo, "Unrecognized command or argument '--sample-evry'.");
        StringAssert.Contains(typo, "Did you mean --sample-every instead of --sample-evry?");
        StringAssert.StartsWith(Run(2, new[] { "imgs", "more" }), "Unrecognized command or argument 'more'.");
        StringAssert.StartsWith(Run(2, new[] { "imgs", "--flip=no" }), "--flip takes no value; got 'no'.");

        // Shell completion (System.CommandLine's [suggest] directive, what dotnet-suggest calls): options, then a choice's values.
        CollectionAssert.AreEqual(new[] { "--sample-every", "--samples", "--sampling-steps" }, Lines(Run(0, new[] { "[suggest]", "--sam" })));
        CollectionAssert.AreEqual(new[] { "1", "3", "auto" }, Lines(Run(0, new[] { "[suggest:13]", "--channels " })));
    }

    [TestMethod]
    public void AShortTimeBudgetShortensTheWarmup()
    {
        // The user's report: a 5-minute budget at 21 images/s was all 200 warm-up steps. The first steps are timed and
        // the warm-up becomes a tenth of the steps the budget allows; an explicit --warmup is kept, and the progress
        // lines say that the budget ends inside it.
        string images = Path.Combine(directory, "images");
        WriteImages(images, rgb: true);
        string[] common = { images, "--size", "8", "--dim", "8", "--mults", "1,2", "--timesteps", "20", "--batch", "4", "--samples", "4", "--sampling-steps", "2", "--sample-every", "10", "--steps", "1000", "--minutes", "0.1" };
        string log = Run(0, common.Concat(new[] { "--out", Path.Combine(directory, "short") }));
        var match = System.Text.RegularExpressions.Regex.Match(log, @"Warm-up shortened from 200 to (\d+) steps: the 0.1-minute budget allows about (\d+) steps");
        Assert.IsTrue(match.Success, log);
        int warmup = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        int expected = int.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.IsTrue(warmup < 200 && warmup == Math.Max(1, expected / 10), log);
        Assert.AreEqual(warmup.ToString(System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText(Path.Combine(directory, "short", "warmup-steps.txt")));

        // The learning rate of the log follows it after the timed steps: linear up to the warm-up's end, the peak after.
        var rows = File.ReadAllLines(Path.Combine(directory, "short", "training-log.csv")).Skip(1).Select(l => l.Split(','))
            .Select(f => (Step: int.Parse(f[0], System.Globalization.CultureInfo.InvariantCulture), Lr: double.Parse(f[2], System.Globalization.CultureInfo.InvariantCulture)))
            .Where(r => r.Step > 4).ToArray();
        Assert.IsNotEmpty(rows, log);
        foreach (var (step, lr) in rows)
        {
            Assert.AreEqual(1e-3 * Math.Min(1.0, (double)step / warmup), lr, 1e-9, $"step {step}");
        }

        log = Run(0, common.Concat(new[] { "--out", Path.Combine(directory, "explicit"), "--warmup", "1000000" }));
        Assert.IsFalse(log.Contains("Warm-up shortened", StringComparison.Ordinal), log);
        StringAssert.Contains(log, "budget ends in warm-up (~step ");
        StringAssert.Contains(log, " of 1000000)");
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static string Run(int expectedExitCode, System.Collections.Generic.IEnumerable<string> args)
    {
        using var console = new StringWriter();
        int code = FolderTrainerJob.Run(args.ToArray(), console);
        Assert.AreEqual(expectedExitCode, code, console.ToString());
        return console.ToString();
    }

    private static byte[] Generate(string model)
    {
        using var sampler = DiffusionSampler.Load(new MLContext(), model);
        return sampler.Generate(2, new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 2 }, Seed = 5 }).SelectMany(i => i.Pixels.ToArray()).ToArray();
    }

    // 12 images in two sub-folders, of different sizes and aspect ratios: bars (stripes) and rings, in colour or gray.
    internal static void WriteImages(string folder, bool rgb)
    {
        for (int i = 0; i < 12; i++)
        {
            int width = 8 + (i % 4 * 3), height = 8 + (i % 3 * 4);
            using var scope = NewDisposeScope();
            var y = arange(height, dtype: float32).view(height, 1).expand(height, width);
            var x = arange(width, dtype: float32).view(1, width).expand(height, width);
            bool bars = i % 2 == 0;
            var shape = bars
                ? (x + i).remainder(4) < 2
                : ((x - (width / 2f)).square() + (y - (height / 2f)).square()).sqrt().sub(3f).abs() < 1.2f;
            var gray = where(shape, tensor(0.8f), tensor(-0.8f));
            var image = rgb ? stack(new[] { gray, gray * 0.2f, -gray }).unsqueeze(0) : gray.view(1, 1, height, width);
            string path = Path.Combine(folder, bars ? "bars" : "rings", $"{i:D2}.png");
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            ImageConversion.SavePng(ImageConversion.Grid(image, columns: 1, padding: 0), path);
        }
    }
}
