using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Numerics;
using System.Text;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>
/// Reads a state dict written by <c>torch.save</c> in the format PyTorch used before 1.6 (and still writes with
/// <c>_use_new_zipfile_serialization=False</c>), in which pytorch-fid's Inception weights were published. The file is
/// five things in a row: three small pickles (a magic number, the protocol version 1001, system information), the
/// pickled object whose tensors name their storages by persistent id, a pickled list of storage keys, then each storage
/// as an 8-byte element count and its little-endian bytes.
/// </summary>
/// <remarks>
/// The pickle machine here knows the opcodes of protocol 2 that such a file uses and nothing else; it builds
/// dictionaries, tuples, lists, strings, numbers and tensors, and calls no code: the only globals it accepts are
/// <c>collections.OrderedDict</c>, <c>torch._utils._rebuild_tensor(_v2)</c> and the <c>torch.*Storage</c> types.
/// </remarks>
internal static class LegacyTorchFile
{
    private static readonly BigInteger Magic = BigInteger.Parse("119547037146038801333356", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Whether the file starts as a zip archive (the format of PyTorch ≥ 1.6).</summary>
    public static bool IsZip(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> start = stackalloc byte[4];
        return stream.Read(start) == 4 && start[0] == 0x50 && start[1] == 0x4b && start[2] == 0x03 && start[3] == 0x04;
    }

    /// <summary>Reads the state dict: key → CPU tensor.</summary>
    public static Hashtable Read(string path)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream);
        if (stream.Length < 2 || reader.ReadByte() != 0x80 || reader.ReadByte() < 2)
        {
            throw new InvalidDataException($"'{path}' is not a torch.save file: neither a zip archive (PyTorch ≥ 1.6) nor a pickle (the legacy format).");
        }

        stream.Position = 0;
        object magic = new Machine(reader, path).Load();
        if (magic is not BigInteger m || m != Magic)
        {
            throw new InvalidDataException($"'{path}' is neither a zip archive nor a legacy torch.save file (its first pickle is not PyTorch's magic number).");
        }

        if (new Machine(reader, path).Load() is not long version || version != 1001)
        {
            throw new InvalidDataException($"'{path}' is a legacy torch.save file of an unknown protocol version.");
        }

        _ = new Machine(reader, path).Load(); // system information (byte order, type sizes): little-endian is assumed below
        var machine = new Machine(reader, path);
        object root = machine.Load();
        if (new Machine(reader, path).Load() is not List<object> keys)
        {
            throw new InvalidDataException($"'{path}': the list of storage keys is missing.");
        }

        foreach (string key in keys.Cast<string>())
        {
            if (!machine.Storages.TryGetValue(key, out var storage))
            {
                throw new InvalidDataException($"'{path}': storage '{key}' is listed but not used.");
            }

            long count = reader.ReadInt64();
            int size = ElementSize(storage.Type);
            if (count < 0 || count * size > stream.Length - stream.Position)
            {
                throw new InvalidDataException($"'{path}': storage '{key}' claims {count} elements, more than the file holds (a damaged or truncated file).");
            }

            storage.Bytes = reader.ReadBytes(checked((int)(count * size)));
            storage.Count = count;
        }

        if (root is not Dictionary<object, object> dictionary)
        {
            throw new InvalidDataException($"'{path}' does not hold a dictionary (a state dict).");
        }

        var result = new Hashtable();
        foreach (var (key, value) in dictionary)
        {
            if (key is string name && value is PendingTensor pending)
            {
                result[name] = pending.Build(path, name);
            }
        }

