using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

[TestClass]
public sealed class TrainerFeatureTests : OneThreadTests
{
    [TestMethod]
    public void FewerThanAHundredImagesGiveAWarningAndAHundredDoNot()
    {
        var context = new MLContext(seed: 1);
        var warnings = new List<string>();
        context.Log += (_, e) =>
        {
            if (e.Kind == ChannelMessageKind.Warning)
            {
                lock (warnings)
                {
                    warnings.Add(e.Message);
                }
            }
        };
        context.Generative().Diffusion(MLNetTestData.Options(steps: 0)).Fit(MLNetTestData.Patterns(context, copies: 16)).Dispose();
        Assert.IsTrue(warnings.Any(m => m.Contains("Only 32 training images", StringComparison.Ordinal)), string.Join("\n", warnings));
        warnings.Clear();
        context.Generative().Diffusion(MLNetTestData.Options(steps: 0)).Fit(MLNetTestData.Patterns(context, copies: 50)).Dispose();
        Assert.IsFalse(warnings.Any(m => m.Contains("training images", StringComparison.Ordinal)), string.Join("\n", warnings));
    }

    [TestMethod]
    public void MaxTrainingTimeEndsTrainingCleanlyWithACheckpoint()
    {
        string directory = Directory.CreateTempSubdirectory("mldiffusion-budget-").FullName;
        try
        {
            var context = new MLContext(seed: 1);
            var messages = new List<string>();
            context.Log += (_, e) => { lock (messages) { messages.Add(e.Message); } };
            var options = MLNetTestData.Options(steps: 1_000_000);
            options.MaxTrainingTime = TimeSpan.FromSeconds(1);
            options.CheckpointDirectory = directory;
            options.CheckpointEvery = 1_000_000;
            var reports = new List<TrainingProgress>();
            options.LogEvery = 1;
            options.Progress = new SyncProgress<TrainingProgress>(reports.Add);
            var clock = Stopwatch.StartNew();
            using var sampler = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 4));
            int steps = sampler.Model.TrainedSteps;
            Assert.IsTrue(steps is >= 1 and < 1_000_000, $"{steps} steps");
            Assert.AreEqual(steps, reports[^1].Step, "the model records the steps actually taken");
            Assert.IsTrue(reports[^1].Elapsed >= TimeSpan.FromSeconds(1), $"stopped after {reports[^1].Elapsed}, before the budget");
            Assert.HasCount(steps, reports);
            Assert.IsTrue(reports.SkipLast(1).All(r => r.Elapsed < TimeSpan.FromSeconds(1)), "and at the first step after it");
            Assert.IsTrue(messages.Any(m => m.Contains("time budget", StringComparison.Ordinal) && m.Contains($"after step {steps} of 1000000", StringComparison.Ordinal)), string.Join("\n", messages.TakeLast(5)));
            Assert.AreEqual(Checkpoint.PathFor(directory, steps), Checkpoint.FindLatest(directory), "a checkpoint of the last step, to resume from");
            Assert.IsTrue(clock.Elapsed < TimeSpan.FromSeconds(60), $"Fit took {clock.Elapsed}");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void ByteVectorAndMLImageColumnsTrainLikeTheSingleVectorColumn()
    {
        var context = new MLContext(seed: 1);
        var floats = MLNetTestData.Patterns(context, copies: 2);
        var rows = floats.GetColumn<VBuffer<float>>(nameof(PixelRow.Pixels)).Select(v => v.DenseValues().Select(p => (byte)p).ToArray()).ToArray();
        var bytes = context.Data.LoadFromEnumerable(rows.Select(r => new ByteRow { Pixels = r }).ToList());
        var images = context.Data.LoadFromEnumerable(rows.Select(r => new ImageRow { Image = Gray(r, 8, 8) }).ToList());

        using (var read = ImageBatchReader.ReadAll(images, nameof(ImageRow.Image), null, 1, 8, 8))
        using (var patterns = TinyModels.Patterns().repeat(2, 1, 1, 1))
        {
            Assert.IsTrue(read.Images.eq(patterns).all().item<bool>(), "a gray MLImage reads as its pixel values");
        }

        byte[] Train(IDataView data, string column)
        {
            var options = MLNetTestData.Options(steps: 2);
            options.ImageColumnName = column;
            using var sampler = context.Generative().Diffusion(options).Fit(data);
            return sampler.Model.SaveWeights();
        }

        byte[] reference = Train(floats, nameof(PixelRow.Pixels));
        CollectionAssert.AreEqual(reference, Train(bytes, nameof(ByteRow.Pixels)), "a Byte vector column");
        CollectionAssert.AreEqual(reference, Train(images, nameof(ImageRow.Image)), "an MLImage column");
    }

