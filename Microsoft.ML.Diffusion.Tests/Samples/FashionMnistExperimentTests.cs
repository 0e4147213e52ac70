using System;
using System.IO;
using System.Linq;
using FashionMnist;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Samples;

[TestClass]
public sealed class FashionMnistExperimentTests
{
    [TestMethod]
    public void TheJobsExperimentSearchesThenTrainsTheBestConfiguration()
    {
        // One thread: on a busy machine the two-thread kernels of this 28×28 U-Net wait for each other (20 minutes measured).
        using var oneThread = TinyModels.OneThread();
        string output = Directory.CreateTempSubdirectory("mldiffusion-experiment-job-").FullName;
        try
        {
            using var console = new StringWriter();
            // A budget of 0.6 s: the first trial (50 steps) always runs, no other starts.
            int code = FashionMnistJob.Run(new[] { "--experiment", "0.01", "--steps", "2", "--sampling-steps", "2", "--no-metrics", "--out", output, "--data", Path.Combine(AppContext.BaseDirectory, "data", "fashion-mnist") }, console);
            string text = console.ToString();
            Assert.AreEqual(0, code, text);
            string[] lines = text.Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
            int header = Array.FindIndex(lines, l => l.StartsWith("rank  round  steps", StringComparison.Ordinal));
            Assert.IsTrue(header >= 0, text);
            string[] best = lines[header + 1].Split((char[]?)null, 6, StringSplitOptions.RemoveEmptyEntries);
            Assert.AreEqual("1", best[0], text);
            Assert.AreEqual("50", best[2], "the first round's steps");
            Assert.IsTrue(double.Parse(best[3], System.Globalization.CultureInfo.InvariantCulture) > 0, "the validation noise error");
            string description = best[5];
            StringAssert.Contains(text, $"Training the best configuration: {description}.");

            // The final model is trained with the best trial's searched values.
            using var sampler = DiffusionSampler.Load(new MLContext(), Path.Combine(output, "model.zip"));
            var config = sampler.Model.Config;
            string[] searched = description.Split(", ");
            Assert.AreEqual(searched[0], config.Diffusion.Schedule.ToString());
            Assert.AreEqual(searched[1], config.Diffusion.Objective.ToString());
            Assert.AreEqual(searched[2], config.Diffusion.Loss.ToString());
            Assert.AreEqual(searched[3], config.Diffusion.Variance.ToString());
            Assert.AreEqual(2, sampler.Model.TrainedSteps);
            Assert.AreEqual(10, sampler.Model.ClassCount);
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }
}
