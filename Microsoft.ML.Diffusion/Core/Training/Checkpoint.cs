using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.ML.Diffusion.Core.IO;
using Microsoft.ML.Diffusion.Core.Networks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>
/// Training checkpoints: everything needed to continue a run bit-exactly on the CPU — step, network weights, EMA,
/// optimizer state, the random generators' states, the data order and its position — written atomically (a temporary
/// file flushed to the disk, then renamed into place, then the folder flushed), the last few kept.
/// </summary>
/// <remarks>
/// <para>Layout: the magic "MLDCKPT1"; int32 format version; int32 step; string fingerprint (the configuration and the
/// training settings that must not change across a resume); int64 EMA updates; the noise, data-order and global
/// generator states; the data permutation and cursor; the network's weights (TorchSharp format); the EMA tensors; the
/// optimizer state; the magic "MLDCKEND"; and (format 2) the SHA-256 of every byte before it.</para>
/// <para>Reading checks the SHA-256 before it parses anything, so a damaged file is refused with an
/// <see cref="InvalidDataException"/> naming it and never restores part of a run; every length in the file is checked
/// against the bytes that are left and against the live run before anything is allocated. A checkpoint written by a run
/// with other settings is refused with an <see cref="InvalidOperationException"/>. Format 1 (no hash) is still read.</para>
/// </remarks>
internal static class Checkpoint
{
    public const string Extension = ".ckpt";
    private const string Magic = "MLDCKPT1";
    private const string Trailer = "MLDCKEND";
    private const int Version = 2;
    private const int HashBytes = 32;
    private const string TemporarySuffix = ".tmp";

    /// <summary>Test hook: runs after the temporary file is written and before it is renamed (simulates a crash there).</summary>
    internal static Action<string>? BeforeRename { get; set; }

    public static string PathFor(string directory, int step) =>
        Path.Combine(directory, string.Format(CultureInfo.InvariantCulture, "checkpoint-{0:D8}{1}", step, Extension));

    /// <summary>The newest complete checkpoint in the folder (temporary files are ignored), or null.</summary>
    public static string? FindLatest(string directory) =>
        Directory.Exists(directory)
            ? Directory.GetFiles(directory, "checkpoint-*" + Extension).Where(f => f.EndsWith(Extension, StringComparison.Ordinal)).OrderBy(f => f, StringComparer.Ordinal).LastOrDefault()
            : null;

    public static void Write(string directory, TrainingState state, int keep)
    {
        Directory.CreateDirectory(directory);
        string path = PathFor(directory, state.Step);
        string temp = path + TemporarySuffix;
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            using (var hashing = new HashingStream(file))
            using (var writer = new BinaryWriter(hashing, System.Text.Encoding.UTF8, leaveOpen: true))
            {
                writer.Write(System.Text.Encoding.ASCII.GetBytes(Magic));
                writer.Write(Version);
                writer.Write(state.Step);
                writer.Write(state.Fingerprint);
                writer.Write(state.Ema?.Updates ?? 0);
                WriteBytes(writer, state.NoiseGenerator.get_state());
                WriteBytes(writer, state.OrderGenerator.get_state());
                WriteBytes(writer, torch.get_rng_state());
                writer.Write(state.Cursor);
                long[] order = state.Order.data<long>().ToArray();
                writer.Write(order.Length);
                foreach (long v in order)
                {
                    writer.Write(v);
                }

                state.Network.save(writer);
                writer.Write(state.Ema?.Shadow.Count ?? 0);
                if (state.Ema is not null)
                {
                    foreach (var t in state.Ema.Shadow)
                    {
                        t.Save(writer);
                    }
                }

                state.Optimizer.Save(writer);
                writer.Write(System.Text.Encoding.ASCII.GetBytes(Trailer));
                writer.Flush();
                file.Write(hashing.Hash());
            }

            file.Flush(flushToDisk: true);
        }

