using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// MPI ranks (MPI_COMM_WORLD). Tensors: blocking MPI_Allreduce / MPI_Bcast in place on CPU memory, guarded by a watchdog
/// that stops the job (MPI_Abort) with a message when one does not finish within <see cref="Communicator.Timeout"/>; CUDA
/// tensors go to <see cref="NcclBackend"/>. Host messages: non-blocking sends and receives through rank 0, polled against
/// a deadline, so that a missing rank is named. Errors return codes (MPI_ERRORS_RETURN) instead of aborting.
/// </summary>
internal sealed class MpiCommunicator : Communicator
{
    private const int ThreadSerialized = 2;
    private const int TagLength = 0x4D4C01;
    private const int TagData = 0x4D4C02;
    private const int TagAllLength = 0x4D4C03;
    private const int TagAll = 0x4D4C04;
    private const int MaxChunk = 1 << 30;

    private readonly MpiLibrary mpi;
    private readonly int rank;
    private readonly int size;
    private readonly int localRank;
    private NcclBackend? nccl;
    private bool broken;

    private MpiCommunicator(MpiLibrary mpi, int rank, int size, int localRank)
    {
        this.mpi = mpi;
        this.rank = rank;
        this.size = size;
        this.localRank = localRank;
        Backend = mpi.Version();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => FinalizeAtExit();
    }

    public override int Rank => rank;

    public override int WorldSize => size;

    public override int LocalRank => localRank;

    public override string Backend { get; }

    /// <summary>Loads MPI and joins MPI_COMM_WORLD (MPI_Init_thread, serialized: one thread at a time calls MPI).</summary>
    public static MpiCommunicator Start(RankEnvironment environment)
    {
        var mpi = MpiLibrary.Load(string.Create(CultureInfo.InvariantCulture, $"the environment says this is rank {environment.Rank} of {environment.WorldSize}: {environment.Source} is set"));
        mpi.Check(mpi.Initialized(out int initialized), "MPI_Initialized");
        if (initialized == 0)
        {
            mpi.Check(mpi.InitThread(IntPtr.Zero, IntPtr.Zero, ThreadSerialized, out _), "MPI_Init_thread");
        }

        mpi.Check(mpi.SetErrorHandler(mpi.CommWorld, mpi.ErrorsReturn), "MPI_Comm_set_errhandler");
        mpi.Check(mpi.CommRank(mpi.CommWorld, out int rank), "MPI_Comm_rank");
        mpi.Check(mpi.CommSize(mpi.CommWorld, out int size), "MPI_Comm_size");
        return new MpiCommunicator(mpi, rank, size, environment.LocalRank);
    }

    /// <summary>Marks the communicator unusable: no more collectives, no MPI_Finalize at exit (it would wait for the lost rank).</summary>
    internal void MarkBroken() => broken = true;

    public override void AllReduce(Tensor tensor, ReduceOperation operation = ReduceOperation.Sum)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        EnsureUsable();
        if (tensor.device.type == DeviceType.CUDA)
        {
            Nccl(tensor.device).AllReduce(tensor, operation);
            return;
        }

        var (pointer, count, type, width) = Memory(tensor);
        using (Guard($"the all-reduce of {count} values"))
        {
            for (long start = 0; start < count; start += MaxChunk)
            {
                int n = (int)Math.Min(MaxChunk, count - start);
                mpi.Check(mpi.AllReduce(mpi.InPlace, pointer + (nint)(start * width), n, type, mpi.Sum, mpi.CommWorld), "MPI_Allreduce");
            }
        }

