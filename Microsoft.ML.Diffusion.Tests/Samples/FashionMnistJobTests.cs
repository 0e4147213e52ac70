using System;
using System.IO;
using System.Linq;
using FashionMnist;
using Microsoft.ML;
using Microsoft.ML.Data;
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
            foreach (string file in new[] { "samples.png", "denoising.png", "model.zip", "training-log.csv", "metrics.json", "classifier.bin" })
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
    public void BadArgumentsPrintUsage()
    {
        using var console = new StringWriter();
        Assert.AreEqual(2, FashionMnistJob.Run(new[] { "--sampler", "euler" }, console));
        StringAssert.Contains(console.ToString(), "ddim or ddpm");
        using var help = new StringWriter();
        Assert.AreEqual(2, FashionMnistJob.Run(new[] { "--help" }, help));
        StringAssert.Contains(help.ToString(), "--minutes");
    }
}
