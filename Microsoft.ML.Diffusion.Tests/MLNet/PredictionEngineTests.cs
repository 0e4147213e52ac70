using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Transforms.Image;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

public sealed class GeneratedRow
{
    [ImageType(8, 8)]
    public MLImage? GeneratedImage { get; set; }

    [VectorType(64)]
    public float[] GeneratedPixels { get; set; } = Array.Empty<float>();
}

public sealed class IdRow
{
    public int Id { get; set; }
}

public sealed class LabelRow
{
    public int Label { get; set; }
}

public sealed class TextSeedRow
{
    public string Seed { get; set; } = string.Empty;
}

[TestClass]
public sealed class PredictionEngineTests
{
    private static readonly int[] SeedValues = { 3, 14, 15, 92, 65, -35, 89, 79, 323 };
    private static MLContext context = null!;
    private static DiffusionSampler sampler = null!;
    private static List<float[]> expected = null!;
    private static string directory = null!;

    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        context = new MLContext(seed: 1);
        sampler = context.Generative().Diffusion(MLNetTestData.Options(steps: 2)).Fit(MLNetTestData.Patterns(context));
        expected = MLNetTestData.Pixels(sampler.Transform(MLNetTestData.Seeds(context, SeedValues)));
        directory = Directory.CreateTempSubdirectory("mldiffusion-engine-").FullName;
    }

    [ClassCleanup]
    public static void Cleanup()
    {
        sampler.Dispose();
        Directory.Delete(directory, recursive: true);
    }

    [TestMethod]
    public void APredictionEngineGivesEachSeedTheImageTransformGivesBitForBit()
    {
        Assert.IsTrue(sampler.IsRowToRowMapper);
        // The plain call users make. Not disposed here: by ML.NET's default an engine owns its transformer, and disposing it
        // would dispose the sampler that the other tests use (Engine below passes OwnsTransformer = false).
        var engine = context.Model.CreatePredictionEngine<SeedRow, GeneratedRow>(sampler);
        for (int i = 0; i < SeedValues.Length; i++)
        {
            var row = engine.Predict(new SeedRow { Seed = SeedValues[i] });
            CollectionAssert.AreEqual(expected[i], row.GeneratedPixels, $"seed {SeedValues[i]}");
            Assert.IsNotNull(row.GeneratedImage);
            Assert.AreEqual(8, row.GeneratedImage.Width);
            Assert.AreEqual((byte)expected[i][9], row.GeneratedImage.Pixels[(4 * 9) + 2], "the image and the pixel vector agree");
        }

        Assert.IsFalse(expected[0].SequenceEqual(expected[1]), "different seeds give different images");
        // The same seed again, after other rows: the row's cache follows the input row.
        CollectionAssert.AreEqual(expected[0], engine.Predict(new SeedRow { Seed = SeedValues[0] }).GeneratedPixels);
    }

    [TestMethod]
    public void OnePredictionGeneratesOneImageOnce()
    {
        var sizes = new List<int>();
        void Count(int n) => sizes.Add(n);
        using var engine = Engine<SeedRow>(context, sampler);
        sampler.Generating += Count;
        try
        {
            engine.Predict(new SeedRow { Seed = 1 });
            engine.Predict(new SeedRow { Seed = 2 });
        }
        finally
        {
            sampler.Generating -= Count;
        }

        CollectionAssert.AreEqual(new[] { 1, 1 }, sizes, "both columns of one prediction share one generation");
    }

    [TestMethod]
    public void WithoutASeedColumnTheNthPredictionIsTheNthRowOfTransform()
    {
        var options = MLNetTestData.Options(steps: 2);
        options.LabelColumnName = nameof(PixelRow.Label);
        using var conditional = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context));
        var rows = new[] { new LabelRow { Label = 1 }, new LabelRow { Label = 0 }, new LabelRow { Label = 1 } };
        var transformed = MLNetTestData.Pixels(conditional.Transform(context.Data.LoadFromEnumerable(rows)));
        using var engine = Engine<LabelRow>(context, conditional);
        for (int i = 0; i < rows.Length; i++)
        {
            CollectionAssert.AreEqual(transformed[i], engine.Predict(rows[i]).GeneratedPixels, $"row {i}");
        }

        Assert.IsFalse(transformed[0].SequenceEqual(transformed[2]), "rows without a seed get different seeds");

        // With a seed column, the label still steers the image as in Transform.
        var labelled = new[] { new LabelledSeedRow { Seed = 7, Label = 0 }, new LabelledSeedRow { Seed = 7, Label = 1 } };
        var byTransform = MLNetTestData.Pixels(conditional.Transform(context.Data.LoadFromEnumerable(labelled)));
        using var labelledEngine = Engine<LabelledSeedRow>(context, conditional);
        CollectionAssert.AreEqual(byTransform[0], labelledEngine.Predict(labelled[0]).GeneratedPixels);
        CollectionAssert.AreEqual(byTransform[1], labelledEngine.Predict(labelled[1]).GeneratedPixels);
        Assert.IsFalse(byTransform[0].SequenceEqual(byTransform[1]));

        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => labelledEngine.Predict(new LabelledSeedRow { Seed = 7, Label = 2 }));
        StringAssert.Contains(ex.Message, "Label column 'Label'");
    }

    [TestMethod]
    public void AChainEndingInTheSamplerPredictsAndSoDoesItsSavedAndLoadedCopy()
    {
        var ids = context.Data.LoadFromEnumerable(SeedValues.Select(s => new IdRow { Id = s }).ToArray());
        var copy = context.Transforms.CopyColumns(nameof(SeedRow.Seed), nameof(IdRow.Id)).Fit(ids);
        var chain = new TransformerChain<ITransformer>(copy, sampler);
        Assert.IsTrue(((ITransformer)chain).IsRowToRowMapper);
        CollectionAssert.AreEqual(expected.SelectMany(p => p).ToArray(), MLNetTestData.Pixels(chain.Transform(ids)).SelectMany(p => p).ToArray());
        using (var engine = Engine<IdRow>(context, chain))
        {
            AssertPredicts(engine, "chain");
        }

        string path = Path.Combine(directory, "chain.zip");
        context.Model.Save(chain, ids.Schema, path);
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(path, out var schema);
        Assert.IsNotNull(schema.GetColumnOrNull(nameof(IdRow.Id)));
        try
        {
            using var engine = Engine<IdRow>(fresh, loaded);
            AssertPredicts(engine, "loaded chain");
        }
        finally
        {
            (loaded as IDisposable)?.Dispose();
        }
    }

    [TestMethod]
    public void EnginesOfOneSamplerUsedConcurrentlyGiveTheSameImages()
    {
        // As ML.NET's PredictionEnginePool uses them: one engine per thread, all made from one transformer.
        const int Threads = 4;
        const int Rounds = 3;
        using var start = new Barrier(Threads);
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        var tasks = Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(
            () =>
            {
                using var engine = Engine<SeedRow>(context, sampler);
                start.SignalAndWait();
                for (int round = 0; round < Rounds; round++)
                {
                    for (int k = 0; k < SeedValues.Length; k++)
                    {
                        int i = (k + t + round) % SeedValues.Length; // threads ask for different seeds at the same time
                        var pixels = engine.Predict(new SeedRow { Seed = SeedValues[i] }).GeneratedPixels;
                        if (!pixels.SequenceEqual(expected[i]))
                        {
                            failures.Add($"thread {t}, round {round}, seed {SeedValues[i]}");
                        }
                    }
                }
            },
            TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(tasks);
        Assert.IsEmpty(failures, string.Join("; ", failures));
    }

    [TestMethod]
    public void ASeedColumnOfTheWrongTypeIsNamedWhenTheEngineIsMade()
    {
        var ex = Assert.Throws<Exception>(() => Engine<TextSeedRow>(context, sampler));
        StringAssert.Contains(Innermost(ex).Message, "Seed column 'Seed' has type String");
    }

    [TestMethod]
    public void AMapperRefusesARowOfAnotherSchema()
    {
        var mapper = sampler.GetRowToRowMapper(MLNetTestData.Seeds(context, 1).Schema);
        var other = context.Data.LoadFromEnumerable(new[] { new IdRow { Id = 1 } });
        using var cursor = other.GetRowCursor(other.Schema);
        Assert.ThrowsExactly<ArgumentException>(() => mapper.GetRow(cursor, mapper.OutputSchema));
        var dependencies = mapper.GetDependencies(new[] { mapper.OutputSchema["GeneratedPixels"] }).Select(c => c.Name).ToArray();
        CollectionAssert.AreEqual(new[] { "Seed" }, dependencies, "the generated columns need the seed column");
    }

    /// <summary>An engine that leaves the transformer alive when disposed (ML.NET's engines own their transformer by default).</summary>
    private static PredictionEngine<TSrc, GeneratedRow> Engine<TSrc>(MLContext mlContext, ITransformer transformer)
        where TSrc : class =>
        mlContext.Model.CreatePredictionEngine<TSrc, GeneratedRow>(transformer, new PredictionEngineOptions { OwnsTransformer = false });

    private static void AssertPredicts(PredictionEngine<IdRow, GeneratedRow> engine, string what)
    {
        for (int i = 0; i < SeedValues.Length; i++)
        {
            CollectionAssert.AreEqual(expected[i], engine.Predict(new IdRow { Id = SeedValues[i] }).GeneratedPixels, $"{what}, seed {SeedValues[i]}");
        }
    }

    private static Exception Innermost(Exception ex)
    {
        while (ex.InnerException is not null)
        {
            ex = ex.InnerException;
        }

        return ex;
    }
}
