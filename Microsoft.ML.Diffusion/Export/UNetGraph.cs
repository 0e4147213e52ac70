using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Networks;

namespace Microsoft.ML.Diffusion.Export;

/// <summary>
/// <see cref="UNet"/> in ONNX: init conv, sinusoidal time MLP (+ class embedding), down levels (two ResNet blocks,
/// linear or full attention with a residual, space-to-depth downsample), middle, up levels with skip concatenations and
/// nearest upsampling, final ResNet block and 1×1 conv. Linear attention is written in its textbook order (softmax of q
/// over features and of k over positions, context = k·vᵀ, out = contextᵀ·q): the function the module computes, which
/// regroups the products only for libtorch's speed.
/// </summary>
internal sealed class UNetGraph : DenoiserGraph
{
    private const int MemorySlots = 4;
    private readonly UNetOptions options;

    public UNetGraph(OnnxGraphBuilder root, UNet unet, int height, int width)
        : base(root, unet, height, width)
    {
        options = unet.Shape;
    }

    public override string Emit(OnnxGraphBuilder g, string x, string t, string? classes)
    {
        int dim = options.Dim;
        int levels = options.Levels;
        var dims = new List<int> { dim };
        dims.AddRange(options.DimMults.Select(m => dim * m));

        var h = Conv(g, x, "init_conv", 3);
        var r = h;
        var time = Linear(g, g.GeluErf(Linear(g, TimeEmbedding(g, t, dim), "time_mlp_in")), "time_mlp_out");
        if (options.ClassCount > 0)
        {
            time = g.Add(time, Embedding(g, classes ?? throw new InvalidOperationException("A class-conditional U-Net needs labels."), "class_embedding.weight"));
        }

        var skips = new Stack<string>();
        int height = Height, width = Width;
        for (int i = 0; i < levels; i++)
        {
            string prefix = $"downs.{i}.";
            bool last = i == levels - 1;
            h = Resnet(g, h, time, prefix + "block1.", dims[i]);
            skips.Push(h);
            h = Resnet(g, h, time, prefix + "block2.", dims[i]);
            h = g.Add(Attention(g, h, prefix + "attn.", dims[i], height, width, full: last), h);
            skips.Push(h);
            if (last)
            {
                h = Conv(g, h, prefix + "resample", 1);
            }
            else
            {
                h = Downsample(g, h, prefix + "resample.conv", dims[i]);
                height /= 2;
                width /= 2;
            }
        }

        int mid = dims[^1];
        h = Resnet(g, h, time, "mid_block1.", mid);
        h = g.Add(Attention(g, h, "mid_attn.", mid, height, width, full: true), h);
        h = Resnet(g, h, time, "mid_block2.", mid);

        for (int j = 0; j < levels; j++)
        {
            int i = levels - 1 - j;
            string prefix = $"ups.{j}.";
            int dimOut = dims[i + 1];
            h = Resnet(g, g.Concat(1, h, skips.Pop()), time, prefix + "block1.", dimOut);
            h = Resnet(g, g.Concat(1, h, skips.Pop()), time, prefix + "block2.", dimOut);
            h = g.Add(Attention(g, h, prefix + "attn.", dimOut, height, width, full: i == levels - 1), h);
            if (i == 0)
            {
                h = Conv(g, h, prefix + "resample", 1);
            }
            else
            {
                h = g.Node(
                    "Resize",
                    new[] { h, string.Empty, g.Constant1D(1f, 1f, 2f, 2f) },
                    OnnxAttribute.Text("mode", "nearest"),
                    OnnxAttribute.Text("coordinate_transformation_mode", "asymmetric"),
                    OnnxAttribute.Text("nearest_mode", "floor"));
                h = Conv(g, h, prefix + "resample.conv", 1);
                height *= 2;
                width *= 2;
            }
        }

        h = Resnet(g, g.Concat(1, h, r), time, "final_res_block.", dim);
        return Conv(g, h, "final_conv", 0);
    }

    /// <summary>RMSNorm over channels: x · 1/√max(Σx², 1e-24) · (g·√C).</summary>
    private string RmsNorm(OnnxGraphBuilder g, string x, string key, int channels)
    {
        float scale = (float)Math.Sqrt(channels);
        string gain = Param(key, "scaled", (v, s) => (v.Select(e => e * scale).ToArray(), s));
        var sum = g.Node("ReduceSumSquare", new[] { x, g.Int64Vector(1) }, OnnxAttribute.Int("keepdims", 1));
        var inverse = g.Node("Reciprocal", new[] { g.Node("Sqrt", new[] { g.Node("Max", new[] { sum, g.FloatScalar(1e-24f) }) }) });
        return g.Mul(g.Mul(x, inverse), gain);
    }

