using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Microsoft.ML.Diffusion.Export;

/// <summary>
/// The protobuf wire format (varints, length-delimited fields, fixed 32-bit floats), writing only: what the few ONNX
/// messages of <see cref="OnnxModelProto"/> need. Field numbers are those of onnx/onnx.proto (IR version 8).
/// </summary>
internal sealed class ProtoWriter
{
    private readonly MemoryStream stream = new();

    public void Varint(int field, long value)
    {
        Tag(field, 0);
        RawVarint(unchecked((ulong)value));
    }

    public void Float(int field, float value)
    {
        Tag(field, 5);
        Span<byte> bytes = stackalloc byte[4];
        BitConverter.TryWriteBytes(bytes, value);
        if (!BitConverter.IsLittleEndian)
        {
            bytes.Reverse();
        }

        stream.Write(bytes);
    }

    public void Bytes(int field, ReadOnlySpan<byte> value)
    {
        Tag(field, 2);
        RawVarint((ulong)value.Length);
        stream.Write(value);
    }

    public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public void Message(int field, ProtoWriter message) => Bytes(field, message.stream.GetBuffer().AsSpan(0, (int)message.stream.Length));

    public void PackedVarints(int field, IReadOnlyList<long> values)
    {
        var packed = new ProtoWriter();
        foreach (long v in values)
        {
            packed.RawVarint(unchecked((ulong)v));
        }

        Message(field, packed);
    }

    public void PackedFloats(int field, IReadOnlyList<float> values)
    {
        var bytes = new byte[values.Count * 4];
        for (int i = 0; i < values.Count; i++)
        {
            BitConverter.TryWriteBytes(bytes.AsSpan(i * 4), values[i]);
        }

        Bytes(field, bytes);
    }

    public void WriteTo(Stream destination) => destination.Write(stream.GetBuffer(), 0, (int)stream.Length);

    private void Tag(int field, int wireType) => RawVarint((ulong)((field << 3) | wireType));

    private void RawVarint(ulong value)
    {
        while (value >= 0x80)
        {
            stream.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }

        stream.WriteByte((byte)value);
    }
}

/// <summary>ONNX's TensorProto.DataType values used here.</summary>
internal enum OnnxDataType
{
    Float = 1,
    UInt8 = 2,
    Int64 = 7,
    Bool = 9,
}

/// <summary>An attribute of a node (AttributeProto): one int, float, string, list or subgraph.</summary>
internal sealed class OnnxAttribute
{
    private OnnxAttribute(string name) => Name = name;

    public string Name { get; }

    private int Type { get; init; }

    private long IntValue { get; init; }

    private float FloatValue { get; init; }

    private string? StringValue { get; init; }

    private IReadOnlyList<long>? IntsValue { get; init; }

    private OnnxGraphProto? GraphValue { get; init; }

    public static OnnxAttribute Int(string name, long value) => new(name) { Type = 2, IntValue = value };

    public static OnnxAttribute Float(string name, float value) => new(name) { Type = 1, FloatValue = value };

    public static OnnxAttribute Text(string name, string value) => new(name) { Type = 3, StringValue = value };

    public static OnnxAttribute Ints(string name, params long[] value) => new(name) { Type = 7, IntsValue = value };

    public static OnnxAttribute Graph(string name, OnnxGraphProto value) => new(name) { Type = 5, GraphValue = value };

    public ProtoWriter Serialize()
    {
        var w = new ProtoWriter();
        w.String(1, Name);
        switch (Type)
        {
            case 1: w.Float(2, FloatValue); break;
            case 2: w.Varint(3, IntValue); break;
            case 3: w.String(4, StringValue!); break;
            case 5: w.Message(6, GraphValue!.Serialize()); break;
            default:
                foreach (long v in IntsValue!)
                {
                    w.Varint(8, v);
                }

                break;
        }

        w.Varint(20, Type);
        return w;
    }
}

/// <summary>A node (NodeProto) of the default ONNX domain.</summary>
internal sealed record OnnxNode(string OpType, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs, string Name, IReadOnlyList<OnnxAttribute> Attributes)
{
    public ProtoWriter Serialize()
    {
        var w = new ProtoWriter();
        foreach (string input in Inputs)
        {
            w.String(1, input);
        }

        foreach (string output in Outputs)
        {
            w.String(2, output);
        }

        w.String(3, Name);
        w.String(4, OpType);
        foreach (var attribute in Attributes)
        {
            w.Message(5, attribute.Serialize());
        }

        return w;
    }
}

