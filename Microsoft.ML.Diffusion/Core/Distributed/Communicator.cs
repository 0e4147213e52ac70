using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// The ranks of a data-parallel job and the few collectives training and generation need: all-reduce and broadcast of one
/// flat tensor, a barrier, and small host messages that name the rank at fault when one is missing. <see cref="Collective.World"/>
/// is the process's communicator: a world of 1 for a plain process (no MPI needed), MPI ranks under <c>mpirun</c>.
/// </summary>
/// <remarks>
/// <para>Every collective must be called by every rank, in the same order. A rank that does not arrive within
/// <see cref="Timeout"/> is named in a <see cref="CollectiveException"/> (host messages), or, when the job is inside an
/// all-reduce or broadcast of a tensor that cannot be abandoned, the job is stopped with that message on standard error.</para>
/// <para>CPU tensors travel over MPI; CUDA tensors over NCCL, whose communicator is created on the first CUDA collective
/// with its unique id broadcast over MPI.</para>
/// </remarks>
public abstract class Communicator : IDisposable
{
    /// <summary>The environment variable that sets <see cref="Timeout"/> in seconds.</summary>
    public const string TimeoutVariable = "MLDIFFUSION_COLLECTIVE_TIMEOUT";

    /// <summary>Initializes a new instance of the <see cref="Communicator"/> class.</summary>
    protected Communicator()
    {
        Timeout = double.TryParse(Environment.GetEnvironmentVariable(TimeoutVariable), NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) && seconds > 0
            ? TimeSpan.FromSeconds(seconds)
            : TimeSpan.FromMinutes(10);
    }

    /// <summary>Gets this process's rank, 0 … <see cref="WorldSize"/> − 1.</summary>
    public abstract int Rank { get; }

    /// <summary>Gets the number of ranks.</summary>
    public abstract int WorldSize { get; }

    /// <summary>Gets this process's rank among the ranks of its machine (which GPU it takes).</summary>
    public abstract int LocalRank { get; }

    /// <summary>Gets a description of the engines in use (e.g. "single process", "Open MPI v4.1.4").</summary>
    public abstract string Backend { get; }

    /// <summary>Gets a value indicating whether this is rank 0, the rank that writes files and reports progress.</summary>
    public bool IsRoot => Rank == 0;

    /// <summary>
    /// Gets or sets how long a rank waits for the others at a collective before it names the missing ranks and stops.
    /// Default: <see cref="TimeoutVariable"/> seconds, or 10 minutes.
    /// </summary>
    public TimeSpan Timeout { get; set; }

    /// <summary>Combines a contiguous float32 or float64 tensor over the ranks, in place (the same result on every rank).</summary>
    /// <param name="tensor">The tensor: CPU (MPI) or CUDA (NCCL).</param>
    /// <param name="operation">Sum or average.</param>
    public abstract void AllReduce(Tensor tensor, ReduceOperation operation = ReduceOperation.Sum);

    /// <summary>Copies a contiguous tensor of <paramref name="root"/> into the same tensor of every other rank.</summary>
    /// <param name="tensor">The tensor: CPU (MPI) or CUDA (NCCL), of the same shape and type on every rank.</param>
    /// <param name="root">The rank whose values are kept.</param>
    public abstract void Broadcast(Tensor tensor, int root = 0);

    /// <summary>
    /// Every rank's message, in rank order, on every rank. A rank that does not take part within <paramref name="timeout"/>
    /// (default <see cref="Timeout"/>) is named in the <see cref="CollectiveException"/> thrown.
    /// </summary>
    /// <param name="message">This rank's bytes (any length; ranks may differ).</param>
    /// <param name="what">What the exchange is for, for the error message.</param>
    /// <param name="timeout">How long to wait, or null for <see cref="Timeout"/>.</param>
    /// <returns>The messages, indexed by rank.</returns>
    public abstract byte[][] AllGather(byte[] message, string what, TimeSpan? timeout = null);

    /// <summary>The bytes of <paramref name="root"/> on every rank (large payloads, e.g. a checkpoint).</summary>
    /// <param name="data">The bytes on the root; ignored elsewhere.</param>
    /// <param name="root">The sending rank.</param>
    /// <param name="what">What is sent, for the error message.</param>
    /// <returns>The root's bytes.</returns>
    public abstract byte[] BroadcastBytes(byte[]? data, int root, string what);