    private string Resnet(OnnxGraphBuilder g, string x, string time, string prefix, int dimOut)
    {
        var scaleShift = g.Reshape(Linear(g, g.Silu(time), prefix + "mlp"), -1, 2 * dimOut, 1, 1);
        var parts = g.Split(scaleShift, 1, 2);
        var h = RmsNorm(g, Conv(g, x, prefix + "block1_proj", 1), prefix + "block1_norm.g", dimOut);
        h = g.Add(g.Mul(h, g.Add(parts[0], g.FloatScalar(1f))), parts[1]);
        h = g.Silu(h);
        h = g.Silu(RmsNorm(g, Conv(g, h, prefix + "block2_proj", 1), prefix + "block2_norm.g", dimOut));
        var residual = Has(prefix + "res_conv.weight") ? Conv(g, x, prefix + "res_conv", 0) : x;
        return g.Add(h, residual);
    }

    /// <summary>pixel_unshuffle(2) then a 1×1 conv, as SpaceToDepth with the conv's input channels reordered to its layout.</summary>
    private string Downsample(OnnxGraphBuilder g, string x, string key, int channels)
    {
        string weight = Param(key + ".weight", "s2d", (v, s) =>
        {
            // pixel_unshuffle puts input (c, i, j) at channel c·4 + i·2 + j; SpaceToDepth at (i·2 + j)·C + c.
            long outputs = s[0];
            var result = new float[v.Length];
            for (long o = 0; o < outputs; o++)
            {
                for (int c = 0; c < channels; c++)
                {
                    for (int k = 0; k < 4; k++)
                    {
                        result[(o * 4 * channels) + (k * channels) + c] = v[(o * 4 * channels) + (c * 4) + k];
                    }
                }
            }

            return (result, s);
        });
        var unshuffled = g.Node("SpaceToDepth", new[] { x }, OnnxAttribute.Int("blocksize", 2));
        return g.Node("Conv", new[] { unshuffled, weight, Param(key + ".bias") });
    }

    private string Attention(OnnxGraphBuilder g, string x, string prefix, int dim, int height, int width, bool full)
    {
        int heads = options.AttentionHeads, dimHead = options.AttentionDimHead, hidden = heads * dimHead;
        long n = (long)height * width;
        float scale = (float)(1.0 / Math.Sqrt(dimHead));
        var rows = g.Reshape(RmsNorm(g, x, prefix + "norm.g", dim), -1, dim, n);
        string Projection(int part) => Param(prefix + "to_qkv.weight", $"part{part}", (v, _) => (v.Skip(part * hidden * dim).Take(hidden * dim).ToArray(), new long[] { hidden, dim }));
        var q = g.Reshape(g.MatMul(Projection(0), rows), -1, heads, dimHead, n); // b h d n
        var k = g.Reshape(g.MatMul(Projection(1), rows), -1, heads, dimHead, n);
        var v = g.Reshape(g.MatMul(Projection(2), rows), -1, heads, dimHead, n);
        var memoryShape = g.Concat(0, g.BatchSize(x), g.Int64Vector(heads, dimHead, MemorySlots));
        string Memory(int which, bool transpose) => g.Node("Expand", new[]
        {
            Param(prefix + "mem_kv", $"mem{which}", (values, s) =>
            {
                // Linear attention stores mem_kv as 2·heads·d·slots, full attention as 2·heads·slots·d: both become 1·heads·d·slots.
                int size = heads * dimHead * MemorySlots;
                var part = values.Skip(which * size).Take(size).ToArray();
                if (transpose)
                {
                    var swapped = new float[size];
                    for (int hd = 0; hd < heads; hd++)
                    {
                        for (int slot = 0; slot < MemorySlots; slot++)
                        {
                            for (int e = 0; e < dimHead; e++)
                            {
                                swapped[(hd * dimHead * MemorySlots) + (e * MemorySlots) + slot] = part[(hd * MemorySlots * dimHead) + (slot * dimHead) + e];
                            }
                        }
                    }

                    part = swapped;
                }

                return (part, new long[] { 1, heads, dimHead, MemorySlots });
            }),
            memoryShape,
        });

        if (!full)
        {
            q = g.Mul(g.Softmax(q, 2), g.FloatScalar(scale));
            var keys = g.Softmax(g.Concat(3, Memory(0, false), k), 3);
            var values = g.Concat(3, Memory(1, false), v);
            var context = g.MatMul(keys, g.Transpose(values, 0, 1, 3, 2)); // b h d e
            var attended = g.Reshape(g.MatMul(g.Transpose(context, 0, 1, 3, 2), q), -1, hidden, n); // b (h e) n
            var projected = g.Add(g.MatMul(Param(prefix + "to_out_conv.weight", "matrix", (w, _) => (w, new long[] { dim, hidden })), attended), Param(prefix + "to_out_conv.bias", "column", (b, _) => (b, new long[] { dim, 1 })));
            return RmsNorm(g, g.Reshape(projected, -1, dim, height, width), prefix + "to_out_norm.g", dim);
        }

        var keysT = g.Concat(3, Memory(0, true), k);   // b h d m
        var valuesT = g.Concat(3, Memory(1, true), v); // b h d m
        var weights = g.Softmax(g.Mul(g.MatMul(g.Transpose(q, 0, 1, 3, 2), keysT), g.FloatScalar(scale)), 3); // b h n m
        var output = g.MatMul(valuesT, g.Transpose(weights, 0, 1, 3, 2)); // b h d n
        return Conv(g, g.Reshape(output, -1, hidden, height, width), prefix + "to_out", 0);
    }
}
