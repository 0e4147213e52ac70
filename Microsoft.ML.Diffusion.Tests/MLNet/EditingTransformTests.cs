using System;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

public sealed class EditRow
{
    public int Seed { get; set; }

    [VectorType(64)]
    public float[] Image { get; set; } = Array.Empty<float>();

    [VectorType(64)]
    public float[] Keep { get; set; } = Array.Empty<float>();
}

/// <summary>The sampler as an ML.NET editing transform: an input image column and an optional mask column.</summary>
[TestClass]
public sealed class EditingTransformTests
{
    [TestMethod]
    public void InpaintingThroughTransformAndPredictionEngineKeepsTheMaskedPixels()
    {
        var context = new MLContext(seed: 1);
        using var sampler = context.Generative().Diffusion(MLNetTestData.Options(steps: 4)).Fit(MLNetTestData.Patterns(context, copies: 2));
        var image = Enumerable.Range(0, 64).Select(i => (float)((i * 37) % 256)).ToArray();
        var keep = Enumerable.Range(0, 64).Select(i => i < 32 ? 1f : 0f).ToArray(); // the top four rows are kept
        var rows = Enumerable.Range(0, 3).Select(s => new EditRow { Seed = s, Image = image, Keep = keep }).ToArray();
        sampler.Options.InputImageColumnName = nameof(EditRow.Image);
        sampler.Options.MaskColumnName = nameof(EditRow.Keep);
        var output = MLNetTestData.Pixels(sampler.Transform(context.Data.LoadFromEnumerable(rows)));
        Assert.HasCount(3, output);
        foreach (var pixels in output)
        {
            for (int i = 0; i < 32; i++)
            {
                Assert.AreEqual(image[i], pixels[i], 1.0, $"kept pixel {i}");
            }
        }

        Assert.IsTrue(output.Any(p => p.Skip(32).Zip(image.Skip(32)).Any(v => Math.Abs(v.First - v.Second) > 2)), "the rest is regenerated");
        using var engine = context.Model.CreatePredictionEngine<EditRow, GeneratedRow>(sampler, new PredictionEngineOptions { OwnsTransformer = false });
        var one = engine.Predict(rows[1]).GeneratedPixels;
        CollectionAssert.AreEqual(output[1], one, "the engine edits a row as Transform does");
    }

    [TestMethod]
    public void ImageToImageAtLowStrengthStaysNearTheInputAndBadColumnsAreNamed()
    {
        var context = new MLContext(seed: 1);
        using var sampler = context.Generative().Diffusion(MLNetTestData.Options(steps: 4)).Fit(MLNetTestData.Patterns(context, copies: 2));
        var image = Enumerable.Range(0, 64).Select(i => (float)(i * 4)).ToArray();
        var rows = new[] { new EditRow { Seed = 1, Image = image, Keep = new float[64] } };
        sampler.Options.InputImageColumnName = nameof(EditRow.Image);
        sampler.Options.Strength = 0.05;
        var near = MLNetTestData.Pixels(sampler.Transform(context.Data.LoadFromEnumerable(rows)))[0];
        sampler.Options.Strength = 1.0;
        var far = MLNetTestData.Pixels(sampler.Transform(context.Data.LoadFromEnumerable(rows)))[0];
        double Distance(float[] p) => p.Zip(image).Average(v => Math.Abs(v.First - v.Second));
        Assert.IsTrue(Distance(near) < Distance(far), $"strength 0.05: {Distance(near):F1}, strength 1: {Distance(far):F1}");

        sampler.Options.InputImageColumnName = "NoSuchColumn";
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => sampler.Transform(context.Data.LoadFromEnumerable(rows)));
        StringAssert.Contains(ex.Message, "NoSuchColumn");
        sampler.Options.InputImageColumnName = null;
        sampler.Options.MaskColumnName = nameof(EditRow.Keep);
        Assert.ThrowsExactly<ArgumentException>(() => sampler.Options.Validate());
    }
}
