using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

[TestClass]
public sealed class StreamingTransformTests
{
    private const int SmallRows = 40;
    private static MLContext context = null!;
    private static DiffusionSampler sampler = null!;
    private static IDataView small = null!;
    private static Dictionary<int, float[]> fullRead = null!;
    private static int[] fullSeeds = null!;

    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        context = new MLContext(seed: 1);
        sampler = context.Generative().Diffusion(MLNetTestData.Options(steps: 2)).Fit(MLNetTestData.Patterns(context));
        small = MLNetTestData.Seeds(context, Enumerable.Range(0, SmallRows).Select(i => 1000 + (7 * i)).ToArray());
        var rows = ReadAll(sampler.Transform(small));
        fullSeeds = rows.Select(r => r.Seed).ToArray();
        fullRead = rows.ToDictionary(r => r.Seed, r => r.Pixels);
    }

    [ClassCleanup]
    public static void Cleanup() => sampler.Dispose();

    [TestMethod]
    public void ReadingTheFirstRowsOfALargeInputGeneratesOnlyTheirBatches()
    {
        var input = MLNetTestData.Seeds(context, Enumerable.Range(0, 5000).ToArray());
        var output = sampler.Transform(input);
        var calls = Count(() =>
        {
            using var cursor = output.GetRowCursor(new[] { output.Schema["GeneratedPixels"] });
            var getter = cursor.GetGetter<VBuffer<float>>(output.Schema["GeneratedPixels"]);
            VBuffer<float> value = default;
            for (int i = 0; i < 16 && cursor.MoveNext(); i++)
            {
                getter(ref value);
            }
        });
        CollectionAssert.AreEqual(new[] { 8, 8 }, calls, "16 rows are two batches of one micro-batch each");
        Assert.AreEqual(5000L, output.GetRowCount());

        // A cursor that reads only input columns generates nothing, over all 5,000 rows.
        var none = Count(() => Assert.AreEqual(5000, output.GetColumn<int>(nameof(SeedRow.Seed)).Count()));
        Assert.IsEmpty(none);

        // Rows skipped without reading a generated column are not generated: 10 rows near the end cost 2 batches.
        var tail = Count(() => Assert.HasCount(10, MLNetTestData.Pixels(context.Data.TakeRows(context.Data.SkipRows(output, 4985), 10))));
        CollectionAssert.AreEqual(new[] { 8, 7 }, tail, "a batch starts at the first row read; the second runs to the input's end");
    }

    [TestMethod]
    public void AFullReadGeneratesEveryRowOnceInBatches()
    {
        var calls = Count(() => Assert.HasCount(SmallRows, MLNetTestData.Pixels(sampler.Transform(small))));
        Assert.AreEqual(SmallRows, calls.Sum());
        Assert.IsTrue(calls.All(n => n <= (sampler.Options.MicroBatchSize ?? SamplingLoop.CpuMicroBatchSize)), "no call holds more than one batch");

        // Both generated columns of a row share one generation.
        var both = Count(() =>
        {
            var output = sampler.Transform(small);
            using var cursor = output.GetRowCursor(output.Schema);
            var pixels = cursor.GetGetter<VBuffer<float>>(output.Schema["GeneratedPixels"]);
            var image = cursor.GetGetter<MLImage>(output.Schema["GeneratedImage"]);
            VBuffer<float> p = default;
            MLImage? i = null;
            while (cursor.MoveNext())
            {
                pixels(ref p);
                image(ref i!);
                i.Dispose();
            }
        });
        Assert.AreEqual(SmallRows, both.Sum());
    }

    [TestMethod]
    public void ShuffledSkippedAndInterleavedCursorsGiveTheImagesOfAFullRead()
    {
        var output = sampler.Transform(small);

        // Shuffled by ML.NET (this view cannot shuffle itself, so ShuffleRows pools rows).
        var shuffled = ReadAll(context.Data.ShuffleRows(output, seed: 5));
        Assert.HasCount(SmallRows, shuffled);
        Assert.IsFalse(shuffled.Select(r => r.Seed).SequenceEqual(fullSeeds), "the rows were shuffled");
        foreach (var (seed, pixels) in shuffled)
        {
            CollectionAssert.AreEqual(fullRead[seed], pixels, $"shuffled, seed {seed}");
        }

        // Skipped and taken: batches start at other rows than in the full read.
        var window = ReadAll(context.Data.TakeRows(context.Data.SkipRows(output, 13), 11));
        CollectionAssert.AreEqual(fullSeeds.Skip(13).Take(11).ToArray(), window.Select(r => r.Seed).ToArray());
        foreach (var (seed, pixels) in window)
        {
            CollectionAssert.AreEqual(fullRead[seed], pixels, $"window, seed {seed}");
        }

        // Two cursors of one view, advanced alternately by different strides, one reading every third row only.
        var columns = new[] { output.Schema[nameof(SeedRow.Seed)], output.Schema["GeneratedPixels"] };
        using var a = output.GetRowCursor(columns);
        using var b = output.GetRowCursorSet(columns, 4).Single();
        var readA = Reader(a);
        var readB = Reader(b);
        int seen = 0;
        for (bool moreA = true, moreB = true; moreA || moreB;)
        {
            for (int k = 0; k < 3 && moreA; k++)
            {
                if (moreA = a.MoveNext())
                {
                    var (seed, pixels) = readA();
                    CollectionAssert.AreEqual(fullRead[seed], pixels, $"cursor a, seed {seed}");
                    seen++;
                }
            }

            for (int k = 0; k < 5 && moreB; k++)
            {
                if ((moreB = b.MoveNext()) && b.Position % 3 == 0)
                {
                    var (seed, pixels) = readB();
                    CollectionAssert.AreEqual(fullRead[seed], pixels, $"cursor b, seed {seed}");
                    seen++;
                }
            }
        }

        Assert.AreEqual(SmallRows + ((SmallRows + 2) / 3), seen);
    }

    [TestMethod]
    public void RowsWithoutASeedColumnGetTheSameImagesWhateverIsSkipped()
    {
        var rows = context.Data.LoadFromEnumerable(Enumerable.Range(0, 20).Select(i => new PixelRow { Pixels = new float[64], Label = i }).ToArray());
        var output = sampler.Transform(rows);
        var all = MLNetTestData.Pixels(output);
        var skipped = MLNetTestData.Pixels(context.Data.SkipRows(output, 11));
        Assert.HasCount(9, skipped);
        for (int i = 0; i < skipped.Count; i++)
        {
            CollectionAssert.AreEqual(all[11 + i], skipped[i], $"row {11 + i}");
        }

        Assert.IsFalse(all[0].SequenceEqual(all[1]));
    }

    private static List<int> Count(Action action)
    {
        var calls = new List<int>();
        void Record(int n) => calls.Add(n);
        sampler.Generating += Record;
        try
        {
            action();
        }
        finally
        {
            sampler.Generating -= Record;
        }

        return calls;
    }

    private static List<(int Seed, float[] Pixels)> ReadAll(IDataView view)
    {
        using var cursor = view.GetRowCursor(new[] { view.Schema[nameof(SeedRow.Seed)], view.Schema["GeneratedPixels"] });
        var read = Reader(cursor);
        var rows = new List<(int Seed, float[] Pixels)>();
        while (cursor.MoveNext())
        {
            rows.Add(read());
        }

        return rows;
    }

    private static Func<(int Seed, float[] Pixels)> Reader(DataViewRowCursor cursor)
    {
        var seed = cursor.GetGetter<int>(cursor.Schema[nameof(SeedRow.Seed)]);
        var pixels = cursor.GetGetter<VBuffer<float>>(cursor.Schema["GeneratedPixels"]);
        int s = 0;
        VBuffer<float> p = default;
        return () =>
        {
            seed(ref s);
            pixels(ref p);
            return (s, p.DenseValues().ToArray());
        };
    }
}
