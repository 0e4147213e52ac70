using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Export;

/// <summary>
/// A built-in denoiser written as ONNX nodes: its weights become initializers of the main graph (once, however often the
/// network is emitted), and <see cref="Emit"/> adds one forward pass — the same function as the module's
/// <c>forward</c>, operation for operation where ONNX has the operation.
/// </summary>
internal abstract class DenoiserGraph
{
    private readonly Dictionary<string, (float[] Values, long[] Shape)> weights;
    private readonly Dictionary<string, string> registered = new(StringComparer.Ordinal);

    protected DenoiserGraph(OnnxGraphBuilder root, Denoiser model, int height, int width)
    {
        Root = root;
        Height = height;
        Width = width;
        weights = ReadWeights(model);
    }

    public int Height { get; }

    public int Width { get; }

    protected OnnxGraphBuilder Root { get; }

    /// <summary>The graph of a built-in denoiser, or a <see cref="NotSupportedException"/> that names what is not supported.</summary>
    public static DenoiserGraph Create(OnnxGraphBuilder root, Denoiser model, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model switch
        {
            UNet unet => new UNetGraph(root, unet, height, width),
            DiT dit => new DiTGraph(root, dit, height, width),
            _ => throw new NotSupportedException(
                $"ONNX export supports the built-in networks ({UNetOptions.KindName}, {DiTOptions.KindName}); this model's network is '{model.Options.Kind}' ({model.GetType().FullName}), which has no ONNX writer."),
        };
    }

    /// <summary>Adds one forward pass; returns the name of the N×OutputChannels×H×W output.</summary>
    /// <param name="g">The graph to add the nodes to (the main graph or a Loop body).</param>
    /// <param name="x">x_t, N×C×H×W float.</param>
    /// <param name="t">The network's timesteps, N int64.</param>
    /// <param name="classes">Labels, N int64 (class-conditional networks), or null.</param>
    public abstract string Emit(OnnxGraphBuilder g, string x, string t, string? classes);

    protected bool Has(string key) => weights.ContainsKey(key);

    protected (float[] Values, long[] Shape) Get(string key) =>
        weights.TryGetValue(key, out var w) ? w : throw new InvalidOperationException($"ONNX export: the network has no weight '{key}'.");

    /// <summary>The initializer of a weight as it is stored, or transformed once (cached under <paramref name="variant"/>).</summary>
    protected string Param(string key, string variant = "", Func<float[], long[], (float[] Values, long[] Shape)>? transform = null)
    {
        string id = key + "#" + variant;
        if (!registered.TryGetValue(id, out var name))
        {
            var (values, shape) = Get(key);
            if (transform is not null)
            {
                (values, shape) = transform(values, shape);
            }

            name = Root.Weight(key.Replace('.', '_') + (variant.Length > 0 ? "_" + variant : string.Empty), values, shape);
            registered[id] = name;
        }

        return name;
    }

    /// <summary>A constant computed once (cached under <paramref name="id"/>).</summary>
    protected string Constant(string id, Func<(float[] Values, long[] Shape)> make)
    {
        if (!registered.TryGetValue("const#" + id, out var name))
        {
            var (values, shape) = make();
            name = Root.Weight(id, values, shape);
            registered["const#" + id] = name;
        }

        return name;
    }

    /// <summary>Conv2d with its bias (if any), stride 1 unless given, symmetric padding.</summary>
    protected string Conv(OnnxGraphBuilder g, string x, string key, int padding, int stride = 1)
    {
        var inputs = new List<string> { x, Param(key + ".weight") };
        if (Has(key + ".bias"))
        {
            inputs.Add(Param(key + ".bias"));
        }

        return g.Node("Conv", inputs.ToArray(), OnnxAttribute.Ints("pads", padding, padding, padding, padding), OnnxAttribute.Ints("strides", stride, stride));
    }

    /// <summary>nn.Linear on N×in rows: Gemm with the weight as stored (transB).</summary>
    protected string Linear(OnnxGraphBuilder g, string x, string key) =>
        g.Node("Gemm", new[] { x, Param(key + ".weight"), Param(key + ".bias") }, OnnxAttribute.Int("transB", 1));

    /// <summary>nn.Linear on N×T×in tokens: MatMul with the transposed weight, then the bias.</summary>
    protected string TokenLinear(OnnxGraphBuilder g, string x, string key, int rowStart = 0, int rowCount = -1)
    {
        var (_, shape) = Get(key + ".weight");
        int rows = rowCount < 0 ? (int)shape[0] : rowCount;
        string variant = $"t{rowStart}_{rows}";
        string weight = Param(key + ".weight", variant, (v, s) => (Transposed(v, (int)s[1], rowStart, rows), new long[] { s[1], rows }));
        string bias = Param(key + ".bias", variant, (v, _) => (v.Skip(rowStart).Take(rows).ToArray(), new long[] { rows }));
        return g.Add(g.MatMul(x, weight), bias);
    }

    /// <summary>The sinusoidal embedding of the timesteps, [sin(t·ω), cos(t·ω)], with ω computed by the same libtorch ops as the module.</summary>
    protected string TimeEmbedding(OnnxGraphBuilder g, string t, int dim)
    {
        string frequencies = Constant($"time_frequencies_{dim}", () => (Frequencies(dim), new long[] { 1, dim / 2 }));
        var args = g.Mul(g.Unsqueeze(g.Node("Cast", new[] { t }, OnnxAttribute.Int("to", (long)OnnxDataType.Float)), 1), frequencies);
        return g.Concat(1, g.Node("Sin", new[] { args }), g.Node("Cos", new[] { args }));
    }

    /// <summary>Rows of an embedding table.</summary>
    protected string Embedding(OnnxGraphBuilder g, string labels, string key) =>
        g.Node("Gather", new[] { Param(key), labels }, OnnxAttribute.Int("axis", 0));

    /// <summary>Rows [start, start + count) of a row-major matrix with <paramref name="columns"/> columns, transposed.</summary>
    protected static float[] Transposed(float[] values, int columns, int start, int count)
    {
        var result = new float[count * columns];
        for (int r = 0; r < count; r++)
        {
            for (int c = 0; c < columns; c++)
            {
                result[(c * count) + r] = values[((start + r) * columns) + c];
            }
        }

        return result;
    }

    private static float[] Frequencies(int dim)
    {
        // As SinusoidalPositionEmbedding computes them (θ = 10000), so that the bits are the module's.
        int half = dim / 2;
        double step = Math.Log(10000.0) / (half - 1);
        using var scope = NewDisposeScope();
        using Scalar count = half.ToScalar(), negativeStep = (-step).ToScalar();
        using var frequencies = exp(arange(count, dtype: float32) * negativeStep);
        return frequencies.data<float>().ToArray();
    }

    private static Dictionary<string, (float[] Values, long[] Shape)> ReadWeights(nn.Module model)
    {
        var result = new Dictionary<string, (float[] Values, long[] Shape)>(StringComparer.Ordinal);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (name, tensor) in model.state_dict())
        {
            var values = tensor.detach().to(float32).cpu().contiguous().data<float>().ToArray();
            result[name] = (values, tensor.shape.ToArray());
        }

        return result;
    }
}
