using System;
using System.IO;
using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Core.IO;

/// <summary>
/// Replaces a file so that a reader (or a process started after a crash) sees either the old file or the new one, never a
/// part of one: the new content is written to a temporary file in the same folder and flushed to the disk, then renamed
/// over the destination (an atomic replace on one file system), then the folder itself is flushed so that the rename
/// survives a power cut.
/// </summary>
/// <remarks>
/// Against a killed process (SIGKILL, a crash) the rename alone suffices: the kernel keeps written pages. Against a power
/// cut or a kernel crash, the data must reach the disk before the rename (otherwise the journal may replay a rename that
/// points at an empty file — the ext4 "zero-length file" failure), hence the flush of the temporary file; the folder flush
/// makes the new name durable. On Windows, NTFS journals the rename and .NET offers no folder handle to flush.
/// </remarks>
internal static class AtomicFile
{
    /// <summary>Flushes a written file's data and metadata to the disk (fsync).</summary>
    public static void FlushToDisk(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Renames <paramref name="temporary"/> (already flushed) over <paramref name="destination"/> and flushes the folder.</summary>
    public static void Replace(string temporary, string destination)
    {
        File.Move(temporary, destination, overwrite: true);
        FlushFolder(Path.GetDirectoryName(Path.GetFullPath(destination))!);
    }

    /// <summary>Flushes a folder's entries (the names in it) to the disk; best effort, and only where POSIX allows it.</summary>
    public static void FlushFolder(string folder)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            if (OperatingSystem.IsLinux())
            {
                int descriptor = Glibc.open(folder, 0 /* O_RDONLY */);
                if (descriptor >= 0)
                {
                    _ = Glibc.fsync(descriptor);
                    _ = Glibc.close(descriptor);
                }
            }
            else
            {
                int descriptor = Libc.open(folder, 0 /* O_RDONLY */);
                if (descriptor >= 0)
                {
                    _ = Libc.fsync(descriptor);
                    _ = Libc.close(descriptor);
                }
            }
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // No C library under this name: the rename is still atomic, only its durability after a power cut is not forced.
        }
    }

    // glibc's soname (on musl this fails to load and the folder is not flushed).
    private static class Glibc
    {
        [DllImport("libc.so.6", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc.so.6", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int fsync(int descriptor);

        [DllImport("libc.so.6", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int close(int descriptor);
    }

    // macOS and the BSDs: /usr/lib/libc.dylib.
    private static class Libc
    {
        [DllImport("libc", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int fsync(int descriptor);

        [DllImport("libc", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int close(int descriptor);
    }
}