        if (operation == ReduceOperation.Average)
        {
            using var divisor = ((double)size).ToScalar();
            using var noGrad = no_grad();
            tensor.div_(divisor);
        }
    }

    public override void Broadcast(Tensor tensor, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        EnsureUsable();
        if (tensor.device.type == DeviceType.CUDA)
        {
            Nccl(tensor.device).Broadcast(tensor, root);
            return;
        }

        var (pointer, count, type, width) = Memory(tensor);
        using (Guard($"the broadcast of {count} values from rank {root}"))
        {
            for (long start = 0; start < count; start += MaxChunk)
            {
                int n = (int)Math.Min(MaxChunk, count - start);
                mpi.Check(mpi.Bcast(pointer + (nint)(start * width), n, type, root, mpi.CommWorld), "MPI_Bcast");
            }
        }
    }

    public override byte[] BroadcastBytes(byte[]? data, int root, string what)
    {
        EnsureUsable();
        // The length first, through the named exchange (a missing root is named), then the bytes in 1 GiB pieces.
        byte[] mine = rank == root ? BitConverter.GetBytes((long)(data ?? Array.Empty<byte>()).Length) : Array.Empty<byte>();
        long length = BitConverter.ToInt64(AllGather(mine, what)[root]);
        byte[] buffer = rank == root ? data ?? Array.Empty<byte>() : new byte[length];
        var pin = GCHandle.Alloc(buffer, GCHandleType.Pinned);
        try
        {
            using (Guard($"{what} ({length} bytes from rank {root})"))
            {
                for (long start = 0; start < length; start += MaxChunk)
                {
                    int n = (int)Math.Min(MaxChunk, length - start);
                    mpi.Check(mpi.Bcast(pin.AddrOfPinnedObject() + (nint)start, n, mpi.Byte, root, mpi.CommWorld), "MPI_Bcast");
                }
            }
        }
        finally
        {
            pin.Free();
        }

        return buffer;
    }

    public override byte[][] AllGather(byte[] message, string what, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(what);
        EnsureUsable();
        var limit = timeout ?? Timeout;
        var clock = Stopwatch.StartNew();
        using var exchange = new Exchange(this, what, limit, clock);
        if (rank != 0)
        {
            exchange.Send(BitConverter.GetBytes((long)message.Length), 0, TagLength);
            exchange.Send(message, 0, TagData);
            byte[] total = new byte[sizeof(long)];
            exchange.Receive(total, 0, TagAllLength);
            exchange.WaitAll();
            byte[] all = new byte[BitConverter.ToInt64(total)];
            exchange.Receive(all, 0, TagAll);
            exchange.WaitAll();
            return Split(all);
        }

        var lengths = new byte[size][];
        for (int r = 1; r < size; r++)
        {
            lengths[r] = new byte[sizeof(long)];
            exchange.Receive(lengths[r], r, TagLength);
        }

        exchange.WaitAll();
        var messages = new byte[size][];
        messages[0] = message;
        for (int r = 1; r < size; r++)
        {
            long n = BitConverter.ToInt64(lengths[r]);
            if (n < 0 || n > int.MaxValue)
            {
                throw new CollectiveException(string.Create(CultureInfo.InvariantCulture, $"Rank {r} sent a message of {n} bytes for '{what}'."), new[] { r });
            }

            messages[r] = new byte[n];
            exchange.Receive(messages[r], r, TagData);
        }

        exchange.WaitAll();
        byte[] joined = Join(messages);
        byte[] joinedLength = BitConverter.GetBytes((long)joined.Length);
        for (int r = 1; r < size; r++)
        {
            exchange.Send(joinedLength, r, TagAllLength);
            exchange.Send(joined, r, TagAll);
        }

        exchange.WaitAll();
        return messages;
    }

    public override void Abort(int code, string message)
    {
        broken = true;
        Console.Error.WriteLine(message);
        Console.Error.Flush();
        mpi.AbortJob(mpi.CommWorld, code);
        NativeLoader.ExitNow(code);
    }

    protected override void Dispose(bool disposing)
    {
        nccl?.Dispose();
        nccl = null;
    }

    private static byte[] Join(byte[][] messages)
    {
        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream);
        foreach (var m in messages)
        {
            writer.Write((long)m.Length);
            writer.Write(m);
        }

        writer.Flush();
        return stream.ToArray();
    }

    private byte[][] Split(byte[] all)
    {
        using var reader = new BinaryReader(new MemoryStream(all));
        var messages = new byte[size][];
        for (int r = 0; r < size; r++)
        {
            messages[r] = reader.ReadBytes((int)reader.ReadInt64());
        }

        return messages;
    }

    private (IntPtr Pointer, long Count, IntPtr Type, int Width) Memory(Tensor tensor)
    {
        if (!tensor.is_contiguous())
        {
            throw new ArgumentException("Collectives need a contiguous tensor.", nameof(tensor));
        }

        var (type, width) = tensor.dtype switch
        {
            ScalarType.Float32 => (mpi.Float, 4),
            ScalarType.Float64 => (mpi.Double, 8),
            ScalarType.Byte => (mpi.Byte, 1),
            _ => throw new ArgumentException($"Collectives take float32, float64 or byte tensors; got {tensor.dtype}.", nameof(tensor)),
        };
        return (TensorMemory.Address(tensor), tensor.numel(), type, width);
    }

    private NcclBackend Nccl(Device device)
    {
        if (nccl is null)
        {
            nccl = NcclBackend.Create(this, device);
        }
        else if (nccl.DeviceIndex != (device.index < 0 ? 0 : device.index))
        {
            throw new ArgumentException($"This rank's NCCL communicator is on cuda:{nccl.DeviceIndex}; got a tensor on {device}.");
        }

        return nccl;
    }

    private Watchdog Guard(string what) => new(Timeout, () => string.Create(
        CultureInfo.InvariantCulture,
        $"error: rank {rank} of {size}: {what} did not finish within {Timeout.TotalSeconds:0} s — another rank died or hung. Stopping the job (MPI_Abort)."), this);

    private void EnsureUsable()
    {
        if (broken)
        {
            throw new CollectiveException($"Rank {rank}: the job's communicator is broken by an earlier failure; no more collectives.");
        }
    }

    private void FinalizeAtExit()
    {
        if (broken)
        {
            return;
        }

        try
        {
            nccl?.Dispose();
            if (mpi.Finalized(out int finalized) == 0 && finalized == 0)
            {
                mpi.Finalize();
            }
        }
        catch (CollectiveException)
        {
        }
    }

    /// <summary>The non-blocking messages of one exchange, polled against its deadline; a peer that does not answer is named.</summary>
    private sealed class Exchange : IDisposable
    {
        private readonly MpiCommunicator owner;
        private readonly string what;
        private readonly TimeSpan limit;
        private readonly Stopwatch clock;
        private readonly List<(IntPtr Request, GCHandle Pin, int Peer, bool Receive)> pending = new();
        private readonly IntPtr status = Marshal.AllocHGlobal(64);

        public Exchange(MpiCommunicator owner, string what, TimeSpan limit, Stopwatch clock)
        {
            this.owner = owner;
            this.what = what;
            this.limit = limit;
            this.clock = clock;
        }

        public void Send(byte[] data, int peer, int tag) => Post(data, peer, tag, receive: false);

        public void Receive(byte[] data, int peer, int tag) => Post(data, peer, tag, receive: true);

        public void WaitAll()
        {
            var mpi = owner.mpi;
            int polls = 0;
            while (pending.Count > 0)
            {
                for (int i = pending.Count - 1; i >= 0; i--)
                {
                    var (request, pin, peer, _) = pending[i];
                    int code = mpi.Test(request, out int done, status);
                    if (code != 0)
                    {
                        owner.broken = true;
                        throw new CollectiveException(
                            string.Create(CultureInfo.InvariantCulture, $"Rank {owner.rank}: the connection to rank {peer} failed during '{what}' (MPI error {code}): rank {peer} died or its machine is unreachable."),
                            new[] { peer });
                    }

                    if (done != 0)
                    {
                        pin.Free();
                        Marshal.FreeHGlobal(request);
                        pending.RemoveAt(i);
                    }
                }

                if (pending.Count == 0)
                {
                    break;
                }

                if (clock.Elapsed > limit)
                {
                    // The lost messages keep their pinned buffers and requests: MPI may still touch them, and the process ends soon.
                    owner.broken = true;
                    int[] missing = pending.Select(p => p.Peer).Distinct().OrderBy(p => p).ToArray();
                    pending.Clear();
                    string who = $"rank{(missing.Length > 1 ? "s" : "")} {string.Join(", ", missing)}";
                    throw new CollectiveException(
                        string.Create(CultureInfo.InvariantCulture, $"Rank {owner.rank}: {who} did not reach '{what}' within {limit.TotalSeconds:0.#} s (died, hung, or far behind); stopping."),
                        missing);
                }

                if (++polls < 200)
                {
                    Thread.Yield();
                }
                else
                {
                    Thread.Sleep(1);
                }
            }
        }

        public void Dispose()
        {
            if (!owner.broken)
            {
                foreach (var p in pending)
                {
                    p.Pin.Free();
                    Marshal.FreeHGlobal(p.Request);
                }
            }

            pending.Clear();
            Marshal.FreeHGlobal(status);
        }

        private void Post(byte[] data, int peer, int tag, bool receive)
        {
            var mpi = owner.mpi;
            var pin = GCHandle.Alloc(data, GCHandleType.Pinned);
            IntPtr request = Marshal.AllocHGlobal(8);
            Marshal.WriteInt64(request, 0);
            int code = receive
                ? mpi.Irecv(pin.AddrOfPinnedObject(), data.Length, mpi.Byte, peer, tag, mpi.CommWorld, request)
                : mpi.Isend(pin.AddrOfPinnedObject(), data.Length, mpi.Byte, peer, tag, mpi.CommWorld, request);
            if (code != 0)
            {
                pin.Free();
                Marshal.FreeHGlobal(request);
                mpi.Check(code, receive ? "MPI_Irecv" : "MPI_Isend");
            }

            pending.Add((request, pin, peer, receive));
        }
    }
}
