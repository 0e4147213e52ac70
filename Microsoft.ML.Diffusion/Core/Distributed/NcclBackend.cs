using System;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// NCCL (<c>libnccl.so.2</c>) for CUDA tensors, bootstrapped over MPI as improved-diffusion and Horovod do: rank 0 makes
/// the unique id (ncclGetUniqueId), MPI broadcasts its 128 bytes, every rank joins (ncclCommInitRank) on the GPU of its
/// local rank.
/// </summary>
/// <remarks>
/// <para>Stream ordering: every NCCL call is enqueued on the legacy default stream (stream 0). TorchSharp 0.107 sets no
/// stream, so libtorch's kernels run on that same stream: the all-reduce starts after the backward kernels that wrote the
/// gradients and the optimizer's kernels start after it, with no host synchronization between them. After enqueueing, the
/// host waits for the device (<c>torch.cuda.synchronize</c>) under a watchdog, so that a rank that died or hung stops the job
/// within <see cref="Communicator.Timeout"/> instead of leaving it blocked in a kernel (the training step reads its loss right
/// after, so this wait costs it nothing).</para>
/// <para>The GPU: NCCL uses the calling thread's current CUDA device, which libtorch does not set; it is set through the
/// driver API (<c>libcuda.so.1</c>: the device's primary context, the one the CUDA runtime and libtorch use) before each call.</para>
/// </remarks>
internal sealed class NcclBackend : IDisposable
{
    /// <summary>The environment variable that names the NCCL library to load.</summary>
    public const string LibraryVariable = "MLDIFFUSION_NCCL_LIBRARY";

    public const string InstallHint = "install NCCL (NVIDIA's libnccl2 package, or pip install nvidia-nccl-cu12 and add its lib folder to LD_LIBRARY_PATH), "
        + "or set " + LibraryVariable + " to the path of libnccl.so.2";

    private const int NcclUint8 = 1;
    private const int NcclFloat32 = 7;
    private const int NcclFloat64 = 8;
    private const int NcclSum = 0;

    private readonly Communicator owner;
    private readonly Device device;
    private readonly IntPtr context;
    private readonly SetContextFn setContext;
    private readonly AllReduceFn allReduce;
    private readonly BroadcastFn broadcast;
    private readonly CommFn destroy;
    private readonly ErrorStringFn errorString;
    private IntPtr comm;

    private NcclBackend(Communicator owner, Device device, IntPtr nccl, IntPtr context, SetContextFn setContext)
    {
        this.owner = owner;
        this.device = device;
        this.context = context;
        this.setContext = setContext;
        DeviceIndex = device.index < 0 ? 0 : device.index;
        allReduce = NativeLoader.Function<AllReduceFn>(nccl, "ncclAllReduce");
        broadcast = NativeLoader.Function<BroadcastFn>(nccl, "ncclBroadcast");
        destroy = NativeLoader.Function<CommFn>(nccl, "ncclCommDestroy");
        errorString = NativeLoader.Function<ErrorStringFn>(nccl, "ncclGetErrorString");
        Version = NativeLoader.Function<VersionFn>(nccl, "ncclGetVersion")(out int version) == 0 ? version : 0;
    }

    private delegate int UniqueIdFn(out UniqueId id);

    private delegate int InitRankFn(out IntPtr comm, int ranks, UniqueId id, int rank);

    private delegate int AllReduceFn(IntPtr send, IntPtr receive, UIntPtr count, int type, int op, IntPtr comm, IntPtr stream);

    private delegate int BroadcastFn(IntPtr send, IntPtr receive, UIntPtr count, int type, int root, IntPtr comm, IntPtr stream);

    private delegate int CommFn(IntPtr comm);

    private delegate IntPtr ErrorStringFn(int code);

    private delegate int VersionFn(out int version);

    private delegate int CuInitFn(uint flags);

    private delegate int CuDeviceGetFn(out int device, int ordinal);

    private delegate int CuRetainFn(out IntPtr context, int device);

    private delegate int SetContextFn(IntPtr context);

    /// <summary>Gets the CUDA device index this rank's communicator works on.</summary>
    public int DeviceIndex { get; }

    /// <summary>Gets NCCL's version code (e.g. 22703 for 2.27.3), or 0.</summary>
    public int Version { get; }

