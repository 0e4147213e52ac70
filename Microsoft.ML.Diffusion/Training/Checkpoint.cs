using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// Training checkpoints: everything needed to continue a run bit-exactly on the CPU — step, network weights, EMA,
/// optimizer state, the random generators' states, the data order and its position — written atomically (a temporary
/// file renamed into place), the last few kept.
/// </summary>
/// <remarks>
/// Layout: the magic "MLDCKPT1"; int32 format version; int32 step; string fingerprint (the configuration and the
/// training settings that must not change across a resume); int64 EMA updates; the noise, data-order and global
/// generator states; the data permutation and cursor; the network's weights (TorchSharp format); the EMA tensors; the
/// optimizer state; and the magic "MLDCKEND" as a trailer that proves the file is complete.
/// </remarks>
internal static class Checkpoint
{
    public const string Extension = ".ckpt";
    private const string Magic = "MLDCKPT1";
    private const string Trailer = "MLDCKEND";
    private const int Version = 1;

    /// <summary>Test hook: runs after the temporary file is written and before it is renamed (simulates a crash there).</summary>
    internal static Action<string>? BeforeRename { get; set; }

    public static string PathFor(string directory, int step) =>
        Path.Combine(directory, string.Format(CultureInfo.InvariantCulture, "checkpoint-{0:D8}{1}", step, Extension));

    /// <summary>The newest complete checkpoint in the folder (temporary files are ignored), or null.</summary>
    public static string? FindLatest(string directory) =>
        Directory.Exists(directory)
            ? Directory.GetFiles(directory, "checkpoint-*" + Extension).OrderBy(f => f, StringComparer.Ordinal).LastOrDefault()
            : null;

    public static void Write(string directory, TrainingState state, int keep)
    {
        Directory.CreateDirectory(directory);
        string path = PathFor(directory, state.Step);
        string temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
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

                state.Optimizer.save_state_dict(writer);
                writer.Write(System.Text.Encoding.ASCII.GetBytes(Trailer));
            }

            stream.Flush(flushToDisk: true);
        }

        BeforeRename?.Invoke(temp);
        File.Move(temp, path, overwrite: true);
        foreach (string old in Directory.GetFiles(directory, "checkpoint-*" + Extension).OrderBy(f => f, StringComparer.Ordinal).SkipLast(Math.Max(1, keep)))
        {
            File.Delete(old);
        }
    }

    /// <summary>Restores a checkpoint into the state's live objects; returns the step it was taken at.</summary>
    public static int Read(string path, TrainingState state)
    {
        try
        {
            using var stream = File.OpenRead(path);
            using var reader = new BinaryReader(stream);
            if (System.Text.Encoding.ASCII.GetString(reader.ReadBytes(Magic.Length)) != Magic)
            {
                throw new InvalidDataException($"Checkpoint '{path}' is not a Microsoft.ML.Diffusion checkpoint.");
            }

            int version = reader.ReadInt32();
            if (version != Version)
            {
                throw new InvalidDataException($"Checkpoint '{path}' has format {version}; this version reads format {Version}.");
            }

            int step = reader.ReadInt32();
            string fingerprint = reader.ReadString();
            if (fingerprint != state.Fingerprint)
            {
                throw new InvalidOperationException(
                    $"Checkpoint '{path}' was written by a run with other settings or data; resume needs the same network, schedule, objective, batch size, accumulation and training data.\nCheckpoint: {fingerprint}\nThis run:   {state.Fingerprint}");
            }

            long emaUpdates = reader.ReadInt64();
            using var noiseState = ReadBytes(reader);
            using var orderState = ReadBytes(reader);
            using var globalState = ReadBytes(reader);
            long cursor = reader.ReadInt64();
            int count = reader.ReadInt32();
            var order = new long[count];
            for (int i = 0; i < count; i++)
            {
                order[i] = reader.ReadInt64();
            }

            state.Network.load(reader, strict: true);
            int emaCount = reader.ReadInt32();
            if ((state.Ema?.Shadow.Count ?? 0) != emaCount)
            {
                throw new InvalidOperationException($"Checkpoint '{path}' holds {emaCount} EMA tensors; this run expects {state.Ema?.Shadow.Count ?? 0} (EmaDecay on/off must match).");
            }

            if (state.Ema is not null)
            {
                var values = new List<Tensor>();
                foreach (var shadow in state.Ema.Shadow)
                {
                    var copy = zeros_like(shadow).DetachFromDisposeScope();
                    copy.Load(reader);
                    values.Add(copy);
                }

                state.Ema.Load(values, emaUpdates);
                values.ForEach(v => v.Dispose());
            }

            state.Optimizer.load_state_dict(reader);
            if (System.Text.Encoding.ASCII.GetString(reader.ReadBytes(Trailer.Length)) != Trailer)
            {
                throw new InvalidDataException($"Checkpoint '{path}' is incomplete.");
            }

            state.NoiseGenerator.set_state(noiseState);
            state.OrderGenerator.set_state(orderState);
            torch.set_rng_state(globalState);
            state.ReplaceOrder(tensor(order, dtype: int64).DetachFromDisposeScope(), cursor);
            state.Step = step;
            return step;
        }
        catch (EndOfStreamException ex)
        {
            throw new InvalidDataException($"Checkpoint '{path}' is truncated.", ex);
        }
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

    private static Tensor ReadBytes(BinaryReader reader)
    {
        int length = reader.ReadInt32();
        byte[] data = reader.ReadBytes(length);
        if (data.Length != length)
        {
            throw new EndOfStreamException();
        }

        return tensor(data, dtype: ScalarType.Byte).DetachFromDisposeScope();
    }
}

/// <summary>The live objects of a training run that a checkpoint saves and restores.</summary>
internal sealed class TrainingState : IDisposable
{
    public TrainingState(Denoiser network, OptimizerHelper optimizer, ExponentialMovingAverage? ema, Generator noiseGenerator, Generator orderGenerator, Tensor order, string fingerprint)
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

    public OptimizerHelper Optimizer { get; }

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
