using System;
using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// The C API of an MPI library, bound when it loads. Open MPI's handles are the addresses of global objects
/// (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_float</c>, <c>ompi_mpi_op_sum</c>…), looked up with
/// <see cref="NativeLibrary.GetExport"/>; MPICH's (and its derivatives': Intel MPI, MVAPICH) are fixed 32-bit integers from
/// its <c>mpi.h</c>, passed in a pointer-sized argument (the callee reads the low 32 bits). Requests are given 8 bytes and
/// statuses 64, enough for both layouts.
/// </summary>
internal sealed class MpiLibrary
{
    /// <summary>The environment variable that names the MPI library to load (a file name or path; several separated by ':').</summary>
    public const string LibraryVariable = "MLDIFFUSION_MPI_LIBRARY";

    public const string InstallHint = "install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) or MPICH (apt-get install mpich), "
        + "or set " + LibraryVariable + " to the path of libmpi.so";

    private static readonly string[] DefaultCandidates = { "libmpi.so.40", "libmpi.so.12", "libmpi.so", "libmpich.so.12" };

    private MpiLibrary(IntPtr handle, string name)
    {
        Name = name;
        IsOpenMpi = NativeLoader.Symbol(handle, "ompi_mpi_comm_world") != IntPtr.Zero;
        if (IsOpenMpi)
        {
            CommWorld = Required(handle, "ompi_mpi_comm_world");
            Byte = Required(handle, "ompi_mpi_byte");
            Float = Required(handle, "ompi_mpi_float");
            Double = Required(handle, "ompi_mpi_double");
            Sum = Required(handle, "ompi_mpi_op_sum");
            ErrorsReturn = Required(handle, "ompi_mpi_errors_return");
            InPlace = 1;
        }
        else
        {
            // MPICH's mpi.h.
            CommWorld = 0x44000000;
            Byte = 0x4c00010d;
            Float = 0x4c00040a;
            Double = 0x4c00080b;
            Sum = 0x58000003;
            ErrorsReturn = 0x54000001;
            InPlace = -1;
        }

        Initialized = NativeLoader.Function<IntFlag>(handle, "MPI_Initialized");
        Finalized = NativeLoader.Function<IntFlag>(handle, "MPI_Finalized");
        InitThread = NativeLoader.Function<InitThreadFn>(handle, "MPI_Init_thread");
        Finalize = NativeLoader.Function<NoArgs>(handle, "MPI_Finalize");
        CommRank = NativeLoader.Function<CommInt>(handle, "MPI_Comm_rank");
        CommSize = NativeLoader.Function<CommInt>(handle, "MPI_Comm_size");
        SetErrorHandler = NativeLoader.Function<CommHandle>(handle, "MPI_Comm_set_errhandler");
        AllReduce = NativeLoader.Function<AllReduceFn>(handle, "MPI_Allreduce");
        Bcast = NativeLoader.Function<BcastFn>(handle, "MPI_Bcast");
        Isend = NativeLoader.Function<PointToPoint>(handle, "MPI_Isend");
        Irecv = NativeLoader.Function<PointToPoint>(handle, "MPI_Irecv");
        Test = NativeLoader.Function<TestFn>(handle, "MPI_Test");
        Cancel = NativeLoader.Function<RequestFn>(handle, "MPI_Cancel");
        RequestFree = NativeLoader.Function<RequestFn>(handle, "MPI_Request_free");
        AbortJob = NativeLoader.Function<AbortFn>(handle, "MPI_Abort");
        LibraryVersion = NativeLoader.Function<StringFn>(handle, "MPI_Get_library_version");
        ErrorString = NativeLoader.Function<ErrorStringFn>(handle, "MPI_Error_string");
    }

    public delegate int IntFlag(out int flag);

    public delegate int InitThreadFn(IntPtr argc, IntPtr argv, int required, out int provided);

    public delegate int NoArgs();

    public delegate int CommInt(IntPtr comm, out int value);

    public delegate int CommHandle(IntPtr comm, IntPtr handle);

    public delegate int AllReduceFn(IntPtr send, IntPtr receive, int count, IntPtr type, IntPtr op, IntPtr comm);

    public delegate int BcastFn(IntPtr buffer, int count, IntPtr type, int root, IntPtr comm);

