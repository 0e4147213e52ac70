using System;
using System.Globalization;
using System.IO;
using System.Linq;

namespace DiffusionSamples;

/// <summary>
/// One run per output folder: an exclusive operating-system lock on OUT/.lock, held for the whole run and released by
/// the operating system when the process ends in any way (exit, exception, Ctrl-C, kill -9), so that no stale lock is
/// ever left behind. A second process on the same folder fails at once, before it writes anything there, with a message
/// that names the folder and the process that holds it. The lock file holds that process's id (<c>cat OUT/.lock</c>).
/// </summary>
/// <remarks>
/// .NET takes the lock with <c>flock(LOCK_EX | LOCK_NB)</c> on Unix for <see cref="FileShare.None"/> and with a sharing
/// mode on Windows. The file is never deleted while the folder is in use: deleting a lock file lets a process that had
/// opened the old file and a process that creates a new one both hold "the" lock. When this run created the folder and
/// leaves nothing in it (an early failure), the folder is removed again.
/// </remarks>
internal sealed class RunFolder : IDisposable
{
    /// <summary>The lock file's name in the output folder.</summary>
    public const string LockName = ".lock";

    private readonly FileStream lockFile;
    private readonly bool created;

    private RunFolder(string path, FileStream lockFile, bool created)
    {
        Path = path;
        this.lockFile = lockFile;
        this.created = created;
    }

    /// <summary>Gets the output folder's full path.</summary>
    public string Path { get; }

    /// <summary>Creates the folder when needed and takes its lock.</summary>
    /// <param name="folder">The output folder.</param>
    /// <returns>The held folder; dispose it at the end of the run.</returns>
    /// <exception cref="IOException">Another process holds the folder (the message names the folder and, where it can, the process).</exception>
    public static RunFolder Acquire(string folder)
    {
        string full = System.IO.Path.GetFullPath(folder);
        bool created = !Directory.Exists(full);
        Directory.CreateDirectory(full);
        string lockPath = System.IO.Path.Combine(full, LockName);
        FileStream stream;
        try
        {
            // OpenOrCreate, not Create: the open must not truncate the holder's file before the lock is refused.
            stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex) when (ex is not FileNotFoundException and not DirectoryNotFoundException and not PathTooLongException)
        {
            string holder = Holder(lockPath) is int pid ? string.Create(CultureInfo.InvariantCulture, $"process {pid}") : $"its process id is in {LockName}";
            throw new IOException($"The output folder '{full}' is in use by another run ({holder}): wait for it to end, or choose another --out.", ex);
        }

        try
        {
            stream.SetLength(0);
            using (var writer = new StreamWriter(stream, leaveOpen: true))
            {
                writer.WriteLine(Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
            }

            stream.Flush();
        }
        catch
        {
            stream.Dispose();
            throw;
        }

        return new RunFolder(full, stream, created);
    }

    /// <summary>Releases the lock; removes the folder when this run created it and left nothing in it.</summary>
    public void Dispose()
    {
        if (created && IsEmptyButForTheLock(Path))
        {
            try
            {
                foreach (string empty in Directory.GetDirectories(Path))
                {
                    Directory.Delete(empty, recursive: false);
                }

                File.Delete(System.IO.Path.Combine(Path, LockName));
                lockFile.Dispose();
                Directory.Delete(Path, recursive: false);
            }
            catch (IOException)
            {
                // Something appeared meanwhile: leave the folder as it is.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        lockFile.Dispose();
    }

    private static bool IsEmptyButForTheLock(string path)
    {
        try
        {
            return Directory.GetFiles(path).All(f => System.IO.Path.GetFileName(f) == LockName)
                && Directory.GetDirectories(path).All(d => !Directory.EnumerateFileSystemEntries(d).Any());
        }
        catch (IOException)
        {
            return false;
        }
    }

    // The id of the process that holds the lock: on Linux, the processes /proc/locks lists with an exclusive flock whose
    // open files include the lock file (the file itself cannot be read: .NET's reads take a shared flock, refused here).
    private static int? Holder(string lockPath)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        try
        {
            foreach (string line in File.ReadLines("/proc/locks"))
            {
                string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                int at = Array.IndexOf(f, "FLOCK");
                if (at < 0 || f.Length < at + 4 || f[at + 2] != "WRITE" || !int.TryParse(f[at + 3], NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
                {
                    continue;
                }

                string fds = $"/proc/{pid}/fd";
                if (!Directory.Exists(fds))
                {
                    continue;
                }

                foreach (string fd in Directory.EnumerateFileSystemEntries(fds))
                {
                    if (new FileInfo(fd).LinkTarget == lockPath)
                    {
                        return pid;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }
}
