using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Export;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Onnx;

/// <summary>The exported network against TorchSharp on the same inputs: max |difference| ≤ 1e-4.</summary>
[TestClass]
public sealed class OnnxNetworkExportTests
{
    private const float Tolerance = 1e-4f;

    [TestMethod]
    [DataRow("UNet", PredictionTarget.Noise, VarianceType.FixedSmall, 0, 8, 8)]
    [DataRow("UNet", PredictionTarget.Start, VarianceType.FixedLarge, 3, 8, 8)]
    [DataRow("UNet", PredictionTarget.Velocity, VarianceType.LearnedRange, 3, 8, 8)]
    [DataRow("UNet", PredictionTarget.Noise, VarianceType.LearnedRange, 0, 8, 16)]
    [DataRow("UNet3", PredictionTarget.Velocity, VarianceType.FixedSmall, 4, 16, 16)]
    [DataRow("DiT", PredictionTarget.Noise, VarianceType.FixedSmall, 0, 8, 8)]
    [DataRow("DiT", PredictionTarget.Start, VarianceType.FixedLarge, 3, 8, 8)]
    [DataRow("DiT", PredictionTarget.Velocity, VarianceType.LearnedRange, 3, 8, 8)]
    [DataRow("DiT", PredictionTarget.Noise, VarianceType.LearnedRange, 0, 8, 12)]
    public void TheExportedNetworkPredictsWhatTorchSharpPredicts(string kind, PredictionTarget objective, VarianceType variance, int classes, int height, int width)
    {
        using var one = TinyModels.OneThread();
        int channels = kind == "UNet3" ? 3 : 1;
        using var diffusion = OnnxTestModels.Diffusion(OnnxTestModels.Network(kind, channels, variance == VarianceType.LearnedRange, classes), objective, variance, height: height, width: width);
        byte[] onnx = DiffusionOnnxExport.ToBytes(diffusion, new OnnxExportOptions { Content = OnnxGraphContent.Network });

        const int n = 3;
        using var scope = NewDisposeScope();
        manual_seed(5);
        var x = randn(n, channels, height, width);
        var t = tensor(new long[] { 0, 57, 99 });
        var labels = classes > 0 ? tensor(new long[] { 0, classes, classes - 1 }) : null;
        float[] expected;
        using (no_grad())
        {
            expected = OnnxTestModels.Data(diffusion.Model.forward(x, t, labels));
        }

        var inputs = new[] { OnnxTestModels.Floats("x", OnnxTestModels.Data(x), n, channels, height, width), OnnxTestModels.Longs("t", t.data<long>().ToArray()) }.ToList();
        if (labels is not null)
        {
            inputs.Add(OnnxTestModels.Longs("class", labels.data<long>().ToArray()));
        }

        float[] actual = OnnxTestModels.Run(onnx, "prediction", inputs.ToArray());
        float difference = OnnxTestModels.MaxDifference(expected, actual);
        float scale = expected.Max(System.Math.Abs);
        Assert.IsTrue(scale > 0.1f, $"the reference output is nearly zero ({scale}): the comparison would show nothing");
        Assert.IsTrue(difference <= Tolerance, $"{kind} {objective} {variance} classes {classes} {height}×{width}: max |ONNX − TorchSharp| = {difference:E2} (outputs up to {scale:F2})");
    }
}