        return result;
    }

    private static int ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    private static ScalarType StorageType(string name, string path) => name switch
    {
        "FloatStorage" => ScalarType.Float32,
        "DoubleStorage" => ScalarType.Float64,
        "HalfStorage" => ScalarType.Float16,
        "BFloat16Storage" => ScalarType.BFloat16,
        "LongStorage" => ScalarType.Int64,
        "IntStorage" => ScalarType.Int32,
        "ShortStorage" => ScalarType.Int16,
        "CharStorage" => ScalarType.Int8,
        "ByteStorage" => ScalarType.Byte,
        "BoolStorage" => ScalarType.Bool,
        _ => throw new InvalidDataException($"'{path}': storage type torch.{name} is not supported."),
    };

    private sealed class Storage
    {
        public ScalarType Type { get; init; }

        public byte[]? Bytes { get; set; }

        public long Count { get; set; }
    }

    private sealed record PendingTensor(Storage Storage, long Offset, long[] Shape, long[] Stride)
    {
        public Tensor Build(string path, string key)
        {
            if (Storage.Bytes is null)
            {
                throw new InvalidDataException($"'{path}': the data of '{key}' is missing (a truncated file).");
            }

            long last = Offset + Shape.Zip(Stride, (n, s) => n == 0 ? 0 : (n - 1) * s).Sum();
            if (Offset < 0 || (Shape.All(n => n > 0) && last >= Storage.Count))
            {
                throw new InvalidDataException($"'{path}': '{key}' reaches past its storage (a damaged file).");
            }

            using var scope = NewDisposeScope();
            var flat = empty(new[] { Storage.Count }, Storage.Type, device: CPU);
            flat.bytes = Storage.Bytes;
            return flat.as_strided(Shape, Stride, Offset).contiguous().MoveToOuterDisposeScope();
        }
    }

    private sealed record Global(string Module, string Name);

    private sealed class Machine
    {
        private static readonly object MarkObject = new();
        private readonly BinaryReader reader;
        private readonly string path;
        private readonly List<object?> stack = new();
        private readonly Dictionary<long, object?> memo = new();

        public Machine(BinaryReader reader, string path)
        {
            this.reader = reader;
            this.path = path;
        }

        public Dictionary<string, Storage> Storages { get; } = new(StringComparer.Ordinal);

        public object Load()
        {
            while (true)
            {
                byte op = reader.ReadByte();
                switch (op)
                {
                    case 0x80: reader.ReadByte(); break; // PROTO
                    case (byte)'.': return Pop() ?? throw Bad("an empty pickle");
                    case (byte)'(': stack.Add(MarkObject); break;
                    case (byte)'N': stack.Add(null); break;
                    case 0x88: stack.Add(true); break;
                    case 0x89: stack.Add(false); break;
                    case (byte)'K': stack.Add((long)reader.ReadByte()); break;
                    case (byte)'M': stack.Add((long)reader.ReadUInt16()); break;
                    case (byte)'J': stack.Add((long)reader.ReadInt32()); break;
                    case 0x8a: stack.Add(Long(reader.ReadBytes(reader.ReadByte()))); break; // LONG1
                    case (byte)'G': stack.Add(BitConverter.ToDouble(BigEndian(reader.ReadBytes(8)))); break;
                    case (byte)'X': stack.Add(Encoding.UTF8.GetString(reader.ReadBytes(reader.ReadInt32()))); break;
                    case (byte)'U': stack.Add(Encoding.Latin1.GetString(reader.ReadBytes(reader.ReadByte()))); break;
                    case (byte)'T': stack.Add(Encoding.Latin1.GetString(reader.ReadBytes(reader.ReadInt32()))); break;
                    case (byte)'}': stack.Add(new Dictionary<object, object>()); break;
                    case (byte)']': stack.Add(new List<object>()); break;
                    case (byte)')': stack.Add(Array.Empty<object?>()); break;
                    case (byte)'t': stack.Add(PopMark().ToArray()); break;
                    case 0x85: stack.Add(new[] { Pop() }); break;
                    case 0x86: { var b = Pop(); var a = Pop(); stack.Add(new[] { a, b }); break; }
                    case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); stack.Add(new[] { a, b, c }); break; }
                    case (byte)'l': stack.Add(PopMark().Select(Key).ToList()); break;
                    case (byte)'d': stack.Add(ToDictionary(PopMark(), new Dictionary<object, object>())); break;
                    case (byte)'q': memo[reader.ReadByte()] = Top(); break;
                    case (byte)'r': memo[reader.ReadUInt32()] = Top(); break;
                    case (byte)'h': stack.Add(Memo(reader.ReadByte())); break;
                    case (byte)'j': stack.Add(Memo(reader.ReadUInt32())); break;
                    case (byte)'c': stack.Add(new Global(ReadLine(), ReadLine())); break;
                    case (byte)'s': { var v = Pop(); var k = Pop(); Dictionary(Top())[Key(k)] = Key(v); break; }
                    case (byte)'u': { var items = PopMark(); ToDictionary(items, Dictionary(Top())); break; }
                    case (byte)'a': { var v = Pop(); List(Top()).Add(Key(v)); break; }
                    case (byte)'e': { var items = PopMark(); List(Top()).AddRange(items.Select(Key)); break; }
                    case (byte)'b': Pop(); break; // BUILD: the state dict's _metadata (versions), not needed
                    case (byte)'R': { var args = Pop() as object?[] ?? throw Bad("REDUCE without an argument tuple"); stack.Add(Reduce(Pop(), args)); break; }
                    case 0x81: { var args = Pop() as object?[] ?? throw Bad("NEWOBJ without an argument tuple"); stack.Add(Reduce(Pop(), args)); break; }
                    case (byte)'Q': stack.Add(Persistent(Pop())); break;
                    default: throw Bad($"pickle opcode 0x{op:x2}, which a torch.save state dict does not use");
                }
            }
        }

        private static object Key(object? value) => value ?? DBNull.Value;

        private static BigInteger Long(byte[] bytes) => new(bytes, isUnsigned: false, isBigEndian: false);

        private static byte[] BigEndian(byte[] bytes)
        {
            if (BitConverter.IsLittleEndian)
            {
                Array.Reverse(bytes);
            }

            return bytes;
        }

        private Dictionary<object, object> ToDictionary(List<object?> items, Dictionary<object, object> target)
        {
            if (items.Count % 2 != 0)
            {
                throw Bad("a dictionary with an odd number of items");
            }

            for (int i = 0; i < items.Count; i += 2)
            {
                target[Key(items[i])] = Key(items[i + 1]);
            }

            return target;
        }

        private object Reduce(object? callable, object?[] args)
        {
            if (callable is not Global g)
            {
                throw Bad("a call of something that is not a global");
            }

            switch ($"{g.Module}.{g.Name}")
            {
                case "collections.OrderedDict":
                    return new Dictionary<object, object>();
                case "torch._utils._rebuild_tensor_v2":
                case "torch._utils._rebuild_tensor":
                    if (args.Length < 4 || args[0] is not Storage storage)
                    {
                        throw Bad("a tensor without its storage");
                    }

                    return new PendingTensor(storage, Integer(args[1]), Longs(args[2]), Longs(args[3]));
                default:
                    throw Bad($"the global {g.Module}.{g.Name}, which a state dict does not use (only tensors and dictionaries are read)");
            }
        }

        private Storage Persistent(object? pid)
        {
            if (pid is not object?[] { Length: >= 5 } tuple || tuple[0] as string != "storage" || tuple[1] is not Global type || tuple[2] is not string key)
            {
                throw Bad("a persistent id that is not a storage");
            }

            if (!Storages.TryGetValue(key, out var storage))
            {
                storage = new Storage { Type = StorageType(type.Name, path) };
                Storages[key] = storage;
            }

            return storage;
        }

        private long Integer(object? value) => value switch
        {
            long l => l,
            BigInteger b => (long)b,
            _ => throw Bad("a tensor dimension that is not an integer"),
        };

        private long[] Longs(object? value) => value is object?[] items ? items.Select(Integer).ToArray() : throw Bad("a tensor shape that is not a tuple");

        private string ReadLine()
        {
            var bytes = new List<byte>();
            byte b;
            while ((b = reader.ReadByte()) != (byte)'\n')
            {
                bytes.Add(b);
            }

            return Encoding.ASCII.GetString(bytes.ToArray());
        }

        private object? Memo(long index) => memo.TryGetValue(index, out var value) ? value : throw Bad($"memo entry {index} used before it was stored");

        private object? Top() => stack.Count > 0 ? stack[^1] : throw Bad("an empty stack");

        private object? Pop()
        {
            var value = Top();
            stack.RemoveAt(stack.Count - 1);
            return value;
        }

        private List<object?> PopMark()
        {
            int mark = stack.LastIndexOf(MarkObject);
            if (mark < 0)
            {
                throw Bad("no MARK");
            }

            var items = stack.GetRange(mark + 1, stack.Count - mark - 1);
            stack.RemoveRange(mark, stack.Count - mark);
            return items;
        }

        private Dictionary<object, object> Dictionary(object? value) => value as Dictionary<object, object> ?? throw Bad("SETITEM on something that is not a dictionary");

        private List<object> List(object? value) => value as List<object> ?? throw Bad("APPEND on something that is not a list");

        private InvalidDataException Bad(string what) => new($"'{path}' could not be read as a legacy torch.save file: {what}.");
    }
}
