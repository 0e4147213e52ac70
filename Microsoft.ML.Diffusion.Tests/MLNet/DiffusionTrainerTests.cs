using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Transforms.Image;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

[TestClass]
public sealed class DiffusionTrainerTests
{
    private static MLContext context = null!;
    private static DiffusionSampler sampler = null!;

    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        context = new MLContext(seed: 1);
        sampler = context.Generative().Diffusion(MLNetTestData.Options()).Fit(MLNetTestData.Patterns(context));
    }

    [ClassCleanup]
    public static void Cleanup() => sampler.Dispose();

    [TestMethod]
    public void OutputSchemaFromGetOutputSchemaEqualsTheOneTransformProduces()
    {
        var seeds = MLNetTestData.Seeds(context, 1, 2);
        var expected = sampler.GetOutputSchema(seeds.Schema);
        var actual = sampler.Transform(seeds).Schema;
        Assert.AreEqual(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.AreEqual(expected[i].Name, actual[i].Name);
            Assert.AreEqual(expected[i].Type, actual[i].Type);
        }

        Assert.IsInstanceOfType<ImageDataViewType>(actual["GeneratedImage"].Type);
        Assert.AreEqual(new VectorDataViewType(NumberDataViewType.Single, 1, 8, 8), actual["GeneratedPixels"].Type);

        var shape = context.Generative().Diffusion(MLNetTestData.Options()).GetOutputSchema(Shape(MLNetTestData.Patterns(context).Schema));
        var names = shape.Select(c => c.Name).ToArray();
        CollectionAssert.IsSubsetOf(new[] { "Pixels", "Label", "GeneratedImage", "GeneratedPixels" }, names);
    }

    [TestMethod]
    public void GeneratedColumnsHoldEightBitImagesOfTheModelSize()
    {
        var output = sampler.Transform(MLNetTestData.Seeds(context, 5, 6, 7));
        var pixels = MLNetTestData.Pixels(output);
        Assert.HasCount(3, pixels);
        foreach (var p in pixels)
        {
            Assert.HasCount(64, p);
            Assert.IsTrue(p.All(v => v >= 0 && v <= 255 && v == MathF.Round(v)));
        }

        var images = output.GetColumn<MLImage>("GeneratedImage").ToList();
        Assert.AreEqual(8, images[0].Width);
        Assert.AreEqual(8, images[0].Height);
        // The image and the pixel vector agree: gray pixels equal the red channel of the BGRA image.
        Assert.AreEqual(pixels[1][9], images[1].Pixels[(4 * 9) + 2]);
    }

    [TestMethod]
    public void ARowsSeedFixesItsImageInAnyBatch()
    {
        var batch = MLNetTestData.PixelHashes(sampler.Transform(MLNetTestData.Seeds(context, 10, 20, 30, 40, 50, 60, 70, 80, 90, 20))).ToArray();
        var alone = MLNetTestData.PixelHashes(sampler.Transform(MLNetTestData.Seeds(context, 20))).Single();
        Assert.AreEqual(alone, batch[1]);
        Assert.AreEqual(alone, batch[9]);
        Assert.AreNotEqual(batch[0], batch[1]);
    }

    [TestMethod]
    public void RowsWithoutASeedColumnGetDeterministicSeeds()
    {
        var rows = context.Data.LoadFromEnumerable(new[] { new PixelRow { Pixels = new float[64] }, new PixelRow { Pixels = new float[64] } });
        var first = MLNetTestData.PixelHashes(sampler.Transform(rows)).ToArray();
        var second = MLNetTestData.PixelHashes(sampler.Transform(rows)).ToArray();
        CollectionAssert.AreEqual(first, second);
        Assert.AreNotEqual(first[0], first[1]);
    }

    [TestMethod]
    public void GenerateReturnsImagesOfTheModelSize()
    {
        var images = sampler.Generate(3, new DiffusionSamplerOptions { Scheduler = new DdpmScheduler(), Seed = 4 });
        Assert.HasCount(3, images);
        Assert.IsTrue(images.All(i => i.Width == 8 && i.Height == 8));
    }

    [TestMethod]
    public void ProgressReachesMLContextLogAndTheProgressReceiver()
    {
        var ml = new MLContext(seed: 2);
        var messages = new List<string>();
        ml.Log += (_, e) => { lock (messages) { messages.Add(e.Message); } };
        var reports = new List<TrainingProgress>();
        var options = MLNetTestData.Options(steps: 10);
        options.LogEvery = 5;
        options.Progress = new SyncProgress<TrainingProgress>(reports.Add);
        using var trained = ml.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(ml));
        Assert.IsTrue(messages.Any(m => m.Contains("step 5/10", StringComparison.Ordinal) && m.Contains("img/s", StringComparison.Ordinal)), string.Join("\n", messages));
        CollectionAssert.AreEqual(new[] { 5, 10 }, reports.Select(r => r.Step).ToArray());
        Assert.IsTrue(reports.All(r => double.IsFinite(r.Loss) && r.Loss > 0 && r.ImagesPerSecond > 0));
    }

    [TestMethod]
    public void CancellationStopsTrainingWithinOneStep()
    {
        using var source = new CancellationTokenSource();
        var reports = new List<int>();
        var options = MLNetTestData.Options(steps: 1000);
        options.LogEvery = 1;
        options.CancellationToken = source.Token;
        options.Progress = new SyncProgress<TrainingProgress>(p =>
        {
            reports.Add(p.Step);
            if (p.Step == 3)
            {
                source.Cancel();
            }
        });
        Assert.ThrowsExactly<OperationCanceledException>(() => context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context)));
        Assert.AreEqual(3, reports.Max());
    }

    private static SchemaShape Shape(DataViewSchema schema) => new(schema.Select(c => c.Type is VectorDataViewType v
        ? MLNetInternals.Column(c.Name, SchemaShape.Column.VectorKind.Vector, v.ItemType)
        : MLNetInternals.Column(c.Name, SchemaShape.Column.VectorKind.Scalar, c.Type)));
}
