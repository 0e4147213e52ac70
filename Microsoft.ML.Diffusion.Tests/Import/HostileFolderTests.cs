using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Threading.Tasks;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Import;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Import;

/// <summary>
/// Issue #23, the image folder: careless and hostile files. Each case asserts the exception's type, that its message names
/// the file (and never says "Invalid path"), that it came within a time bound, and that the folder is byte-identical after.
/// Unix only: links, FIFOs and file modes are what it tries.
/// </summary>
[TestClass]
[UnsupportedOSPlatform("windows")]
public sealed class HostileFolderTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60); // generous: the machine may be loaded

    private string directory = null!;

    [TestInitialize]
    public void CreateFolder() => directory = Directory.CreateTempSubdirectory("mldiffusion-hostile-").FullName;

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(directory, recursive: true);

    [TestMethod]
    public void ValidPngJpegAndBmpPassAndLoad()
    {
        WritePng("a.png", 12, 10);
        WriteJpeg("b.jpg", 16, 8);
        WriteBmp("c.bmp", 7, 5);
        var listing = ImageFolder.ListImages(directory);
        CollectionAssert.AreEqual(new[] { "a.png", "b.jpg", "c.bmp" }, listing.Files.Select(Path.GetFileName).ToArray());
        var view = ImageFolder.Load(new MLContext(), directory, imageSize: 4);
        Assert.AreEqual(3, view.GetColumn<VBuffer<float>>("Pixels").Count());
    }

    [TestMethod]
    public void APngHeaderBombIsRefusedBeforeDecoding()
    {
        WritePng("ok.png", 8, 8);
        string bomb = Path.Combine(directory, "bomb.png");
        WriteImage("bomb.png", 8, 8, noise: false);
        SetPngSize(bomb, 60_000, 60_000);
        Assert.IsLessThan(1000L, new FileInfo(bomb).Length, "a small file that claims 3.6 gigapixels");
        var ex = RefusedWithinMemory<InvalidDataException>(bomb);
        StringAssert.Contains(ex.Message, "60000");
        StringAssert.Contains(ex.Message, "16384");

        // Within each side's limit, over the pixel limit: 16,384 × 8,192 = 2²⁷ pixels.
        SetPngSize(bomb, 16_384, 8_192);
        ex = RefusedWithinMemory<InvalidDataException>(bomb);
        StringAssert.Contains(ex.Message, "134217728");
        StringAssert.Contains(ex.Message, ImageFolder.MaxImagePixels.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [TestMethod]
    public void JpegAndBmpHeaderBombsAreRefusedBeforeDecoding()
    {
        WritePng("ok.png", 8, 8);
        string jpeg = Path.Combine(directory, "bomb.jpg");
        WriteJpeg("bomb.jpg", 8, 8);
        byte[] bytes = File.ReadAllBytes(jpeg);
        int sof = FindStartOfFrame(bytes);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(sof + 5), 65_000); // height
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(sof + 7), 65_000); // width
        File.WriteAllBytes(jpeg, bytes);
        StringAssert.Contains(RefusedWithinMemory<InvalidDataException>(jpeg).Message, "65000");
        File.Delete(jpeg);

        string bmp = Path.Combine(directory, "bomb.bmp");
        WriteBmp("bomb.bmp", 4, 4);
        bytes = File.ReadAllBytes(bmp);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(18), 50_000);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(22), -50_000); // top-down
        File.WriteAllBytes(bmp, bytes);
        StringAssert.Contains(RefusedWithinMemory<InvalidDataException>(bmp).Message, "50000");
    }

    [TestMethod]
    public void ASymlinkLoopAndABackLinkVisitEachFileOnce()
    {
        WritePng("a.png", 8, 8);
        WritePng("sub/b.png", 8, 8);
        Directory.CreateSymbolicLink(Path.Combine(directory, "sub", "back"), directory);          // a back-link to the top
        Directory.CreateSymbolicLink(Path.Combine(directory, "self"), ".");                        // a link to its own folder
        Directory.CreateSymbolicLink(Path.Combine(directory, "loop1"), Path.Combine(directory, "loop2"));
        Directory.CreateSymbolicLink(Path.Combine(directory, "loop2"), Path.Combine(directory, "loop1")); // a loop of links
        File.CreateSymbolicLink(Path.Combine(directory, "alias.png"), Path.Combine(directory, "sub", "b.png"));
        var before = Snapshot();
        var listing = Timed(() => ImageFolder.ListImages(directory));
        CollectionAssert.AreEqual(new[] { Path.Combine(directory, "a.png"), Path.Combine(directory, "sub", "b.png") }, listing.Files.ToArray(), "each real file once");
        CollectionAssert.AreEqual(new[] { Path.Combine(directory, "alias.png") }, listing.Duplicates.ToArray());
        CollectionAssert.AreEqual(new[] { "self", "back" }, listing.LinksNotFollowed.Select(Path.GetFileName).ToArray());
        var view = Timed(() => ImageFolder.Load(new MLContext(), directory, imageSize: 4));
        Assert.AreEqual(2, view.GetColumn<VBuffer<float>>("Pixels").Count());
        AssertUnchanged(before);
    }

    [TestMethod]
    public void ALoopOfFileLinksIsRefused()
    {
        WritePng("ok.png", 8, 8);
        File.CreateSymbolicLink(Path.Combine(directory, "x.png"), Path.Combine(directory, "y.png"));
        File.CreateSymbolicLink(Path.Combine(directory, "y.png"), Path.Combine(directory, "x.png"));
        Refused<InvalidDataException>(Path.Combine(directory, "x.png"));
    }

    [TestMethod]
    public void AFifoNamedPngIsRefusedWithoutOpeningIt()
    {
        if (OperatingSystem.IsWindows())
        {
            Assert.Inconclusive("No FIFOs on Windows.");
        }

        WritePng("ok.png", 8, 8);
        string fifo = Path.Combine(directory, "pipe.png");
        Assert.AreEqual(0, Libc.mkfifo(fifo, 0b110_100_100), $"mkfifo failed: errno {Marshal.GetLastPInvokeError()}");
        var ex = Refused<InvalidDataException>(fifo, skipInSnapshot: fifo);
        StringAssert.Contains(ex.Message, "FIFO");
    }

    [TestMethod]
    public void TruncatedImagesAreRefused()
    {
        WritePng("ok.png", 8, 8);
        string png = Path.Combine(directory, "cut.png");
        WritePng("cut.png", 64, 64);
        Truncate(png, 100);
        StringAssert.Contains(Refused<InvalidDataException>(png).Message, "truncated PNG");
        File.Delete(png);

        WritePng("cut.png", 64, 64);
        Truncate(png, new FileInfo(png).Length - 12); // only the IEND chunk missing
        StringAssert.Contains(Refused<InvalidDataException>(png).Message, "truncated PNG");
        File.Delete(png);

        string jpeg = Path.Combine(directory, "cut.jpg");
        WriteJpeg("cut.jpg", 64, 64);
        Truncate(jpeg, new FileInfo(jpeg).Length / 2);
        StringAssert.Contains(Refused<InvalidDataException>(jpeg).Message, "truncated JPEG");
        File.Delete(jpeg);

        string bmp = Path.Combine(directory, "cut.bmp");
        WriteBmp("cut.bmp", 16, 16);
        Truncate(bmp, 300);
        StringAssert.Contains(Refused<InvalidDataException>(bmp).Message, "truncated BMP");
    }

    [TestMethod]
    public void ADamagedPngIsRefused()
    {
        WritePng("ok.png", 8, 8);
        string png = Path.Combine(directory, "flipped.png");
        WritePng("flipped.png", 32, 32);
        byte[] bytes = File.ReadAllBytes(png);
        bytes[bytes.Length - 20] ^= 0x10; // inside the last IDAT chunk's data or CRC
        File.WriteAllBytes(png, bytes);
        StringAssert.Contains(Refused<InvalidDataException>(png).Message, "damaged PNG");
    }

    [TestMethod]
    public void AnEmptyFileIsRefused()
    {
        WritePng("ok.png", 8, 8);
        string empty = Path.Combine(directory, "empty.png");
        File.WriteAllBytes(empty, Array.Empty<byte>());
        StringAssert.Contains(Refused<InvalidDataException>(empty).Message, "empty");
    }

    [TestMethod]
    public void ANonImageWithAPngNameIsRefused()
    {
        WritePng("ok.png", 8, 8);
        string text = Path.Combine(directory, "notes.png");
        File.WriteAllText(text, "these are not pixels\n");
        StringAssert.Contains(Refused<InvalidDataException>(text).Message, "not a PNG, JPEG or BMP");
    }

    [TestMethod]
    public void ABrokenLinkIsNamed()
    {
        WritePng("ok.png", 8, 8);
        string link = Path.Combine(directory, "gone.png");
        File.CreateSymbolicLink(link, Path.Combine(directory, "deleted.png"));
        StringAssert.Contains(Refused<FileNotFoundException>(link).Message, "broken link");
    }

    [TestMethod]
    public void AnUnreadableFileIsNamed()
    {
        if (OperatingSystem.IsWindows())
        {
            Assert.Inconclusive("No Unix permissions on Windows.");
        }

        WritePng("ok.png", 8, 8);
        string locked = Path.Combine(directory, "locked.png");
        WritePng("locked.png", 8, 8);
        File.SetUnixFileMode(locked, UnixFileMode.None);
        try
        {
            AssertUnreadableIsRefused(locked);
        }
        finally
        {
            File.SetUnixFileMode(locked, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    private void AssertUnreadableIsRefused(string locked)
    {
        try
        {
            using (File.OpenRead(locked))
            {
            }

            // Root (as the tests run here) reads a file of mode 000: there is nothing to refuse, and nothing is asserted.
            Assert.Inconclusive("This process reads a file of mode 000 (it runs as root, or with CAP_DAC_OVERRIDE): the unreadable case cannot be made here.");
        }
        catch (UnauthorizedAccessException)
        {
        }

        Refused<UnauthorizedAccessException>(locked);
    }

    [TestMethod]
    public void WithoutStatxLinksFifosAndEmptyFilesAreStillHandled()
    {
        // The path for systems without statx (macOS, old glibc): .NET's link resolution and a length of 0 for special files.
        WritePng("a.png", 8, 8);
        WritePng("sub/b.png", 8, 8);
        Directory.CreateSymbolicLink(Path.Combine(directory, "sub", "back"), directory);
        File.CreateSymbolicLink(Path.Combine(directory, "alias.png"), Path.Combine(directory, "sub", "b.png"));
        var listing = Timed(() => ImageFolder.ListImages(directory, useFileStatus: false));
        CollectionAssert.AreEqual(new[] { Path.Combine(directory, "a.png"), Path.Combine(directory, "sub", "b.png") }, listing.Files.ToArray());
        CollectionAssert.AreEqual(new[] { Path.Combine(directory, "alias.png") }, listing.Duplicates.ToArray());

        string fifo = Path.Combine(directory, "pipe.png");
        Assert.AreEqual(0, Libc.mkfifo(fifo, 0b110_100_100), $"mkfifo failed: errno {Marshal.GetLastPInvokeError()}");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => Timed(() => ImageFolder.ListImages(directory, useFileStatus: false))).Message, fifo);
        File.Delete(fifo);

        string gone = Path.Combine(directory, "gone.png");
        File.CreateSymbolicLink(gone, Path.Combine(directory, "deleted.png"));
        StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => Timed(() => ImageFolder.ListImages(directory, useFileStatus: false))).Message, gone);
        File.Delete(gone);

        File.CreateSymbolicLink(Path.Combine(directory, "x.png"), Path.Combine(directory, "y.png"));
        File.CreateSymbolicLink(Path.Combine(directory, "y.png"), Path.Combine(directory, "x.png"));
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => Timed(() => ImageFolder.ListImages(directory, useFileStatus: false))).Message, "x.png");
    }

    private TException Refused<TException>(string file, string? skipInSnapshot = null)
        where TException : Exception
    {
        var before = Snapshot(skipInSnapshot);
        var ex = Assert.ThrowsExactly<TException>(() => Timed(() => ImageFolder.Load(new MLContext(), directory, imageSize: 4)));
        StringAssert.Contains(ex.Message, file, "the message names the file");
        Assert.DoesNotContain("Invalid path", ex.Message);
        var again = Assert.ThrowsExactly<TException>(() => Timed(() => ImageFolder.ListImages(directory)));
        Assert.AreEqual(ex.Message, again.Message);
        AssertUnchanged(before, skipInSnapshot);
        return ex;
    }

    private TException RefusedWithinMemory<TException>(string file)
        where TException : Exception
    {
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        long peak = process.PeakWorkingSet64;
        long allocated = GC.GetTotalAllocatedBytes(precise: true);
        var clock = Stopwatch.StartNew();
        var ex = Refused<TException>(file);
        clock.Stop();
        long managed = GC.GetTotalAllocatedBytes(precise: true) - allocated;
        process.Refresh();
        long growth = process.PeakWorkingSet64 - peak;
        Assert.IsLessThan(1L << 30, growth, $"peak working set grew by {growth} bytes");
        Assert.IsLessThan(64L << 20, managed, $"managed allocations: {managed} bytes");
        Assert.IsLessThan(10_000L, clock.ElapsedMilliseconds, "refused fast");
        return ex;
    }

    private static T Timed<T>(Func<T> action)
    {
        var task = Task.Run(action);
        if (Task.WhenAny(task, Task.Delay(Bound)).GetAwaiter().GetResult() != task)
        {
            Assert.Fail($"Still running after {Bound.TotalSeconds} s (hung).");
        }

        return task.GetAwaiter().GetResult();
    }

    // Every entry of the folder (links not followed): a link's target, a regular file's bytes.
    private Dictionary<string, string> Snapshot(string? skip = null)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var pending = new Stack<string>();
        pending.Push(directory);
        while (pending.Count > 0)
        {
            foreach (var entry in new DirectoryInfo(pending.Pop()).EnumerateFileSystemInfos("*", new EnumerationOptions { AttributesToSkip = 0 }))
            {
                string key = Path.GetRelativePath(directory, entry.FullName);
                if (entry.LinkTarget is string target)
                {
                    result[key] = "link to " + target;
                }
                else if (entry is DirectoryInfo)
                {
                    result[key] = "folder";
                    pending.Push(entry.FullName);
                }
                else if (entry.FullName == skip)
                {
                    result[key] = "special";
                }
                else
                {
                    var mode = File.GetUnixFileMode(entry.FullName);
                    File.SetUnixFileMode(entry.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                    result[key] = $"{mode}: {Convert.ToHexString(File.ReadAllBytes(entry.FullName))}";
                    File.SetUnixFileMode(entry.FullName, mode);
                }
            }
        }

        return result;
    }

    private void AssertUnchanged(Dictionary<string, string> before, string? skip = null)
    {
        var after = Snapshot(skip);
        CollectionAssert.AreEquivalent(before.Keys.ToArray(), after.Keys.ToArray(), "the same entries");
        foreach (var (key, value) in before)
        {
            Assert.AreEqual(value, after[key], $"{key} is unchanged");
        }
    }

    private void WritePng(string name, int width, int height) => WriteImage(name, width, height);

    private void WriteJpeg(string name, int width, int height) => WriteImage(name, width, height);

    private void WriteImage(string name, int width, int height, bool noise = true)
    {
        string path = Path.Combine(directory, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var random = new Random(width * 1000 + height);
        var bgra = new byte[width * height * 4];
        if (noise)
        {
            random.NextBytes(bgra);
        }

        for (int i = 3; i < bgra.Length; i += 4)
        {
            bgra[i] = 255;
        }

        using var image = MLImage.CreateFromPixels(width, height, MLPixelFormat.Bgra32, bgra);
        image.Save(path);
    }

    // A 24-bit uncompressed BMP (BITMAPINFOHEADER), bottom-up.
    private void WriteBmp(string name, int width, int height)
    {
        int stride = ((width * 24) + 31) / 32 * 4;
        var bytes = new byte[54 + (stride * height)];
        bytes[0] = (byte)'B';
        bytes[1] = (byte)'M';
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(2), bytes.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(10), 54);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(18), width);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(22), height);
        BinaryPrimitives.WriteInt16LittleEndian(bytes.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(bytes.AsSpan(28), 24);
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width * 3; x++)
            {
                bytes[54 + (y * stride) + x] = (byte)((x * 7) + (y * 13));
            }
        }

        File.WriteAllBytes(Path.Combine(directory, name), bytes);
    }

    // Rewrites a PNG's IHDR width and height, and its CRC, so that the file is valid but for the size it claims.
    private static void SetPngSize(string path, uint width, uint height)
    {
        byte[] bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(16), width);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(20), height);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(29), Crc32(bytes.AsSpan(12, 17)));
        File.WriteAllBytes(path, bytes);
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
            }
        }

        return ~crc;
    }

    private static int FindStartOfFrame(byte[] jpeg)
    {
        for (int i = 2; i + 1 < jpeg.Length; i++)
        {
            if (jpeg[i] == 0xFF && jpeg[i + 1] is 0xC0 or 0xC1 or 0xC2)
            {
                return i;
            }
        }

        throw new InvalidOperationException("no SOF marker in the fixture");
    }

    private static void Truncate(string path, long length)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.SetLength(length);
    }

    private static class Libc
    {
        [DllImport("libc", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int mkfifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);
    }
}
