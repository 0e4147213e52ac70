using System;
using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// Loads the native engines the collective layer binds to (libmpi, libnccl, libcuda) and resolves their exports. On Linux
/// a library is opened with <c>RTLD_GLOBAL</c>: Open MPI loads its transports as plug-ins that look for libmpi's symbols in
/// the global scope (what mpi4py does too); elsewhere <see cref="NativeLibrary"/> is used as is.
/// </summary>
internal static class NativeLoader
{
    private const int RtldNow = 2;
    private const int RtldGlobal = 0x100;

    /// <summary>Opens the first of <paramref name="candidates"/> that loads; returns its handle and name, or (0, null).</summary>
    public static (IntPtr Handle, string? Name) TryLoad(params string[] candidates)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        foreach (string name in candidates)
        {
            IntPtr handle = IntPtr.Zero;
            if (OperatingSystem.IsLinux())
            {
                try
                {
                    handle = DlOpen(name, RtldNow | RtldGlobal);
                }
                catch (DllNotFoundException)
                {
                    handle = IntPtr.Zero;
                }
                catch (EntryPointNotFoundException)
                {
                    handle = IntPtr.Zero;
                }
            }

            if (handle == IntPtr.Zero && !NativeLibrary.TryLoad(name, out handle))
            {
                continue;
            }

            return (handle, name);
        }

        return (IntPtr.Zero, null);
    }

    /// <summary>An export as a delegate; throws <see cref="EntryPointNotFoundException"/> naming it when missing.</summary>
    public static T Function<T>(IntPtr library, string name)
        where T : Delegate => Marshal.GetDelegateForFunctionPointer<T>(NativeLibrary.GetExport(library, name));

    /// <summary>The address of an exported variable (an Open MPI predefined handle), or 0.</summary>
    public static IntPtr Symbol(IntPtr library, string name) => NativeLibrary.TryGetExport(library, name, out IntPtr address) ? address : IntPtr.Zero;

    /// <summary>Ends the process at once, without running finalizers or exit handlers (a hung collective cannot be unwound).</summary>
    public static void ExitNow(int code)
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                ExitImmediately(code);
            }
            catch (DllNotFoundException)
            {
            }
        }

        Environment.FailFast($"exit {code}");
    }

    [DllImport("libc.so.6", EntryPoint = "dlopen", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern IntPtr DlOpen(string file, int mode);

    [DllImport("libc.so.6", EntryPoint = "_exit")]
    private static extern void ExitImmediately(int status);
}