    public delegate int PointToPoint(IntPtr buffer, int count, IntPtr type, int peer, int tag, IntPtr comm, IntPtr request);

    public delegate int TestFn(IntPtr request, out int flag, IntPtr status);

    public delegate int RequestFn(IntPtr request);

    public delegate int AbortFn(IntPtr comm, int code);

    public delegate int StringFn(IntPtr buffer, out int length);

    public delegate int ErrorStringFn(int code, IntPtr buffer, out int length);

    public string Name { get; }

    public bool IsOpenMpi { get; }

    public IntPtr CommWorld { get; }

    public IntPtr Byte { get; }

    public IntPtr Float { get; }

    public IntPtr Double { get; }

    public IntPtr Sum { get; }

    public IntPtr ErrorsReturn { get; }

    public IntPtr InPlace { get; }

    public IntFlag Initialized { get; }

    public IntFlag Finalized { get; }

    public InitThreadFn InitThread { get; }

    public NoArgs Finalize { get; }

    public CommInt CommRank { get; }

    public CommInt CommSize { get; }

    public CommHandle SetErrorHandler { get; }

    public AllReduceFn AllReduce { get; }

    public BcastFn Bcast { get; }

    public PointToPoint Isend { get; }

    public PointToPoint Irecv { get; }

    public TestFn Test { get; }

    public RequestFn Cancel { get; }

    public RequestFn RequestFree { get; }

    public AbortFn AbortJob { get; }

    public StringFn LibraryVersion { get; }

    public ErrorStringFn ErrorString { get; }

    /// <summary>Loads the MPI library; throws one line naming what to install when there is none.</summary>
    /// <param name="why">Why MPI is needed (e.g. "the environment says this is rank 1 of 2 (OMPI_COMM_WORLD_SIZE)").</param>
    public static MpiLibrary Load(string why)
    {
        string? configured = Environment.GetEnvironmentVariable(LibraryVariable);
        string[] candidates = string.IsNullOrWhiteSpace(configured) ? DefaultCandidates : configured.Split(':', StringSplitOptions.RemoveEmptyEntries);
        var (handle, name) = NativeLoader.TryLoad(candidates);
        if (handle == IntPtr.Zero || name is null)
        {
            throw new DllNotFoundException($"MPI is needed ({why}) but no MPI library could be loaded (tried {string.Join(", ", candidates)}): {InstallHint}.");
        }

        try
        {
            return new MpiLibrary(handle, name);
        }
        catch (EntryPointNotFoundException ex)
        {
            throw new DllNotFoundException($"'{name}' is not a usable MPI library ({ex.Message}): {InstallHint}.", ex);
        }
    }

    /// <summary>The library's own version line (MPI_Get_library_version), first line only.</summary>
    public string Version()
    {
        IntPtr buffer = Marshal.AllocHGlobal(8192);
        try
        {
            return LibraryVersion(buffer, out int length) == 0
                ? (Marshal.PtrToStringAnsi(buffer, Math.Clamp(length, 0, 8191)) ?? Name).Split('\n')[0].Split(',')[0].Trim()
                : Name;
        }
        finally
        {
            Marshal.FreeHGlobal(buffer);
        }
    }

    /// <summary>Throws <see cref="CollectiveException"/> with MPI's text for a non-zero return code.</summary>
    public void Check(int code, string call)
    {
        if (code == 0)
        {
            return;
        }

        string text = code.ToString(System.Globalization.CultureInfo.InvariantCulture);
        IntPtr buffer = Marshal.AllocHGlobal(1024);
        try
        {
            if (ErrorString(code, buffer, out int length) == 0)
            {
                text = Marshal.PtrToStringAnsi(buffer, Math.Clamp(length, 0, 1023)) ?? text;
            }
        }
        finally
        {
            Marshal.FreeHGlobal(buffer);
        }

        throw new CollectiveException($"{call} failed: {text}");
    }

    private static IntPtr Required(IntPtr handle, string symbol)
    {
        IntPtr address = NativeLoader.Symbol(handle, symbol);
        return address != IntPtr.Zero ? address : throw new EntryPointNotFoundException($"the symbol '{symbol}' is missing");
    }
}