    /// <summary>Stops the whole job at once (MPI_Abort) after writing <paramref name="message"/> to standard error.</summary>
    /// <param name="code">The exit code.</param>
    /// <param name="message">Why.</param>
    public abstract void Abort(int code, string message);

    /// <summary>Waits until every rank arrives; names the ranks missing after <see cref="Timeout"/>.</summary>
    /// <param name="what">What the ranks wait for, for the error message.</param>
    public void Barrier(string what) => AllGather(Array.Empty<byte>(), what);

    /// <summary>Rank 0's value on every rank (a decision rank 0 makes: a seed, a step to resume from, the time left).</summary>
    /// <param name="value">This rank's value (only rank 0's is used).</param>
    /// <param name="what">What is agreed on, for the error message.</param>
    /// <returns>Rank 0's value.</returns>
    public long AgreeWithRoot(long value, string what) =>
        WorldSize == 1 ? value : BitConverter.ToInt64(AllGather(IsRoot ? BitConverter.GetBytes(value) : Array.Empty<byte>(), what)[0]);

    /// <summary>
    /// Runs <paramref name="work"/> on rank 0 alone (writing a checkpoint or a model file) while the others wait; a failure
    /// on rank 0 is rethrown there and reported on every other rank as a <see cref="CollectiveException"/> naming rank 0.
    /// </summary>
    /// <param name="work">The work.</param>
    /// <param name="what">What rank 0 does, for messages.</param>
    /// <param name="timeout">How long the others wait, or null for four times <see cref="Timeout"/>.</param>
    public void RunOnRoot(Action work, string what, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (WorldSize == 1)
        {
            work();
            return;
        }

        Exception? failure = null;
        if (IsRoot)
        {
            try
            {
                work();
            }
#pragma warning disable CA1031 // Every failure is reported to the other ranks, then rethrown here.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                failure = ex;
            }
        }

        byte[] status = failure is null ? Array.Empty<byte>() : Encoding.UTF8.GetBytes(failure.GetType().Name + ": " + failure.Message);
        var all = AllGather(status, what, timeout ?? (Timeout * 4));
        if (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
        }

        if (all[0].Length > 0)
        {
            throw new CollectiveException($"Rank 0 failed to {what}: {Encoding.UTF8.GetString(all[0])}", new[] { 0 });
        }
    }

    /// <summary>
    /// Checks that every rank holds the same value (a hash of the options, the data, the weights); throws a
    /// <see cref="CollectiveException"/> naming each rank that differs from rank 0.
    /// </summary>
    /// <param name="value">This rank's value.</param>
    /// <param name="what">What the value is ("the training options"), for the message.</param>
    /// <param name="describe">Describes how a rank's value (second) differs from rank 0's (first), or null for both in hexadecimal.</param>
    public void RequireSame(byte[] value, string what, Func<byte[], byte[], string>? describe = null)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (WorldSize == 1)
        {
            return;
        }

        var all = AllGather(value, "compare " + what);
        var differing = new List<int>();
        for (int r = 1; r < all.Length; r++)
        {
            if (!all[r].AsSpan().SequenceEqual(all[0]))
            {
                differing.Add(r);
            }
        }

        if (differing.Count > 0)
        {
            describe ??= (root, other) => $"{Convert.ToHexString(root)} on rank 0, {Convert.ToHexString(other)}";
            string detail = string.Join("; ", differing.Take(4).Select(r => $"{describe(all[0], all[r])} on rank {r}"));
            throw new CollectiveException(
                $"{char.ToUpperInvariant(what[0])}{what[1..]} differ between ranks: rank{(differing.Count > 1 ? "s" : "")} {string.Join(", ", differing)} "
                + $"{(differing.Count > 1 ? "differ" : "differs")} from rank 0 ({detail}).",
                differing);
        }
    }

    /// <summary>Releases the engines (MPI_Finalize happens at process exit).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the engines.</summary>
    /// <param name="disposing">Whether called from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
    }
}
