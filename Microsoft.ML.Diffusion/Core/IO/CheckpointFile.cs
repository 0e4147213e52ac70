using System;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;

namespace Microsoft.ML.Diffusion.Core.IO;

/// <summary>
/// The checkpoint file format, apart from what a checkpoint holds: the files of a checkpoint folder, and the container
/// every checkpoint is — the magic "MLDCKPT1", an int32 format version, the content, the end marker "MLDCKEND" and
/// (format 2) the SHA-256 of every byte before it — written atomically (a temporary file flushed to the disk, renamed into
/// place, then the folder flushed) and verified before anything in it is parsed. The content is the training layer's
/// (<c>Core/Training/Checkpoint</c>).
/// </summary>
internal static class CheckpointFile
{
    /// <summary>The file extension of checkpoints.</summary>
    public const string Extension = ".ckpt";

    /// <summary>The newest format this version writes and reads; format 1 (no hash) is still read.</summary>
    public const int Version = 2;

    private const string Magic = "MLDCKPT1";
    private const string Trailer = "MLDCKEND";
    private const int HashBytes = 32;
    private const string TemporarySuffix = ".tmp";

    /// <summary>Test hook: runs after the temporary file is written and before it is renamed (simulates a crash there).</summary>
    internal static Action<string>? BeforeRename { get; set; }

    /// <summary>The checkpoint file of a step in a folder.</summary>
    public static string PathFor(string directory, int step) =>
        Path.Combine(directory, string.Format(CultureInfo.InvariantCulture, "checkpoint-{0:D8}{1}", step, Extension));

    /// <summary>The newest complete checkpoint in the folder (temporary files are ignored), or null.</summary>
    public static string? FindLatest(string directory) => Directory.Exists(directory) ? List(directory).LastOrDefault() : null;

    /// <summary>
    /// The newest checkpoint of the folder whose container is intact (magic, format, SHA-256), or null when the folder
    /// holds none. Newer damaged ones are passed to <paramref name="damaged"/> with the reason, newest first.
    /// </summary>
    /// <exception cref="InvalidDataException">
    /// The folder holds checkpoints and every one is damaged: the message names them and what to do (starting again from
    /// step 0 silently would throw the run away).
    /// </exception>
    public static string? FindLatestIntact(string directory, Action<string, string>? damaged)
    {
        if (!Directory.Exists(directory))
        {
            return null;
        }

        string[] all = List(directory);
        string? firstReason = null;
        foreach (string path in Enumerable.Reverse(all))
        {
            try
            {
                using var stream = File.OpenRead(path);
                using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
                _ = OpenVerified(reader, stream, path);
                return path;
            }
            catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException)
            {
                firstReason ??= ex.Message;
                damaged?.Invoke(path, ex.Message);
            }
        }

