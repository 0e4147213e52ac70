using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Networks;

[TestClass]
public sealed class UNetTests
{
    [TestMethod]
    public void ParameterCountMatchesReferenceForConfigA()
    {
        using var unet = new UNet(new UNetOptions { Dim = 32, DimMults = new[] { 1, 2, 4 }, Channels = 1 });
        Assert.AreEqual(2_607_681L, unet.ParameterCount);
    }

    [TestMethod]
    public void ParameterCountMatchesReferenceForConfigB()
    {
        using var unet = new UNet(new UNetOptions { Dim = 64, DimMults = new[] { 1, 2, 4, 8 }, Channels = 3 });
        Assert.AreEqual(35_711_491L, unet.ParameterCount);
    }

    [TestMethod]
    public void PerPartCountsMatchReference()
    {
        using var unet = new UNet(new UNetOptions { Dim = 32, DimMults = new[] { 1, 2, 4 }, Channels = 1 });
        long Count(string prefix) => unet.named_parameters().Where(p => p.name.StartsWith(prefix, StringComparison.Ordinal)).Sum(p => p.parameter.numel());
        Assert.AreEqual(1_600L, Count("init_conv."));
        Assert.AreEqual(20_736L, Count("time_mlp_"));
        Assert.AreEqual(75_264L, Count("downs.0."));
        Assert.AreEqual(79_392L, Count("downs.1."));
        Assert.AreEqual(288_768L, Count("downs.2."));
        Assert.AreEqual(723_712L, Count("mid_"));
        Assert.AreEqual(994_368L, Count("ups.0."));
        Assert.AreEqual(282_720L, Count("ups.1."));
        Assert.AreEqual(102_976L, Count("ups.2."));
        Assert.AreEqual(38_112L, Count("final_res_block."));
        Assert.AreEqual(33L, Count("final_conv."));
    }

    [TestMethod]
    [DataRow(3, 16, 16, false, 0)]
    [DataRow(5, 8, 16, false, 0)]
    [DataRow(1, 16, 8, true, 0)]
    [DataRow(2, 8, 8, false, 10)]
    [DataRow(2, 8, 8, true, 3)]
    public void OutputHasInputShapeAndDoubledChannelsWhenVarianceIsLearned(int channels, int height, int width, bool learned, int classes)
    {
        using var unet = new UNet(new UNetOptions
        {
            Dim = 8, DimMults = new[] { 1, 2, 2 }, Channels = channels, AttentionHeads = 2, AttentionDimHead = 4,
            LearnedVariance = learned, ClassCount = classes,
        });
        using var x = randn(3, channels, height, width);
        using var t = tensor(new long[] { 0, 5, 9 });
        using var labels = classes > 0 ? tensor(new long[] { 0, classes - 1, classes }) : null;
        using var y = unet.forward(x, t, labels);
        CollectionAssert.AreEqual(new long[] { 3, channels * (learned ? 2 : 1), height, width }, y.shape);
        Assert.IsTrue(y.isfinite().all().item<bool>());
    }

    [TestMethod]
    public void ClassEmbeddingAddsOneRowForNoLabel()
    {
        using var plain = new UNet(new UNetOptions { Dim = 8, DimMults = new[] { 1, 2 }, AttentionHeads = 2, AttentionDimHead = 4 });
        using var conditional = new UNet(new UNetOptions { Dim = 8, DimMults = new[] { 1, 2 }, AttentionHeads = 2, AttentionDimHead = 4, ClassCount = 10 });
        Assert.AreEqual(11L * 32, conditional.ParameterCount - plain.ParameterCount);
    }

    [TestMethod]
    public void RejectsSizesNotDivisibleByTheDownsamplingFactor()
    {
        using var unet = new UNet(new UNetOptions { Dim = 8, DimMults = new[] { 1, 2, 4 }, AttentionHeads = 2, AttentionDimHead = 4 });
        using var x = randn(1, 1, 10, 12);
        using var t = tensor(new long[] { 1 });
        var ex = Assert.ThrowsExactly<ArgumentException>(() => unet.forward(x, t));
        StringAssert.Contains(ex.Message, "divisible by 4");
    }

    [TestMethod]
    public void RejectsInvalidOptions()
    {
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new UNet(new UNetOptions { Dim = 0 }));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new UNet(new UNetOptions { DimMults = Array.Empty<int>() }));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new UNet(new UNetOptions { Dropout = 1.5 }));
    }
}