    /// <summary>Loads NCCL on every rank, makes the unique id on rank 0, broadcasts it over <paramref name="owner"/> and joins.</summary>
    public static NcclBackend Create(Communicator owner, Device device)
    {
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentNullException.ThrowIfNull(device);
        NcclBackend? backend = null;
        string failure = string.Empty;
        IntPtr nccl = IntPtr.Zero;
        try
        {
            string? configured = Environment.GetEnvironmentVariable(LibraryVariable);
            string[] candidates = string.IsNullOrWhiteSpace(configured) ? new[] { "libnccl.so.2", "libnccl.so" } : configured.Split(':', StringSplitOptions.RemoveEmptyEntries);
            (nccl, _) = NativeLoader.TryLoad(candidates);
            if (nccl == IntPtr.Zero)
            {
                throw new DllNotFoundException($"NCCL is needed for collectives of CUDA tensors but no NCCL library could be loaded (tried {string.Join(", ", candidates)}): {InstallHint}.");
            }

            var (cuda, _) = NativeLoader.TryLoad("libcuda.so.1", "libcuda.so");
            if (cuda == IntPtr.Zero)
            {
                throw new DllNotFoundException("NCCL needs the NVIDIA driver's libcuda.so.1, which could not be loaded: install the NVIDIA driver.");
            }

            int index = device.index < 0 ? 0 : device.index;
            CheckCuda(NativeLoader.Function<CuInitFn>(cuda, "cuInit")(0), "cuInit");
            CheckCuda(NativeLoader.Function<CuDeviceGetFn>(cuda, "cuDeviceGet")(out int handle, index), "cuDeviceGet");
            CheckCuda(NativeLoader.Function<CuRetainFn>(cuda, "cuDevicePrimaryCtxRetain")(out IntPtr context, handle), "cuDevicePrimaryCtxRetain");
            var setContext = NativeLoader.Function<SetContextFn>(cuda, "cuCtxSetCurrent");
            backend = new NcclBackend(owner, device, nccl, context, setContext);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or CollectiveException)
        {
            failure = ex.Message;
        }

        // Every rank learns whether every other one has NCCL, so that all fail together, naming the ranks that lack it.
        var all = owner.AllGather(Encoding.UTF8.GetBytes(failure), "load NCCL");
        for (int r = 0; r < all.Length; r++)
        {
            if (all[r].Length > 0)
            {
                throw new CollectiveException($"Rank {r}: {Encoding.UTF8.GetString(all[r])}", new[] { r });
            }
        }

        var id = default(UniqueId);
        if (owner.IsRoot)
        {
            backend!.Check(NativeLoader.Function<UniqueIdFn>(nccl, "ncclGetUniqueId")(out id), "ncclGetUniqueId");
        }

        byte[] bytes = owner.BroadcastBytes(owner.IsRoot ? MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref id, 1)).ToArray() : null, 0, "broadcast the NCCL unique id");
        id = MemoryMarshal.Read<UniqueId>(bytes);
        backend!.SetDevice();
        backend.Check(NativeLoader.Function<InitRankFn>(nccl, "ncclCommInitRank")(out backend.comm, owner.WorldSize, id, owner.Rank), "ncclCommInitRank");
        return backend;
    }

    public void AllReduce(Tensor tensor, ReduceOperation operation)
    {
        var (pointer, count, type) = Memory(tensor);
        SetDevice();
        Check(allReduce(pointer, pointer, (UIntPtr)(ulong)count, type, NcclSum, comm, IntPtr.Zero), "ncclAllReduce");
        if (operation == ReduceOperation.Average)
        {
            using var divisor = ((double)owner.WorldSize).ToScalar();
            using var noGrad = no_grad();
            tensor.div_(divisor);
        }

        Wait($"the NCCL all-reduce of {count} values");
    }

    public void Broadcast(Tensor tensor, int root)
    {
        var (pointer, count, type) = Memory(tensor);
        SetDevice();
        Check(broadcast(pointer, pointer, (UIntPtr)(ulong)count, type, root, comm, IntPtr.Zero), "ncclBroadcast");
        Wait($"the NCCL broadcast of {count} values from rank {root}");
    }

    public void Dispose()
    {
        if (comm != IntPtr.Zero)
        {
            SetDevice();
            destroy(comm);
            comm = IntPtr.Zero;
        }
    }

    private static void CheckCuda(int code, string call)
    {
        if (code != 0)
        {
            throw new CollectiveException(string.Create(CultureInfo.InvariantCulture, $"{call} failed with CUDA driver error {code}."));
        }
    }

    private void SetDevice() => CheckCuda(setContext(context), "cuCtxSetCurrent");

    private void Wait(string what)
    {
        using var watchdog = new Watchdog(owner.Timeout, () => string.Create(
            CultureInfo.InvariantCulture,
            $"error: rank {owner.Rank} of {owner.WorldSize}: {what} did not finish within {owner.Timeout.TotalSeconds:0} s — another rank died or hung. Stopping the job (MPI_Abort)."), owner);
        torch.cuda.synchronize(device);
    }

    private (IntPtr Pointer, long Count, int Type) Memory(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_contiguous() || tensor.device.type != DeviceType.CUDA || (tensor.device.index < 0 ? 0 : tensor.device.index) != DeviceIndex)
        {
            throw new ArgumentException($"NCCL collectives need a contiguous tensor on cuda:{DeviceIndex}; got one on {tensor.device}.", nameof(tensor));
        }

        int type = tensor.dtype switch
        {
            ScalarType.Float32 => NcclFloat32,
            ScalarType.Float64 => NcclFloat64,
            ScalarType.Byte => NcclUint8,
            _ => throw new ArgumentException($"Collectives take float32, float64 or byte tensors; got {tensor.dtype}.", nameof(tensor)),
        };
        return (TensorMemory.Address(tensor), tensor.numel(), type);
    }

    private void Check(int code, string call)
    {
        if (code != 0)
        {
            string text = Marshal.PtrToStringAnsi(errorString(code)) ?? "unknown error";
            throw new CollectiveException(string.Create(CultureInfo.InvariantCulture, $"Rank {owner.Rank}: {call} failed: {text} (NCCL error {code})."));
        }
    }

    /// <summary>ncclUniqueId: 128 opaque bytes, passed by value.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct UniqueId
    {
#pragma warning disable CS0169, IDE0051, IDE0044 // Opaque bytes, only copied.
        private ulong b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15;
#pragma warning restore CS0169, IDE0051, IDE0044
    }
}
