using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Networks;

[TestClass]
public sealed class SinusoidalPositionEmbeddingTests
{
    [TestMethod]
    public void EmbedsEachTimestepAsSinesThenCosines()
    {
        using var embedding = new SinusoidalPositionEmbedding(8);
        using var y = embedding.call(tensor(new long[] { 0, 3, 999 }));
        CollectionAssert.AreEqual(new long[] { 3, 8 }, y.shape);
        var values = y.data<float>().ToArray();
        var times = new[] { 0.0, 3, 999 };
        for (int i = 0; i < 3; i++)
        {
            for (int k = 0; k < 4; k++)
            {
                double angle = times[i] * Math.Pow(10000, -k / 3.0); // ω_k = θ^(−k/(d/2 − 1))
                Assert.AreEqual(Math.Sin(angle), values[(i * 8) + k], 1e-4, $"sin, t = {times[i]}, k = {k}");
                Assert.AreEqual(Math.Cos(angle), values[(i * 8) + 4 + k], 1e-4, $"cos, t = {times[i]}, k = {k}");
            }
        }
    }

    [TestMethod]
    public void FollowsTheInputToAnyDeviceAndSavesNothing()
    {
        // TorchSharp 0.107 never moves a non-persistent buffer with .to(device); a table kept in the module stayed on the CPU.
        var meta = new Device(DeviceType.META);
        using var embedding = new SinusoidalPositionEmbedding(16);
        embedding.to(meta);
        Assert.AreEqual(0, embedding.state_dict().Count);
        using var time = arange(4L, int64, meta);
        using var y = embedding.call(time);
        Assert.AreEqual(DeviceType.META, y.device_type);
        CollectionAssert.AreEqual(new long[] { 4, 16 }, y.shape);
    }
}