    [TestMethod]
    public void AnRgbMLImageIsReadAsPlanarRedGreenBlue()
    {
        var context = new MLContext(seed: 1);
        var bgra = new byte[4 * 8 * 8];
        for (int i = 0; i < 64; i++)
        {
            bgra[(4 * i) + 0] = 30;            // blue
            bgra[(4 * i) + 1] = (byte)(2 * i);  // green
            bgra[(4 * i) + 2] = 255;           // red
            bgra[(4 * i) + 3] = 255;
        }

        var data = context.Data.LoadFromEnumerable(new[] { new ImageRow { Image = MLImage.CreateFromPixels(8, 8, MLPixelFormat.Bgra32, bgra) } });
        using var read = ImageBatchReader.ReadAll(data, nameof(ImageRow.Image), null, 3, 8, 8);
        using var pixels = ImageConversion.ModelToPixels(read.Images);
        Assert.AreEqual(255f, pixels[0, 0].min().item<float>());
        Assert.AreEqual(2f * 9, pixels[0, 1, 1, 1].item<float>(), 0.01f, "green of pixel (1, 1), index 9");
        Assert.AreEqual(30f, pixels[0, 2].max().item<float>(), 0.01f);
    }

    [TestMethod]
    public void NonSquareImagesTrainAndGenerateInTheirOrientation()
    {
        var context = new MLContext(seed: 1);
        // Pixel (y, x) of an 8-high, 16-wide image holds 16x + y: row-major C·H·W order.
        float[] pixels = Enumerable.Range(0, 8 * 16).Select(i => (float)((16 * (i % 16)) + (i / 16))).ToArray();
        var data = context.Data.LoadFromEnumerable(Enumerable.Repeat(new WideRow { Pixels = pixels }, 8).ToList());
        using (var read = ImageBatchReader.ReadAll(data, nameof(WideRow.Pixels), null, 1, 8, 16))
        using (var back = ImageConversion.ModelToPixels(read.Images))
        {
            CollectionAssert.AreEqual(new long[] { 8, 1, 8, 16 }, read.Images.shape);
            Assert.AreEqual((16 * 13) + 5, back[0, 0, 5, 13].item<float>(), 0.01f);
        }

        var options = MLNetTestData.Options(steps: 2);
        options.ImageHeight = 8;
        options.ImageWidth = 16;
        using var sampler = context.Generative().Diffusion(options).Fit(data);
        Assert.AreEqual(8, sampler.Model.ImageHeight);
        Assert.AreEqual(16, sampler.Model.ImageWidth);
        var image = sampler.Generate(1).Single();
        Assert.AreEqual(16, image.Width);
        Assert.AreEqual(8, image.Height);
        var output = sampler.Transform(MLNetTestData.Seeds(context, 4));
        Assert.AreEqual(new VectorDataViewType(NumberDataViewType.Single, 1, 8, 16), output.Schema["GeneratedPixels"].Type);
        Assert.HasCount(128, MLNetTestData.Pixels(output).Single());
    }

    [TestMethod]
    public void TheSimpleCatalogOverloadPassesItsArguments()
    {
        var context = new MLContext(seed: 1);
        using var sampler = context.Generative().Diffusion(nameof(PixelRow.Pixels), imageSize: 8, channels: 1, trainSteps: 1, labelColumnName: nameof(PixelRow.Label))
            .Fit(MLNetTestData.Patterns(context, copies: 4));
        var config = sampler.Model.Config;
        Assert.AreEqual(nameof(PixelRow.Pixels), config.ImageColumnName);
        Assert.AreEqual(nameof(PixelRow.Label), config.LabelColumnName);
        Assert.AreEqual(2, sampler.Model.ClassCount);
        Assert.AreEqual(1, sampler.Model.TrainedSteps);
        Assert.AreEqual(8, sampler.Model.ImageHeight);
        Assert.AreEqual(1, sampler.Model.Channels);
        var defaults = new DiffusionTrainerOptions();
        Assert.HasCount(defaults.Timesteps, config.Diffusion.Betas!, "everything else takes its default");
        Assert.AreEqual(((UNetOptions)defaults.Network).Dim, ((UNetOptions)config.Diffusion.Network).Dim);
        Assert.AreEqual(defaults.Objective, config.Diffusion.Objective);
    }

    private static MLImage Gray(byte[] values, int height, int width)
    {
        var bgra = new byte[4 * values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            bgra[4 * i] = bgra[(4 * i) + 1] = bgra[(4 * i) + 2] = values[i];
            bgra[(4 * i) + 3] = 255;
        }

        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Bgra32, bgra);
    }

    public sealed class ByteRow
    {
        [VectorType(64)]
        public byte[] Pixels { get; set; } = Array.Empty<byte>();
    }

    public sealed class ImageRow
    {
        [ImageType(8, 8)]
        public MLImage? Image { get; set; }
    }

    public sealed class WideRow
    {
        [VectorType(128)]
        public float[] Pixels { get; set; } = Array.Empty<float>();
    }
}