        BeforeRename?.Invoke(temp);
        AtomicFile.Replace(temp, path);
        foreach (string old in Directory.GetFiles(directory, "checkpoint-*" + Extension).Where(f => f.EndsWith(Extension, StringComparison.Ordinal)).OrderBy(f => f, StringComparer.Ordinal).SkipLast(Math.Max(1, keep)))
        {
            File.Delete(old);
        }

        // Temporary files left by a run that was killed while writing: never read, so only clutter.
        foreach (string stale in Directory.GetFiles(directory, "checkpoint-*" + Extension + TemporarySuffix))
        {
            File.Delete(stale);
        }
    }

    /// <summary>Checks that a checkpoint is complete and undamaged (its magic, format and SHA-256) without restoring it.</summary>
    /// <exception cref="InvalidDataException">It is not, with the reason and the file's name.</exception>
    public static void CheckIntegrity(string path)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        _ = OpenVerified(reader, stream, path);
    }

    /// <summary>Restores a checkpoint into the state's live objects; returns the step it was taken at.</summary>
    /// <exception cref="InvalidDataException">The file is damaged, truncated, of another format or not a checkpoint.</exception>
    /// <exception cref="InvalidOperationException">The checkpoint was written by a run with other settings.</exception>
    public static int Read(string path, TrainingState state)
    {
        using var stream = File.OpenRead(path);
        try
        {
            using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
            long end = OpenVerified(reader, stream, path);
            return ReadBody(reader, stream, end, path, state);
        }
        catch (EndOfStreamException ex)
        {
            throw new InvalidDataException($"Checkpoint '{path}' is truncated.", ex);
        }
        catch (Exception ex) when (ex is ArgumentException or ExternalException or OverflowException or IndexOutOfRangeException or KeyNotFoundException or FormatException
            || (ex is InvalidDataException && !ex.Message.Contains(path, StringComparison.Ordinal)))
        {
            throw new InvalidDataException($"Checkpoint '{path}' is damaged: {ex.Message}", ex);
        }
    }

    // Checks the magic, the format and (format 2) the SHA-256; leaves the stream after the format number and returns where
    // the content ends.
    private static long OpenVerified(BinaryReader reader, Stream stream, string path)
    {
        if (stream.Length < Magic.Length + 4 || System.Text.Encoding.ASCII.GetString(reader.ReadBytes(Magic.Length)) != Magic)
        {
            throw new InvalidDataException($"Checkpoint '{path}' is not a Microsoft.ML.Diffusion checkpoint.");
        }

        int version = reader.ReadInt32();
        if (version is < 1 or > Version)
        {
            throw new InvalidDataException($"Checkpoint '{path}' has format {version}; this version reads formats 1 to {Version}.");
        }

        long end = stream.Length;
        if (version >= 2)
        {
            end -= HashBytes;
            if (end < stream.Position + Trailer.Length || !Verify(stream, end))
            {
                throw new InvalidDataException($"Checkpoint '{path}' is damaged or incomplete: its SHA-256 does not match its content.");
            }

            stream.Position = Magic.Length + 4;
        }

        return end;
    }

    // Reads what Module.save wrote (a LEB128 entry count, then name and tensor per entry) into the module's own tensors.
    // Module.load cannot be used off the CPU: it moves the module to the CPU and back, which replaces every parameter, so
    // the optimizer and the EMA would go on with the old, disposed ones (found on an H200: "Tensor invalid -- empty handle").
    private static void LoadInPlace(nn.Module module, BinaryReader reader, Action<bool, string> require)
    {
        var tensors = module.state_dict();
        long entries = Leb128.Read(reader);
        require(entries == tensors.Count, string.Create(CultureInfo.InvariantCulture, $"it holds {entries} network tensors; this network has {tensors.Count}"));
        for (long i = 0; i < entries; i++)
        {
            string name = reader.ReadString();
            require(tensors.TryGetValue(name, out var target), $"it holds a network tensor named '{name}' that this network lacks");
            using var noGrad = no_grad();
            target!.Load(reader);
        }
    }

    private static int ReadBody(BinaryReader reader, Stream stream, long end, string path, TrainingState state)
    {
        long Left() => end - stream.Position;
        void Require(bool ok, string what)
        {
            if (!ok)
            {
                throw new InvalidDataException($"Checkpoint '{path}' is damaged: {what}.");
            }
        }

        int step = reader.ReadInt32();
        Require(step >= 0, "a negative step");
        string fingerprint = reader.ReadString();
        if (fingerprint != state.Fingerprint)
        {
            throw new InvalidOperationException(
                $"Checkpoint '{path}' was written by a run with other settings or data; resume needs the same network, schedule, objective, batch size, accumulation and training data.\nCheckpoint: {fingerprint}\nThis run:   {state.Fingerprint}");
        }

        long emaUpdates = reader.ReadInt64();
        Require(emaUpdates >= 0, "a negative EMA update count");
        using var noiseState = ReadState(reader, state.NoiseGenerator.get_state(), Left(), path);
        using var orderState = ReadState(reader, state.OrderGenerator.get_state(), Left(), path);
        using var globalState = ReadState(reader, torch.get_rng_state(), Left(), path);
        long cursor = reader.ReadInt64();
        int count = reader.ReadInt32();
        long rows = state.Order.shape[0];
        Require(count == rows && (long)count * sizeof(long) <= Left(), string.Create(CultureInfo.InvariantCulture, $"its data order holds {count} rows; this run has {rows}"));
        Require(cursor >= 0 && cursor <= count, string.Create(CultureInfo.InvariantCulture, $"data position {cursor} of {count}"));
        var order = new long[count];
        for (int i = 0; i < count; i++)
        {
            order[i] = reader.ReadInt64();
            Require(order[i] >= 0 && order[i] < count, "a data row index out of range");
        }

        LoadInPlace(state.Network, reader, Require);
        int emaCount = reader.ReadInt32();
        if ((state.Ema?.Shadow.Count ?? 0) != emaCount)
        {
            throw new InvalidOperationException($"Checkpoint '{path}' holds {emaCount} EMA tensors; this run expects {state.Ema?.Shadow.Count ?? 0} (EmaDecay on/off must match).");
        }

        if (state.Ema is not null)
        {
            var values = new List<Tensor>();
            try
            {
                foreach (var shadow in state.Ema.Shadow)
                {
                    var copy = zeros_like(shadow).DetachFromDisposeScope();
                    values.Add(copy);
                    copy.Load(reader);
                }

                state.Ema.Load(values, emaUpdates);
            }
            finally
            {
                values.ForEach(v => v.Dispose());
            }
        }

        state.Optimizer.Load(reader);

        Require(System.Text.Encoding.ASCII.GetString(reader.ReadBytes(Trailer.Length)) == Trailer && stream.Position == end, "it is incomplete or has bytes after its end marker");
        state.NoiseGenerator.set_state(noiseState);
        state.OrderGenerator.set_state(orderState);
        torch.set_rng_state(globalState);
        state.ReplaceOrder(tensor(order, dtype: int64).DetachFromDisposeScope(), cursor);
        state.Step = step;
        return step;
    }

    private static bool Verify(Stream stream, long end)
    {
        stream.Position = 0;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 20];
        long remaining = end;
        while (remaining > 0)
        {
            int read = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, remaining));
            if (read == 0)
            {
                return false;
            }

            hash.AppendData(buffer, 0, read);
            remaining -= read;
        }

        byte[] expected = new byte[HashBytes];
        stream.ReadExactly(expected);
        return hash.GetHashAndReset().AsSpan().SequenceEqual(expected);
    }

    private static void WriteBytes(BinaryWriter writer, Tensor bytes)
    {
        using (bytes)
        {
            byte[] data = bytes.data<byte>().ToArray();
            writer.Write(data.Length);
            writer.Write(data);
        }
    }

    // A generator state must have the length of the live generator's: libtorch rejects any other.
    private static Tensor ReadState(BinaryReader reader, Tensor current, long left, string path)
    {
        long expected;
        using (current)
        {
            expected = current.numel();
        }

        int length = reader.ReadInt32();
        if (length != expected || length > left)
        {
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"Checkpoint '{path}' is damaged: a random generator state of {length} bytes (expected {expected})."));
        }

        byte[] data = reader.ReadBytes(length);
        if (data.Length != length)
        {
            throw new EndOfStreamException();
        }

        if (!IsValidGeneratorState(data))
        {
            throw new InvalidDataException($"Checkpoint '{path}' is damaged: a random generator state is invalid.");
        }

        return tensor(data, dtype: ScalarType.Byte).DetachFromDisposeScope();
    }

    /// <summary>
    /// Whether libtorch will accept a generator state: its <c>set_state</c> reports a bad one with a C++ exception that
    /// TorchSharp does not catch, which ends the process, so the fields it checks are checked here first (little-endian).
    /// CPU (mt19937, libtorch's legacy layout): int32 "left" at byte 8 in [1, 624], int32 "seeded" at 12 non-zero, uint64
    /// "next" at 16 at most 624. CUDA (Philox, 16 bytes): the int64 offset at byte 8 a multiple of 4.
    /// </summary>
    internal static bool IsValidGeneratorState(ReadOnlySpan<byte> state)
    {
        const int MersenneStateSize = 624;
        if (state.Length == 16)
        {
            return BitConverter.ToInt64(state[8..]) % 4 == 0;
        }

        if (state.Length < 24 + (MersenneStateSize * 8))
        {
            return false;
        }

        int left = BitConverter.ToInt32(state[8..]);
        int seeded = BitConverter.ToInt32(state[12..]);
        ulong next = BitConverter.ToUInt64(state[16..]);
        return left is >= 1 and <= MersenneStateSize && seeded != 0 && next <= MersenneStateSize;
    }

    /// <summary>Passes writes through to a stream and hashes them.</summary>
    private sealed class HashingStream : Stream
    {
        private readonly Stream inner;
        private readonly IncrementalHash hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public HashingStream(Stream inner) => this.inner = inner;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public byte[] Hash() => hash.GetHashAndReset();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            hash.AppendData(buffer);
            inner.Write(buffer);
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                hash.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}

