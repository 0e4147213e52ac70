using System;
using System.IO;
using System.Linq;
using FashionMnist;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Samples;

[TestClass]
public sealed class FashionMnistJobTests
{
    [TestMethod]
    public void TheMainJobRunsEndToEndAndWritesAllFourFiles()
    {
        string output = Directory.CreateTempSubdirectory("mldiffusion-job-").FullName;
        try
        {
            using var console = new StringWriter();
            int code = FashionMnistJob.Run(new[] { "--steps", "5", "--sampling-steps", "3", "--metric-images", "16", "--out", output, "--data", Path.Combine(AppContext.BaseDirectory, "data", "fashion-mnist") }, console);
            Assert.AreEqual(0, code, console.ToString());
            foreach (string file in new[] { "samples.png", "denoising.png", "model.zip", "training-log.csv", "training-curve.png", "metrics.json", "classifier.bin" })
            {
                Assert.IsTrue(new FileInfo(Path.Combine(output, file)).Length > 0, $"{file} missing; output:\n{console}");
            }

            using var samples = MLImage.CreateFromFile(Path.Combine(output, "samples.png"));
            Assert.IsTrue(samples.Width > 8 * 28 && samples.Height > 8 * 28, "an 8×8 grid");
            string[] log = File.ReadAllLines(Path.Combine(output, "training-log.csv"));
            Assert.AreEqual("step,loss,lr,images_per_second", log[0]);
            Assert.AreEqual("5", log[^1].Split(',')[0]);
            using var metrics = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "metrics.json")));
            double bits = metrics.RootElement.GetProperty("bits_per_dim").GetDouble();
            Assert.IsTrue(bits > 0 && double.IsFinite(bits), bits.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.IsTrue(metrics.RootElement.GetProperty("frechet_distance").GetDouble() > metrics.RootElement.GetProperty("frechet_floor_two_real_sets").GetDouble(),
                "5 training steps cannot match real images");
            Assert.IsTrue(metrics.RootElement.GetProperty("classifier_test_accuracy").GetDouble() > 0.5);
            using var loaded = DiffusionSampler.Load(new MLContext(), Path.Combine(output, "model.zip"));
            Assert.AreEqual(10, loaded.Model.ClassCount);
            Assert.AreEqual(5, loaded.Model.TrainedSteps);
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    [TestMethod]
    public void HelpPrintsTheUsageAndExitsZero()
    {
        using var help = new StringWriter();
        Assert.AreEqual(0, FashionMnistJob.Run(new[] { "--help" }, help));
        // System.CommandLine's help: description (with how to run it from the repository), usage, options as "--x <VALUE>".
        StringAssert.Contains(help.ToString(), "Run it from the repository root as: dotnet run -c Release --project samples/FashionMnist -- [options]");
        foreach (string option in new[] { "--data <DIR>", "--steps <N>", "--minutes <M>", "--sampler <ddim|ddpm>", "--resume", "--metric-images <N>", "-h, --help" })
        {
            StringAssert.Contains(help.ToString(), option);
        }

        using var shortHelp = new StringWriter();
        Assert.AreEqual(0, FashionMnistJob.Run(new[] { "--steps", "5", "-h" }, shortHelp));
        Assert.AreEqual(help.ToString(), shortHelp.ToString());
    }

    [TestMethod]
    public void ABadValueNamesTheOptionAndWhatItExpects()
    {
        (string[] Args, string Message)[] cases =
        {
            (new[] { "--steps", "abc" }, "--steps expects a positive integer of at most 1000000000; got 'abc'."),
            (new[] { "--steps", "0" }, "--steps expects a positive integer of at most 1000000000; got '0'."),
            (new[] { "--steps=-3" }, "--steps expects a positive integer of at most 1000000000; got '-3'."),
            (new[] { "--minutes", "soon" }, "--minutes expects a positive number of at most 1000000; got 'soon'."),
            (new[] { "--sampler", "euler" }, "--sampler expects one of ddim, ddpm; got 'euler'."),
            (new[] { "--metric-images", "1" }, "--metric-images expects an integer in [2, 10000]; got '1'."),
            (new[] { "--out" }, "--out expects a value; got nothing."),
            (new[] { "--resume=yes" }, "--resume takes no value; got 'yes'."),
            (new[] { "--stpes", "5" }, "Unrecognized command or argument '--stpes'."),
            (new[] { "--colour", "red" }, "Unrecognized command or argument '--colour'."),
            (new[] { "data/fashion" }, "Unrecognized command or argument 'data/fashion'."),
        };
        foreach (var (args, message) in cases)
        {
            using var console = new StringWriter();
            Assert.AreEqual(2, FashionMnistJob.Run(args, console), string.Join(' ', args));
            string[] lines = console.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.AreEqual(message, lines[0], string.Join(' ', args));
            Assert.AreEqual("Run with --help to see the options.", lines[^1]);
            if (args[0] == "--stpes")
            {
                CollectionAssert.Contains(lines, "Did you mean --steps instead of --stpes?");
            }
        }
    }

    [TestMethod]
    public void TheEqualsFormAndCaseInsensitiveChoicesParse()
    {
        using var console = new StringWriter();
        Assert.IsTrue(JobOptions.TryParse(new[] { "--steps=7", "--sampler", "DDPM", "--guidance", "0", "--no-metrics" }, console, out var options, out _));
        Assert.AreEqual(7, options.Steps);
        Assert.AreEqual("ddpm", options.Sampler);
        Assert.AreEqual(0.0, options.Guidance);
        Assert.IsFalse(options.Metrics);
        Assert.AreEqual(string.Empty, console.ToString());
    }
}
