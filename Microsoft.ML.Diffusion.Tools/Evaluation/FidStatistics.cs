using System;
using System.Buffers.Binary;
using System.Globalization;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text;
using Microsoft.ML.Diffusion.Core.IO;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>
/// The Gaussian that FID compares: the mean μ and covariance Σ (unbiased, N − 1, as numpy's <c>np.cov</c>) of feature
/// rows in double precision, with the number of samples it was computed from. Saved and read as pytorch-fid's reference
/// statistics: an <c>.npz</c> (numpy's zip of <c>.npy</c> files) with float64 arrays <c>mu</c> (D) and <c>sigma</c>
/// (D×D), so a file written here is read by <c>python -m pytorch_fid</c> and the statistics files it (or TTUR) writes are
/// read here.
/// </summary>
/// <remarks>
/// We add a third array, <c>count</c> (int64, one element), that pytorch-fid ignores; a file without it (any of
/// pytorch-fid's) reads with <see cref="Count"/> = 0, meaning "not recorded". Arrays stored as float32 are widened to
/// float64; Fortran order is honoured. Files are written whole to a temporary file and renamed over the destination.
/// </remarks>
public sealed class FidStatistics
{
    private const int ArrayAlign = 64;
    private const int GrowthAxisDigits = 21; // numpy ≥ 1.23 leaves room in the header to grow the first axis in place

    private FidStatistics(double[] mean, double[] covariance, long count)
    {
        Mean = mean;
        Covariance = covariance;
        Count = count;
    }

    /// <summary>Gets the feature size D.</summary>
    public int Dimension => Mean.Length;

    /// <summary>Gets μ (D).</summary>
    public double[] Mean { get; }

    /// <summary>Gets Σ, row-major (D×D).</summary>
    public double[] Covariance { get; }

    /// <summary>Gets the number of samples, or 0 where the file did not record it.</summary>
    public long Count { get; }

    /// <summary>The statistics of feature rows.</summary>
    /// <param name="features">N×D features, N ≥ 2.</param>
    /// <returns>μ and Σ in double precision.</returns>
    public static FidStatistics FromFeatures(Tensor features)
    {
        var (mean, covariance) = FrechetDistance.Statistics(features);
        using (mean)
        using (covariance)
        {
            return new FidStatistics(mean.data<double>().ToArray(), covariance.contiguous().data<double>().ToArray(), features.shape[0]);
        }
    }

    /// <summary>Statistics from arrays.</summary>
    /// <param name="mean">μ (D).</param>
    /// <param name="covariance">Σ row-major (D×D).</param>
    /// <param name="count">The sample count, or 0 if unknown.</param>
    /// <returns>The statistics.</returns>
    public static FidStatistics FromArrays(double[] mean, double[] covariance, long count)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(covariance);
        if (mean.Length == 0 || covariance.Length != (long)mean.Length * mean.Length || count < 0)
        {
            throw new ArgumentException($"Expected μ of length D ≥ 1 and Σ of D×D = {(long)mean.Length * mean.Length} values and a count ≥ 0; got {mean.Length}, {covariance.Length} and {count}.", nameof(covariance));
        }