        return all.Length == 0
            ? null
            : throw new InvalidDataException(
                $"{firstReason} No intact checkpoint is left in '{directory}' ({string.Join(", ", all.Select(Path.GetFileName))}): "
                + "restore them from a copy, or move them away to start the run again from step 0.");
    }

    /// <summary>
    /// Writes a checkpoint atomically: the container around <paramref name="content"/>, then keeps the newest
    /// <paramref name="keep"/> checkpoints of the folder and removes temporary files that killed runs left. A write that
    /// fails (a full disk) removes its temporary file before the exception goes on.
    /// </summary>
    /// <param name="directory">The checkpoint folder.</param>
    /// <param name="step">The step the checkpoint is taken at.</param>
    /// <param name="keep">How many checkpoints to keep.</param>
    /// <param name="content">Writes the content.</param>
    /// <param name="createDirectory">
    /// Whether to create the folder when it is missing; false during a run, where a missing folder means that it was
    /// deleted or moved meanwhile (then <see cref="DirectoryNotFoundException"/> naming it).
    /// </param>
    public static void Write(string directory, int step, int keep, Action<BinaryWriter> content, bool createDirectory = true)
    {
        if (createDirectory)
        {
            Directory.CreateDirectory(directory);
        }
        else if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException(
                $"The checkpoint folder '{directory}' disappeared during the run (deleted or moved): stopping rather than training on without checkpoints. "
                + "Put it back and resume, or start again in a new output folder.");
        }

        string path = PathFor(directory, step);
        string temp = path + TemporarySuffix;
        try
        {
            using var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None);
            using (var hashing = new HashingStream(file))
            using (var writer = new BinaryWriter(hashing, System.Text.Encoding.UTF8, leaveOpen: true))
            {
                writer.Write(System.Text.Encoding.ASCII.GetBytes(Magic));
                writer.Write(Version);
                content(writer);
                writer.Write(System.Text.Encoding.ASCII.GetBytes(Trailer));
                writer.Flush();
                file.Write(hashing.Hash());
            }

            file.Flush(flushToDisk: true);
        }
        catch
        {
            DeleteQuietly(temp);
            throw;
        }

        // The test hook simulates a crash here (no clean-up runs after a crash), so it stays outside the clean-up.
        BeforeRename?.Invoke(temp);
        try
        {
            AtomicFile.Replace(temp, path);
        }
        catch
        {
            DeleteQuietly(temp);
            throw;
        }

        foreach (string old in List(directory).SkipLast(Math.Max(1, keep)))
        {
            File.Delete(old);
        }

        // Temporary files left by a run that was killed while writing: never read, so only clutter.
        foreach (string stale in Directory.GetFiles(directory, "checkpoint-*" + Extension + TemporarySuffix))
        {
            File.Delete(stale);
        }
    }

    /// <summary>
    /// Checks the magic, the format and (format 2) the SHA-256; leaves the stream at the start of the content and returns
    /// where the content (with its end marker) ends.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a checkpoint, of a newer format, damaged or incomplete.</exception>
    public static long OpenVerified(BinaryReader reader, Stream stream, string path)
    {
        if (stream.Length < Magic.Length + 4 || System.Text.Encoding.ASCII.GetString(reader.ReadBytes(Magic.Length)) != Magic)
        {
            throw new InvalidDataException($"Checkpoint '{path}' is not a Microsoft.ML.Diffusion checkpoint.");
        }

        int version = reader.ReadInt32();
        if (version is < 1 or > Version)
        {
            throw new InvalidDataException($"Checkpoint '{path}' has format {version}; this version reads formats 1 to {Version}.");
        }

        long end = stream.Length;
        if (version >= 2)
        {
            end -= HashBytes;
            if (end < stream.Position + Trailer.Length || !Verify(stream, end))
            {
                throw new InvalidDataException($"Checkpoint '{path}' is damaged or incomplete: its SHA-256 does not match its content.");
            }

            stream.Position = Magic.Length + 4;
        }

        return end;
    }

    /// <summary>Whether exactly the end marker's bytes are left before <paramref name="end"/> (no optional section follows).</summary>
    public static bool AtTrailer(Stream stream, long end) => end - stream.Position == Trailer.Length;

    /// <summary>Whether the end marker follows and closes the content exactly at <paramref name="end"/>.</summary>
    public static bool ReadTrailer(BinaryReader reader, Stream stream, long end) =>
        System.Text.Encoding.ASCII.GetString(reader.ReadBytes(Trailer.Length)) == Trailer && stream.Position == end;

    private static void DeleteQuietly(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The original failure is the one to report.
        }
    }

    private static string[] List(string directory) =>
        Directory.GetFiles(directory, "checkpoint-*" + Extension)
            .Where(f => f.EndsWith(Extension, StringComparison.Ordinal))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToArray();

    private static bool Verify(Stream stream, long end)
    {
        stream.Position = 0;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 20];
        long remaining = end;
        while (remaining > 0)
        {
            int read = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, remaining));
            if (read == 0)
            {
                return false;
            }

            hash.AppendData(buffer, 0, read);
            remaining -= read;
        }

        byte[] expected = new byte[HashBytes];
        stream.ReadExactly(expected);
        return hash.GetHashAndReset().AsSpan().SequenceEqual(expected);
    }

    /// <summary>Passes writes through to a stream and hashes them.</summary>
    private sealed class HashingStream : Stream
    {
        private readonly Stream inner;
        private readonly IncrementalHash hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public HashingStream(Stream inner) => this.inner = inner;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public byte[] Hash() => hash.GetHashAndReset();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            hash.AppendData(buffer);
            inner.Write(buffer);
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                hash.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