/// <summary>A constant tensor (TensorProto) with its values in raw_data, little-endian.</summary>
internal sealed record OnnxTensor(string Name, OnnxDataType DataType, IReadOnlyList<long> Dims, byte[] RawData)
{
    public static OnnxTensor FromFloats(string name, long[] dims, float[] values)
    {
        var raw = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, raw, 0, raw.Length);
        return new OnnxTensor(name, OnnxDataType.Float, dims, raw);
    }

    public static OnnxTensor FromInt64s(string name, long[] dims, long[] values)
    {
        var raw = new byte[values.Length * 8];
        Buffer.BlockCopy(values, 0, raw, 0, raw.Length);
        return new OnnxTensor(name, OnnxDataType.Int64, dims, raw);
    }

    public ProtoWriter Serialize()
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("ONNX export writes raw little-endian tensors; this machine is big-endian.");
        }

        var w = new ProtoWriter();
        foreach (long d in Dims)
        {
            w.Varint(1, d);
        }

        w.Varint(2, (int)DataType);
        w.String(8, Name);
        w.Bytes(9, RawData);
        return w;
    }
}

/// <summary>A graph input or output (ValueInfoProto) of tensor type; a null dimension is symbolic, named by <see cref="OnnxValueInfo.BatchName"/>.</summary>
internal sealed record OnnxValueInfo(string Name, OnnxDataType ElementType, IReadOnlyList<long?>? Dims)
{
    public const string BatchName = "N";

    public ProtoWriter Serialize()
    {
        var tensorType = new ProtoWriter();
        tensorType.Varint(1, (int)ElementType);
        if (Dims is not null)
        {
            var shape = new ProtoWriter();
            foreach (long? d in Dims)
            {
                var dimension = new ProtoWriter();
                if (d is long value)
                {
                    dimension.Varint(1, value);
                }
                else
                {
                    dimension.String(2, BatchName);
                }

                shape.Message(1, dimension);
            }

            tensorType.Message(2, shape);
        }

        var type = new ProtoWriter();
        type.Message(1, tensorType);
        var w = new ProtoWriter();
        w.String(1, Name);
        w.Message(2, type);
        return w;
    }
}

/// <summary>A graph (GraphProto): nodes in topological order, initializers, inputs and outputs.</summary>
internal sealed class OnnxGraphProto
{
    public string Name { get; init; } = "graph";

    public List<OnnxNode> Nodes { get; } = new();

    public List<OnnxTensor> Initializers { get; } = new();

    public List<OnnxValueInfo> Inputs { get; } = new();

    public List<OnnxValueInfo> Outputs { get; } = new();

    public ProtoWriter Serialize()
    {
        var w = new ProtoWriter();
        foreach (var node in Nodes)
        {
            w.Message(1, node.Serialize());
        }

        w.String(2, Name);
        foreach (var tensor in Initializers)
        {
            w.Message(5, tensor.Serialize());
        }

        foreach (var input in Inputs)
        {
            w.Message(11, input.Serialize());
        }

        foreach (var output in Outputs)
        {
            w.Message(12, output.Serialize());
        }

        return w;
    }
}

/// <summary>A model (ModelProto): IR version, one opset of the default domain, producer, graph and metadata.</summary>
internal sealed class OnnxModelProto
{
    /// <summary>The IR version that goes with <see cref="Opset"/> 18.</summary>
    public const long IrVersion = 8;

    /// <summary>The opset of the default domain the graphs are written in.</summary>
    public const long Opset = 18;

    public required OnnxGraphProto Graph { get; init; }

    public IReadOnlyList<KeyValuePair<string, string>> Metadata { get; init; } = Array.Empty<KeyValuePair<string, string>>();

    public string DocString { get; init; } = string.Empty;

    public void WriteTo(Stream destination)
    {
        var w = new ProtoWriter();
        w.Varint(1, IrVersion);
        w.String(2, "Microsoft.ML.Diffusion");
        w.String(3, typeof(OnnxModelProto).Assembly.GetName().Version?.ToString() ?? "0");
        w.String(4, "microsoft.ml.diffusion");
        w.Varint(5, 1);
        if (DocString.Length > 0)
        {
            w.String(6, DocString);
        }

        w.Message(7, Graph.Serialize());
        var opset = new ProtoWriter();
        opset.String(1, string.Empty);
        opset.Varint(2, Opset);
        w.Message(8, opset);
        foreach (var (key, value) in Metadata)
        {
            var entry = new ProtoWriter();
            entry.String(1, key);
            entry.String(2, value);
            w.Message(14, entry);
        }

        w.WriteTo(destination);
    }
}
