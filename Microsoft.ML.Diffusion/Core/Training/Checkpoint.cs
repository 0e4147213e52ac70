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
/// What a training checkpoint holds: everything needed to continue a run bit-exactly on the CPU — step, network weights,
/// EMA, optimizer state, the random generators' states, the data order and its position. The file around it (magic,
/// version, end marker, SHA-256, atomic writes, the folder's files) is <see cref="CheckpointFile"/>'s.
/// </summary>
/// <remarks>
/// <para>Content, inside the container: int32 step; string fingerprint (the configuration and the
/// training settings that must not change across a resume); int64 EMA updates; the noise, data-order and global
/// generator states; the data permutation and cursor; the network's weights (TorchSharp format); the EMA tensors; the
/// optimizer state; for a 16-bit run, the mixed-precision section (<see cref="MixedPrecision.WriteCheckpoint"/>: the loss
/// scale), which float32 runs and earlier versions do not write and which reading takes as optional.</para>
/// <para>Reading checks the SHA-256 before it parses anything, so a damaged file is refused with an
/// <see cref="InvalidDataException"/> naming it and never restores part of a run; every length in the file is checked
/// against the bytes that are left and against the live run before anything is allocated. A checkpoint written by a run
/// with other settings is refused with an <see cref="InvalidOperationException"/>. Format 1 (no hash) is still read.</para>
/// </remarks>
internal static class Checkpoint
{
    public const string Extension = CheckpointFile.Extension;

    /// <summary>Test hook: runs after the temporary file is written and before it is renamed (simulates a crash there).</summary>
    internal static Action<string>? BeforeRename
    {
        get => CheckpointFile.BeforeRename;
        set => CheckpointFile.BeforeRename = value;
    }

    public static string PathFor(string directory, int step) => CheckpointFile.PathFor(directory, step);

    /// <summary>The newest complete checkpoint in the folder (temporary files are ignored), or null.</summary>
    public static string? FindLatest(string directory) => CheckpointFile.FindLatest(directory);

    /// <summary>The newest intact checkpoint in the folder, or null; see <see cref="CheckpointFile.FindLatestIntact"/>.</summary>
    public static string? FindLatestIntact(string directory, Action<string, string>? damaged) => CheckpointFile.FindLatestIntact(directory, damaged);

    public static void Write(string directory, TrainingState state, int keep, bool createDirectory = true) => CheckpointFile.Write(directory, state.Step, keep, writer =>
    {
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
        MixedPrecision.WriteCheckpoint(writer, state.MixedPrecision); // absent for float32: those files are unchanged
    }, createDirectory);

    /// <summary>Checks that a checkpoint is complete and undamaged (its magic, format and SHA-256) without restoring it.</summary>
    /// <exception cref="InvalidDataException">It is not, with the reason and the file's name.</exception>
    public static void CheckIntegrity(string path)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        _ = CheckpointFile.OpenVerified(reader, stream, path);
    }

    /// <summary>Restores a checkpoint into the state's live objects; returns the step it was taken at.</summary>
    /// <exception cref="InvalidDataException">The file is damaged, truncated, of another format or not a checkpoint.</exception>
    /// <exception cref="InvalidOperationException">The checkpoint was written by a run with other settings.</exception>
    public static int Read(string path, TrainingState state)
    {
        using var stream = File.OpenRead(path);
        return ReadFrom(stream, path, state);
    }

    /// <summary>Restores a checkpoint's bytes (read by another rank) into the state's live objects; <paramref name="path"/> names it in errors.</summary>
    public static int ReadFrom(Stream stream, string path, TrainingState state)
    {
        try
        {
            using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
            long end = CheckpointFile.OpenVerified(reader, stream, path);
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
        var mixed = MixedPrecision.ReadCheckpoint(reader, present: !CheckpointFile.AtTrailer(stream, end)); // older and float32 checkpoints have none

        Require(CheckpointFile.ReadTrailer(reader, stream, end), "it is incomplete or has bytes after its end marker");
        state.NoiseGenerator.set_state(noiseState);
        state.OrderGenerator.set_state(orderState);
        torch.set_rng_state(globalState);
        state.ReplaceOrder(tensor(order, dtype: int64).DetachFromDisposeScope(), cursor);
        state.Step = step;
        state.MixedPrecision?.Restore(mixed);
        return step;
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
}
