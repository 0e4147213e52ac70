using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Export;

/// <summary>
/// <see cref="DiT"/> in ONNX: patchify (a strided Conv) plus the 2-D sine-cosine position table (computed by the module
/// itself for the exported image size), the conditioning MLP (+ class embedding), adaLN-Zero blocks (LayerNormalization
/// without gain, modulation, multi-head attention, tanh-GELU MLP, gates), the final adaptive layer and unpatchify.
/// </summary>
internal sealed class DiTGraph : DenoiserGraph
{
    private readonly DiT dit;
    private readonly DiTOptions options;

    public DiTGraph(OnnxGraphBuilder root, DiT dit, int height, int width)
        : base(root, dit, height, width)
    {
        this.dit = dit;
        options = dit.Shape;
    }

    public override string Emit(OnnxGraphBuilder g, string x, string t, string? classes)
    {
        int p = options.PatchSize, hidden = options.HiddenSize, outputs = dit.OutputChannels;
        int rows = Height / p, columns = Width / p, tokens = rows * columns;
        var patches = Conv(g, x, "patch_embedding.proj", 0, stride: p); // N D rows columns
        var h = g.Transpose(g.Reshape(patches, -1, hidden, tokens), 0, 2, 1);
        h = g.Add(h, Constant("position_table", () => (PositionTable(rows, columns), new long[] { tokens, hidden })));

        var c = Linear(g, g.Silu(Linear(g, TimeEmbedding(g, t, DiT.TimeFrequencySize), "time_mlp_in")), "time_mlp_out");
        if (options.ClassCount > 0)
        {
            c = g.Add(c, Embedding(g, classes ?? throw new InvalidOperationException("A class-conditional DiT needs labels."), "class_embedding.weight"));
        }

        var conditioning = g.Silu(c);
        for (int i = 0; i < options.Depth; i++)
        {
            string prefix = $"blocks.{i}.";
            var m = g.Split(g.Reshape(Linear(g, conditioning, prefix + "modulation"), -1, 6, hidden), 1, 6); // each N×1×D
            var attended = Attention(g, Modulate(g, h, m[0], m[1]), prefix + "attention.", tokens);
            h = g.Add(h, g.Mul(m[2], attended));
            var mlp = TokenLinear(g, g.GeluTanh(TokenLinear(g, Modulate(g, h, m[3], m[4]), prefix + "mlp_in")), prefix + "mlp_out");
            h = g.Add(h, g.Mul(m[5], mlp));
        }

        var final = g.Split(g.Reshape(Linear(g, conditioning, "final_layer.modulation"), -1, 2, hidden), 1, 2);
        var decoded = TokenLinear(g, Modulate(g, h, final[0], final[1]), "final_layer.linear"); // N T p·p·C_out
        var unpatched = g.Transpose(g.Reshape(decoded, -1, rows, columns, p, p, outputs), 0, 5, 1, 3, 2, 4);
        return g.Reshape(unpatched, -1, outputs, Height, Width);
    }

    /// <summary>LayerNorm without gain and bias (ε = 10⁻⁶), then ·(1 + scale) + shift.</summary>
    private string Modulate(OnnxGraphBuilder g, string x, string shift, string scale)
    {
        int hidden = options.HiddenSize;
        string ones = Constant("layer_norm_ones", () => (Enumerable.Repeat(1f, hidden).ToArray(), new long[] { hidden }));
        string zeros = Constant("layer_norm_zeros", () => (new float[hidden], new long[] { hidden }));
        var normalized = g.Node("LayerNormalization", new[] { x, ones, zeros }, OnnxAttribute.Int("axis", -1), OnnxAttribute.Float("epsilon", 1e-6f));
        return g.Add(g.Mul(normalized, g.Add(scale, g.FloatScalar(1f))), shift);
    }

    private string Attention(OnnxGraphBuilder g, string x, string prefix, int tokens)
    {
        int hidden = options.HiddenSize, heads = options.Heads, size = hidden / heads;
        string Part(int part, params long[] perm) =>
            g.Transpose(g.Reshape(TokenLinear(g, x, prefix + "qkv", part * hidden, hidden), -1, tokens, heads, size), perm);
        var q = Part(0, 0, 2, 1, 3);  // N h T d
        var kT = Part(1, 0, 2, 3, 1); // N h d T
        var v = Part(2, 0, 2, 1, 3);  // N h T d
        var weights = g.Softmax(g.Mul(g.MatMul(q, kT), g.FloatScalar((float)(1.0 / Math.Sqrt(size)))), 3);
        var attended = g.Reshape(g.Transpose(g.MatMul(weights, v), 0, 2, 1, 3), -1, tokens, hidden);
        return TokenLinear(g, attended, prefix + "proj");
    }

    private float[] PositionTable(int rows, int columns)
    {
        var embedding = dit.named_modules().First(m => m.name == "patch_embedding").module as PatchEmbedding
            ?? throw new InvalidOperationException("ONNX export: the DiT has no patch embedding module.");
        using var scope = NewDisposeScope();
        using var table = embedding.Table(rows, columns, ScalarType.Float32, CPU);
        return table.contiguous().data<float>().ToArray();
    }
}