        return new FidStatistics((double[])mean.Clone(), (double[])covariance.Clone(), count);
    }

    /// <summary>Reads pytorch-fid statistics (an <c>.npz</c> with <c>mu</c> and <c>sigma</c>).</summary>
    /// <param name="path">The file.</param>
    /// <returns>The statistics.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not such an archive (the message names the file and the member).</exception>
    public static FidStatistics Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Statistics file '{path}' does not exist.", path);
        }

        try
        {
            using var archive = ZipFile.OpenRead(path);
            var (mu, muShape) = ReadArray(archive, "mu", path);
            var (sigma, sigmaShape) = ReadArray(archive, "sigma", path);
            if (muShape.Length != 1 || sigmaShape.Length != 2 || sigmaShape[0] != muShape[0] || sigmaShape[1] != muShape[0])
            {
                throw new InvalidDataException($"Statistics file '{path}': 'mu' has shape ({string.Join(", ", muShape)}) and 'sigma' ({string.Join(", ", sigmaShape)}); expected (D) and (D, D).");
            }

            long count = 0;
            if (archive.GetEntry("count.npy") is not null)
            {
                var (values, _) = ReadArray(archive, "count", path);
                count = values.Length == 1 ? (long)values[0] : throw new InvalidDataException($"Statistics file '{path}': 'count' must hold one number.");
            }

            return new FidStatistics(mu, sigma, count);
        }
        catch (InvalidDataException ex) when (!ex.Message.StartsWith("Statistics file", StringComparison.Ordinal))
        {
            throw new InvalidDataException($"Statistics file '{path}' is not a readable .npz archive: {ex.Message}", ex);
        }
    }

    /// <summary>Writes the statistics as pytorch-fid's <c>.npz</c> (stored members <c>mu.npy</c>, <c>sigma.npy</c>, <c>count.npy</c>).</summary>
    /// <param name="path">The file; replaced whole, never left half-written.</param>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        string temporary = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            using (var archive = new ZipArchive(stream, ZipArchiveMode.Create))
            {
                WriteMember(archive, "mu.npy", NpyFloat64(Mean, new long[] { Dimension }));
                WriteMember(archive, "sigma.npy", NpyFloat64(Covariance, new long[] { Dimension, Dimension }));
                WriteMember(archive, "count.npy", NpyInt64(Count));
            }

            AtomicFile.FlushToDisk(temporary);
            AtomicFile.Replace(temporary, full);
        }
        finally
        {
            if (File.Exists(temporary))
            {
                File.Delete(temporary);
            }
        }
    }

    /// <summary>The Fréchet distance to other statistics (FID when both are of Inception pool3 features).</summary>
    /// <param name="other">The other statistics, of the same dimension.</param>
    /// <returns>d².</returns>
    public double FrechetDistanceTo(FidStatistics other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (other.Dimension != Dimension)
        {
            throw new ArgumentException($"Statistics of dimension {Dimension} and {other.Dimension} cannot be compared (were they made with the same network?).", nameof(other));
        }

        using var scope = NewDisposeScope();
        long d = Dimension;
        return FrechetDistance.Compute(tensor(Mean, device: CPU), tensor(Covariance, device: CPU).reshape(d, d), tensor(other.Mean, device: CPU), tensor(other.Covariance, device: CPU).reshape(d, d));
    }

    /// <summary>One <c>.npy</c> member exactly as numpy ≥ 1.23 writes a C-ordered little-endian float64 array (format 1.0).</summary>
    internal static byte[] NpyFloat64(double[] values, long[] shape)
    {
        var header = Header("<f8", shape);
        var bytes = new byte[header.Length + (values.Length * 8)];
        header.CopyTo(bytes, 0);
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(header.Length + (8 * i)), values[i]);
        }

        return bytes;
    }

    private static byte[] NpyInt64(long value)
    {
        var header = Header("<i8", new long[] { 1 });
        var bytes = new byte[header.Length + 8];
        header.CopyTo(bytes, 0);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(header.Length), value);
        return bytes;
    }

    private static byte[] Header(string descr, long[] shape)
    {
        string dims = shape.Length == 1 ? $"({shape[0]},)" : $"({string.Join(", ", shape)})";
        var text = new StringBuilder($"{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
        text.Append(' ', GrowthAxisDigits - shape[0].ToString(CultureInfo.InvariantCulture).Length);
        int unpadded = 10 + text.Length + 1;
        text.Append(' ', (ArrayAlign - (unpadded % ArrayAlign)) % ArrayAlign).Append('\n');
        var bytes = new byte[10 + text.Length];
        new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 }.CopyTo(bytes, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)text.Length);
        Encoding.ASCII.GetBytes(text.ToString()).CopyTo(bytes, 10);
        return bytes;
    }

    private static void WriteMember(ZipArchive archive, string name, byte[] bytes)
    {
        var entry = archive.CreateEntry(name, CompressionLevel.NoCompression);
        using var stream = entry.Open();
        stream.Write(bytes);
    }

    /// <summary>Reads one array of an <c>.npz</c> (float64, float32 or int64, any order) as doubles, with its shape.</summary>
    internal static (double[] Values, long[] Shape) ReadArray(ZipArchive archive, string name, string path)
    {
        var entry = archive.GetEntry(name + ".npy") ?? throw new InvalidDataException($"Statistics file '{path}' has no '{name}' array (it has: {string.Join(", ", archive.Entries.Select(e => e.FullName))}).");
        using var stream = entry.Open();
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        var bytes = memory.ToArray();
        if (bytes.Length < 10 || bytes[0] != 0x93 || Encoding.ASCII.GetString(bytes, 1, 5) != "NUMPY")
        {
            throw new InvalidDataException($"Statistics file '{path}': '{name}' is not a .npy array.");
        }

        int major = bytes[6];
        int headerLength = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8)) : checked((int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)));
        int start = major == 1 ? 10 : 12;
        if (start + headerLength > bytes.Length)
        {
            throw new InvalidDataException($"Statistics file '{path}': '{name}' has a truncated header.");
        }

        string header = Encoding.Latin1.GetString(bytes, start, headerLength);
        string descr = Field(header, "descr", path, name).Trim('\'', '"');
        bool fortran = Field(header, "fortran_order", path, name) == "True";
        string shapeText = Field(header, "shape", path, name).Trim('(', ')');
        long[] shape = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        long count = shape.Aggregate(1L, (a, b) => a * b);
        int size = descr switch { "<f8" or "<i8" => 8, "<f4" => 4, _ => throw new InvalidDataException($"Statistics file '{path}': '{name}' is of type {descr}; expected little-endian float64, float32 or int64.") };
        int dataStart = start + headerLength;
        if (bytes.Length - dataStart != count * size)
        {
            throw new InvalidDataException($"Statistics file '{path}': '{name}' holds {bytes.Length - dataStart} bytes of data, expected {count * size} for shape ({string.Join(", ", shape)}) (a damaged file).");
        }

        var values = new double[count];
        for (int i = 0; i < count; i++)
        {
            var span = bytes.AsSpan(dataStart + (i * size));
            values[i] = descr switch
            {
                "<f8" => BinaryPrimitives.ReadDoubleLittleEndian(span),
                "<f4" => BinaryPrimitives.ReadSingleLittleEndian(span),
                _ => BinaryPrimitives.ReadInt64LittleEndian(span),
            };
        }

        if (fortran && shape.Length == 2)
        {
            var transposed = new double[count];
            for (long r = 0; r < shape[0]; r++)
            {
                for (long c = 0; c < shape[1]; c++)
                {
                    transposed[(r * shape[1]) + c] = values[(c * shape[0]) + r];
                }
            }

            values = transposed;
        }

        return (values, shape);
    }

    private static string Field(string header, string key, string path, string name)
    {
        int at = header.IndexOf($"'{key}':", StringComparison.Ordinal);
        if (at < 0)
        {
            throw new InvalidDataException($"Statistics file '{path}': the header of '{name}' has no '{key}'.");
        }

        int from = at + key.Length + 3;
        int end = key == "shape" ? header.IndexOf(')', from) + 1 : header.IndexOf(',', from);
        return header[from..end].Trim();
    }
}
