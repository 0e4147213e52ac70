using System;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

[TestClass]
public sealed class InputValidationTests
{
    private readonly MLContext context = new(seed: 1);

    [TestMethod]
    public void AMissingImageColumnIsNamed()
    {
        var options = MLNetTestData.Options();
        options.ImageColumnName = "Photo";
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context)));
        StringAssert.Contains(ex.Message, "'Photo' is not in the data");
        StringAssert.Contains(ex.Message, "'Pixels'");
    }

    [TestMethod]
    public void AColumnOfTheWrongTypeIsNamed()
    {
        var options = MLNetTestData.Options();
        options.ImageColumnName = nameof(PixelRow.Label);
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context)));
        StringAssert.Contains(ex.Message, "'Label' has type Int32");
        StringAssert.Contains(ex.Message, "64 = 1×8×8");
    }

    [TestMethod]
    public void AVectorOfTheWrongSizeIsNamed()
    {
        var options = MLNetTestData.Options();
        options.Channels = 3;
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context)));
        StringAssert.Contains(ex.Message, "vector of 64 values; the model expects 192 = 3×8×8");
    }

    [TestMethod]
    public void ASizeNotDivisibleByTheDownsamplingFactorIsRefusedBeforeTraining()
    {
        var options = MLNetTestData.Options();
        options.ImageSize = 10;
        options.Network = new UNetOptions { Dim = 8, DimMults = new[] { 1, 2, 4 }, AttentionHeads = 2, AttentionDimHead = 8 };
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(options));
        StringAssert.Contains(ex.Message, "divisible by 4");
    }

    [TestMethod]
    public void EmptyDataIsRefused()
    {
        var empty = context.Data.LoadFromEnumerable(Array.Empty<PixelRow>());
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => context.Generative().Diffusion(MLNetTestData.Options()).Fit(empty));
        StringAssert.Contains(ex.Message, "no rows");
    }

    [TestMethod]
    public void NonFinitePixelsAreRefusedWithTheRow()
    {
        var rows = Enumerable.Range(0, 4).Select(i => new PixelRow { Pixels = Enumerable.Repeat(i == 2 ? float.NaN : 10f, 64).ToArray() }).ToArray();
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => context.Generative().Diffusion(MLNetTestData.Options()).Fit(context.Data.LoadFromEnumerable(rows)));
        StringAssert.Contains(ex.Message, "'Pixels', row 2");
    }

    [TestMethod]
    public void PixelsOutsideTheByteRangeAreRefused()
    {
        var rows = Enumerable.Range(0, 4).Select(i => new PixelRow { Pixels = Enumerable.Repeat(i == 1 ? 300f : 10f, 64).ToArray() }).ToArray();
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => context.Generative().Diffusion(MLNetTestData.Options()).Fit(context.Data.LoadFromEnumerable(rows)));
        StringAssert.Contains(ex.Message, "[0, 255]");
    }

    [TestMethod]
    public void AMissingLabelColumnIsNamed()
    {
        var options = MLNetTestData.Options();
        options.LabelColumnName = "Class";
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context)));
        StringAssert.Contains(ex.Message, "'Class'");
    }

    [TestMethod]
    public void InvalidOptionsAreRefusedAtConstruction()
    {
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(new DiffusionTrainerOptions { Channels = 2 }));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(new DiffusionTrainerOptions { BatchSize = 0 }));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => context.Generative().Diffusion(new DiffusionTrainerOptions { EmaDecay = 1 }));
        Assert.ThrowsExactly<ArgumentException>(() => context.Generative().Diffusion(new DiffusionTrainerOptions { Device = "tpu" }));
    }

    [TestMethod]
    public void ASeedColumnOfTheWrongTypeIsRefusedBySchemaPropagation()
    {
        using var sampler = context.Generative().Diffusion(MLNetTestData.Options(steps: 1)).Fit(MLNetTestData.Patterns(context));
        var bad = context.Data.LoadFromEnumerable(new[] { new TextSeed { Seed = "x" } });
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => sampler.GetOutputSchema(bad.Schema));
        StringAssert.Contains(ex.Message, "Seed column 'Seed' has type String");
    }

    public sealed class TextSeed
    {
        public string Seed { get; set; } = string.Empty;
    }
}