/// <summary>The live objects of a training run that a checkpoint saves and restores.</summary>
internal sealed class TrainingState : IDisposable
{
    public TrainingState(Denoiser network, FusedAdamW optimizer, ExponentialMovingAverage? ema, Generator noiseGenerator, Generator orderGenerator, Tensor order, string fingerprint)
    {
        Network = network;
        Optimizer = optimizer;
        Ema = ema;
        NoiseGenerator = noiseGenerator;
        OrderGenerator = orderGenerator;
        Order = order;
        Fingerprint = fingerprint;
    }

    public Denoiser Network { get; }

    public FusedAdamW Optimizer { get; }

    public ExponentialMovingAverage? Ema { get; }

    public Generator NoiseGenerator { get; }

    public Generator OrderGenerator { get; }

    public string Fingerprint { get; }

    /// <summary>Gets the current permutation of the training rows.</summary>
    public Tensor Order { get; private set; }

    /// <summary>Gets or sets the position in <see cref="Order"/>.</summary>
    public long Cursor { get; set; }

    /// <summary>Gets or sets the number of optimizer steps done.</summary>
    public int Step { get; set; }

    public void ReplaceOrder(Tensor order, long cursor)
    {
        Order.Dispose();
        Order = order;
        Cursor = cursor;
    }

    public void Dispose() => Order.Dispose();
}
