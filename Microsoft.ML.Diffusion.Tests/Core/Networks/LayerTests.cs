using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Networks;

/// <summary>Layers whose fast formulation must equal the textbook one (denoising-diffusion-pytorch's order of operations).</summary>
[TestClass]
public sealed class LayerTests
{
    [TestMethod]
    [DataRow(16, 4, 32, 6, 6, false)]
    [DataRow(16, 4, 32, 6, 6, true)]
    [DataRow(40, 2, 8, 4, 2, true)]
    public void LinearAttentionEqualsTheTextbookOrderInValueAndGradient(int dim, int heads, int dimHead, int height, int width, bool channelsLast)
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var layer = new LinearAttention(dim, heads, dimHead);
        layer.to(float64);
        var p = layer.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        using (no_grad())
        {
            p["norm.g"].copy_(rand_like(p["norm.g"]) + 0.5);
            p["to_out_norm.g"].copy_(rand_like(p["to_out_norm.g"]) + 0.5);
            p["to_out_conv.bias"].copy_(randn_like(p["to_out_conv.bias"]));
        }

        var x = randn(new long[] { 3, dim, height, width }, float64).requires_grad_(true);
        var upstream = randn(new long[] { 3, dim, height, width }, float64);

        var output = layer.call(MemoryFormat.To(x, channelsLast));
        Assert.AreEqual(channelsLast, MemoryFormat.IsChannelsLast(output), "the output keeps the input's memory layout");
        var fast = Gradients(output, upstream, x, p.Values);
        var textbook = Gradients(TextbookLinearAttention(x, p, heads, dimHead), upstream, x, p.Values);

        for (int i = 0; i < fast.Count; i++)
        {
            double scale = textbook[i].abs().max().item<double>();
            double error = (fast[i] - textbook[i]).abs().max().item<double>();
            Assert.IsTrue(error <= 1e-10 * System.Math.Max(scale, 1), $"tensor {i}: max error {error:E2} (scale {scale:E2})");
        }
    }

    [TestMethod]
    [DataRow(7, 7)]   // the explicit product
    [DataRow(20, 16)] // libtorch's fused kernel
    public void FullAttentionIsSoftmaxAttentionOverPixelsAndMemorySlots(int height, int width)
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        const int Dim = 8, Heads = 2, DimHead = 4;
        using var layer = new FullAttention(Dim, Heads, DimHead);
        layer.to(float64);
        var p = layer.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        var x = randn(new long[] { 2, Dim, height, width }, float64);
        long b = 2, n = height * width;
        var qkv = nn.functional.conv2d(RmsNorm(x, p["norm.g"]), p["to_qkv.weight"]).chunk(3, 1)
            .Select(t => t.reshape(b, Heads, DimHead, n).transpose(-1, -2)).ToArray(); // b h n d
        var mem = p["mem_kv"]; // 2 h slots d
        var k = cat(new[] { mem[0].unsqueeze(0).expand(b, -1, -1, -1), qkv[1] }, -2);
        var v = cat(new[] { mem[1].unsqueeze(0).expand(b, -1, -1, -1), qkv[2] }, -2);
        var weights = (einsum("bhid,bhjd->bhij", qkv[0], k) / System.Math.Sqrt(DimHead)).softmax(-1);
        var attended = einsum("bhij,bhjd->bhid", weights, v).transpose(-1, -2).reshape(b, Heads * DimHead, height, width);
        var expected = nn.functional.conv2d(attended, p["to_out.weight"], p["to_out.bias"]);
        double error = (layer.call(x) - expected).abs().max().item<double>();
        Assert.IsTrue(error < 1e-10, $"max error {error:E2}");
    }

    [TestMethod]
    public void UpsampleRepeatsEachPixelIntoATwoByTwoBlock()
    {
        using var scope = NewDisposeScope();
        using var layer = new Microsoft.ML.Diffusion.Core.Networks.Upsample(2, 3);
        var conv = layer.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        var x = randn(2, 2, 3, 4);
        var repeated = x.repeat_interleave(2, 2).repeat_interleave(2, 3);
        var expected = nn.functional.conv2d(repeated, conv["conv.weight"], conv["conv.bias"], padding: new long[] { 1, 1 });
        Assert.IsTrue(layer.call(x).allclose(expected, rtol: 0, atol: 1e-6));
    }

    // out = W_o·rearrange(contextᵀ·(softmax_d(q)·scale)) + b with context = softmax_n([mem_k, k])·[mem_v, v]ᵀ, then RMSNorm.
    private static Tensor TextbookLinearAttention(Tensor x, Dictionary<string, Parameter> p, int heads, int dimHead)
    {
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        var normed = RmsNorm(x, p["norm.g"]);
        var qkv = nn.functional.conv2d(normed, p["to_qkv.weight"]).chunk(3, 1)
            .Select(t => t.reshape(b, heads, dimHead, h * w)).ToArray();
        var mem = p["mem_kv"];
        var k = cat(new[] { mem[0].unsqueeze(0).expand(b, -1, -1, -1), qkv[1] }, -1);
        var v = cat(new[] { mem[1].unsqueeze(0).expand(b, -1, -1, -1), qkv[2] }, -1);
        var q = qkv[0].softmax(-2) * (1.0 / System.Math.Sqrt(dimHead));
        k = k.softmax(-1);
        var context = einsum("bhdn,bhen->bhde", k, v);
        var output = einsum("bhde,bhdn->bhen", context, q).reshape(b, (long)heads * dimHead, h, w);
        return RmsNorm(nn.functional.conv2d(output, p["to_out_conv.weight"], p["to_out_conv.bias"]), p["to_out_norm.g"]);
    }

    private static Tensor RmsNorm(Tensor x, Tensor g) =>
        nn.functional.normalize(x, dim: 1) * g * System.Math.Sqrt(x.shape[1]);

    private static List<Tensor> Gradients(Tensor output, Tensor upstream, Tensor x, IEnumerable<Parameter> parameters)
    {
        var inputs = new List<Tensor> { x };
        inputs.AddRange(parameters);
        var grads = autograd.grad(new[] { output }, inputs, new[] { upstream });
        var result = new List<Tensor> { output.detach() };
        result.AddRange(grads);
        return result;
    }
}
