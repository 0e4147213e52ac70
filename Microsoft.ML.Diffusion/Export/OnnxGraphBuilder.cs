using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Microsoft.ML.Diffusion.Export;

/// <summary>
/// Builds one ONNX graph (the main graph, or a Loop body that shares the main graph's initializers and name counter):
/// each helper adds one node and returns the name of its output. Constants become initializers of the main graph.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    private readonly OnnxGraphBuilder? root;
    private readonly Dictionary<string, string> int64Constants;
    private readonly Dictionary<string, string> floatConstants;
    private int counter;

    public OnnxGraphBuilder(string name)
    {
        Graph = new OnnxGraphProto { Name = name };
        int64Constants = new Dictionary<string, string>(StringComparer.Ordinal);
        floatConstants = new Dictionary<string, string>(StringComparer.Ordinal);
    }

    private OnnxGraphBuilder(OnnxGraphBuilder root, string name)
    {
        this.root = root;
        Graph = new OnnxGraphProto { Name = name };
        int64Constants = root.int64Constants;
        floatConstants = root.floatConstants;
    }

    public OnnxGraphProto Graph { get; }

    private OnnxGraphBuilder Root => root ?? this;

    /// <summary>A subgraph (for Loop) whose nodes may read every value of this graph's main graph.</summary>
    public OnnxGraphBuilder Subgraph(string name) => new(Root, name);

    public string Unique(string hint) => string.Create(CultureInfo.InvariantCulture, $"{hint}_{Root.counter++}");

    public void Input(string name, OnnxDataType type, params long?[] dims) => Graph.Inputs.Add(new OnnxValueInfo(name, type, dims));

    public void Output(string name, OnnxDataType type, params long?[] dims) => Graph.Outputs.Add(new OnnxValueInfo(name, type, dims));

    /// <summary>A float initializer of the main graph.</summary>
    public string Weight(string hint, float[] values, params long[] dims)
    {
        if (values.Length != dims.Aggregate(1L, (a, b) => a * b))
        {
            throw new ArgumentException($"Initializer {hint}: {values.Length} values for shape [{string.Join(", ", dims)}].", nameof(values));
        }

        string name = Unique(hint);
        Root.Graph.Initializers.Add(OnnxTensor.FromFloats(name, dims, values));
        return name;
    }

    /// <summary>An int64 initializer (shared between equal values).</summary>
    public string Int64s(long[] values, params long[] dims)
    {
        string key = string.Join(",", dims) + ":" + string.Join(",", values);
        if (!int64Constants.TryGetValue(key, out var name))
        {
            name = Unique("const_i64");
            Root.Graph.Initializers.Add(OnnxTensor.FromInt64s(name, dims, values));
            int64Constants[key] = name;
        }

        return name;
    }

    /// <summary>A 1-D int64 initializer.</summary>
    public string Int64Vector(params long[] values) => Int64s(values, values.Length);

    /// <summary>A scalar int64 initializer.</summary>
    public string Int64Scalar(long value) => Int64s(new[] { value });

    /// <summary>A scalar float initializer (shared between equal values, compared bit for bit).</summary>
    public string FloatScalar(float value)
    {
        string key = BitConverter.SingleToInt32Bits(value).ToString(CultureInfo.InvariantCulture);
        if (!floatConstants.TryGetValue(key, out var name))
        {
            name = Unique("const_f");
            Root.Graph.Initializers.Add(OnnxTensor.FromFloats(name, Array.Empty<long>(), new[] { value }));
            floatConstants[key] = name;
        }

        return name;
    }

    public string[] Node(string op, string[] inputs, int outputs, params OnnxAttribute[] attributes)
    {
        var names = Enumerable.Range(0, outputs).Select(_ => Unique(op.ToLowerInvariant())).ToArray();
        Graph.Nodes.Add(new OnnxNode(op, inputs, names, Unique("n_" + op), attributes));
        return names;
    }

    public string Node(string op, string[] inputs, params OnnxAttribute[] attributes) => Node(op, inputs, 1, attributes)[0];

    /// <summary>A 1-D float initializer.</summary>
    public string Constant1D(params float[] values)
    {
        string name = Unique("const_fv");
        Root.Graph.Initializers.Add(OnnxTensor.FromFloats(name, new long[] { values.Length }, values));
        return name;
    }

    /// <summary>A node whose output has a fixed name (a graph output or a Loop body output).</summary>
    public void NodeTo(string output, string op, string[] inputs, params OnnxAttribute[] attributes) =>
        Graph.Nodes.Add(new OnnxNode(op, inputs, new[] { output }, Unique("n_" + op), attributes));

    public string Add(string a, string b) => Node("Add", new[] { a, b });

    public string Sub(string a, string b) => Node("Sub", new[] { a, b });

    public string Mul(string a, string b) => Node("Mul", new[] { a, b });

    public string Div(string a, string b) => Node("Div", new[] { a, b });

    public string MatMul(string a, string b) => Node("MatMul", new[] { a, b });

    public string Sigmoid(string x) => Node("Sigmoid", new[] { x });

    /// <summary>x·σ(x).</summary>
    public string Silu(string x) => Mul(x, Sigmoid(x));

    /// <summary>GELU with the error function, 0.5·x·(1 + erf(x/√2)), as libtorch's default.</summary>
    public string GeluErf(string x)
    {
        var scaled = Mul(x, FloatScalar((float)(1.0 / Math.Sqrt(2.0))));
        var inner = Add(Node("Erf", new[] { scaled }), FloatScalar(1f));
        return Mul(Mul(x, FloatScalar(0.5f)), inner);
    }

    /// <summary>GELU with the tanh approximation, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    public string GeluTanh(string x)
    {
        var cube = Mul(Mul(x, x), x);
        var inner = Mul(Add(x, Mul(cube, FloatScalar(0.044715f))), FloatScalar((float)Math.Sqrt(2.0 / Math.PI)));
        var gate = Add(Node("Tanh", new[] { inner }), FloatScalar(1f));
        return Mul(Mul(x, FloatScalar(0.5f)), gate);
    }

    public string Reshape(string x, params long[] shape) => Node("Reshape", new[] { x, Int64Vector(shape) });

    public string Transpose(string x, params long[] perm) => Node("Transpose", new[] { x }, OnnxAttribute.Ints("perm", perm));

    public string Unsqueeze(string x, params long[] axes) => Node("Unsqueeze", new[] { x, Int64Vector(axes) });

    public string Concat(long axis, params string[] inputs) => Node("Concat", inputs, OnnxAttribute.Int("axis", axis));

    public string Softmax(string x, long axis) => Node("Softmax", new[] { x }, OnnxAttribute.Int("axis", axis));

    /// <summary>Equal parts along an axis.</summary>
    public string[] Split(string x, long axis, int parts) =>
        Node("Split", new[] { x }, parts, OnnxAttribute.Int("axis", axis), OnnxAttribute.Int("num_outputs", parts));

    /// <summary>x[..., start:end, ...] along one axis.</summary>
    public string Slice(string x, long axis, long start, long end) =>
        Node("Slice", new[] { x, Int64Vector(start), Int64Vector(end), Int64Vector(axis) });

    /// <summary>The first dimension of x, as a 1-element int64 vector.</summary>
    public string BatchSize(string x) => Node("Shape", new[] { x }, OnnxAttribute.Int("start", 0), OnnxAttribute.Int("end", 1));
}
