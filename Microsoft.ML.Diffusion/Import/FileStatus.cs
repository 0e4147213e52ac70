using System;
using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>
/// What a path names, asked of the file system without opening it: Linux's <c>statx</c> (glibc 2.28+), whose structure has
/// the same layout on every architecture. Opening a FIFO blocks until a writer comes, so the type must be known first.
/// Elsewhere (or without <c>statx</c>) <see cref="TryGet"/> returns false and callers fall back to what .NET reports.
/// </summary>
internal static class FileStatus
{
    private const int AtFdCwd = -100;
    private const int StatxBasicStats = 0x7FF;
    private const int StructSize = 256;
    private static bool unavailable = !OperatingSystem.IsLinux();

    /// <summary>The kind of a file, from the type bits of its mode.</summary>
    internal enum Kind
    {
        /// <summary>A regular file.</summary>
        Regular,

        /// <summary>A directory.</summary>
        Directory,

        /// <summary>A named pipe.</summary>
        Fifo,

        /// <summary>A Unix socket.</summary>
        Socket,

        /// <summary>A character device.</summary>
        CharacterDevice,

        /// <summary>A block device.</summary>
        BlockDevice,

        /// <summary>A symbolic link (only when links are not followed).</summary>
        Link,

        /// <summary>Anything else.</summary>
        Other,
    }

    /// <summary>Asks the file system about a path, following links.</summary>
    /// <param name="path">The path.</param>
    /// <param name="kind">Its kind.</param>
    /// <param name="identity">Device and inode: equal for two paths of one file (links, hard links).</param>
    /// <param name="errno">0, or why the call failed (2 ENOENT: a broken link, 40 ELOOP: a link loop, 13 EACCES).</param>
    /// <returns>False when <c>statx</c> is not available here (the other outputs are then meaningless).</returns>
    public static bool TryGet(string path, out Kind kind, out (ulong Device, ulong Inode) identity, out int errno)
    {
        kind = Kind.Other;
        identity = default;
        errno = 0;
        if (unavailable)
        {
            return false;
        }

        var buffer = new byte[StructSize];
        int result;
        try
        {
            result = Glibc.statx(AtFdCwd, path, 0, StatxBasicStats, buffer);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            unavailable = true;
            return false;
        }

        if (result != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return true;
        }

        // struct statx: stx_mode (u16) at 28, stx_ino (u64) at 32, stx_dev_major and stx_dev_minor (u32) at 136 and 140.
        int mode = BitConverter.ToUInt16(buffer, 28);
        ulong inode = BitConverter.ToUInt64(buffer, 32);
        ulong device = ((ulong)BitConverter.ToUInt32(buffer, 136) << 32) | BitConverter.ToUInt32(buffer, 140);
        identity = (device, inode);
        kind = (mode & 0xF000) switch
        {
            0x8000 => Kind.Regular,
            0x4000 => Kind.Directory,
            0x1000 => Kind.Fifo,
            0xC000 => Kind.Socket,
            0x2000 => Kind.CharacterDevice,
            0x6000 => Kind.BlockDevice,
            0xA000 => Kind.Link,
            _ => Kind.Other,
        };
        return true;
    }

    private static class Glibc
    {
        [DllImport("libc.so.6", ExactSpelling = true, SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int statx(int directory, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mask, [Out] byte[] buffer);
    }
}
