using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>
/// Reads MNIST-format IDX files (images: magic 0x00000803, labels: magic 0x00000801; gzip or raw) such as MNIST and
/// Fashion-MNIST, and exposes them as an <see cref="IDataView"/> with a pixel-vector column and a label column.
/// </summary>
public static class IdxReader
{
    private const int ImagesMagic = 0x00000803;
    private const int LabelsMagic = 0x00000801;

    /// <summary>Reads an IDX image file: N images of rows × columns unsigned bytes.</summary>
    /// <param name="path">The file (".gz" or raw; gzip is detected from its first bytes).</param>
    /// <returns>The images, row-major, and their size.</returns>
    /// <exception cref="InvalidDataException">Bad magic number, dimensions, a truncated file or bytes after the last image; the message names the file.</exception>
    public static IdxImages ReadImages(string path)
    {
        byte[] data = ReadAllDecompressed(path, 16, header => 16 + ((long)Math.Max(0, BigEndian(header, 4, path)) * Math.Max(0, BigEndian(header, 8, path)) * Math.Max(0, BigEndian(header, 12, path))));
        int magic = BigEndian(data, 0, path);
        if (magic != ImagesMagic)
        {
            throw new InvalidDataException($"'{path}' is not an IDX image file: magic number 0x{magic:X8}, expected 0x{ImagesMagic:X8}.");
        }

        int count = BigEndian(data, 4, path), rows = BigEndian(data, 8, path), columns = BigEndian(data, 12, path);
        if (count < 0 || rows < 1 || columns < 1 || rows > 4096 || columns > 4096)
        {
            throw new InvalidDataException($"'{path}' declares impossible dimensions {count} × {rows} × {columns}.");
        }

        long expected = 16 + ((long)count * rows * columns);
        if (data.Length < expected)
        {
            throw new InvalidDataException($"'{path}' is truncated: {count} images of {rows}×{columns} need {expected} bytes; the file has {data.Length}.");
        }

        if (data.Length > expected)
        {
            // IDX files end with their last image: extra bytes mean a damaged count or size (which would load a part silently).
            throw new InvalidDataException($"'{path}' is damaged: it declares {count} images of {rows}×{columns} ({expected} bytes) but goes on after them.");
        }

        return new IdxImages(data.AsMemory(16, count * rows * columns), count, rows, columns);
    }

    /// <summary>Reads an IDX label file: N unsigned bytes.</summary>
    /// <param name="path">The file (".gz" or raw).</param>
    /// <returns>The labels.</returns>
    /// <exception cref="InvalidDataException">Bad magic number, a truncated file or bytes after the last label; the message names the file.</exception>
    public static byte[] ReadLabels(string path)
    {
        byte[] data = ReadAllDecompressed(path, 8, header => 8L + Math.Max(0, BigEndian(header, 4, path)));
        int magic = BigEndian(data, 0, path);
        if (magic != LabelsMagic)
        {
            throw new InvalidDataException($"'{path}' is not an IDX label file: magic number 0x{magic:X8}, expected 0x{LabelsMagic:X8}.");
        }

        int count = BigEndian(data, 4, path);
        if (count < 0 || data.Length < 8L + count)
        {
            throw new InvalidDataException($"'{path}' is truncated: {count} labels need {8L + count} bytes; the file has {data.Length}.");
        }

        if (data.Length > 8L + count)
        {
            throw new InvalidDataException($"'{path}' is damaged: it declares {count} labels ({8L + count} bytes) but goes on after them.");
        }

        return data.AsSpan(8, count).ToArray();
    }

    /// <summary>
    /// Loads IDX images (and optionally labels) as an <see cref="IDataView"/> with columns "Pixels" (Single vector of
    /// rows·columns values in [0, 255]) and "Label" (Int32, −1 when no label file is given).
    /// </summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="imagesPath">The image file.</param>
    /// <param name="labelsPath">The label file, or null.</param>
    /// <param name="maxRows">Read at most this many rows (null: all).</param>
    /// <returns>The data.</returns>
    public static IDataView Load(MLContext mlContext, string imagesPath, string? labelsPath = null, int? maxRows = null)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        var images = ReadImages(imagesPath);
        byte[]? labels = labelsPath is null ? null : ReadLabels(labelsPath);
        if (labels is not null && labels.Length != images.Count)
        {
            throw new InvalidDataException($"'{labelsPath}' holds {labels.Length} labels but '{imagesPath}' holds {images.Count} images.");
        }

        int n = Math.Min(images.Count, maxRows ?? int.MaxValue);
        int size = images.Rows * images.Columns;
        var rows = new List<IdxRow>(n);
        var pixels = images.Pixels.Span;
        for (int i = 0; i < n; i++)
        {
            var row = new float[size];
            for (int j = 0; j < size; j++)
            {
                row[j] = pixels[(i * size) + j];
            }

            rows.Add(new IdxRow { Pixels = row, Label = labels is null ? -1 : labels[i] });
        }

        var schema = SchemaDefinition.Create(typeof(IdxRow));
        schema[nameof(IdxRow.Pixels)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, 1, images.Rows, images.Columns);
        return mlContext.Data.LoadFromEnumerable(rows, schema);
    }

    // Gzip is decompressed only as far as the header says the file goes (plus one byte, to detect extra data), so that a
    // damaged or hostile archive cannot make it allocate more than its declared images.
    private static byte[] ReadAllDecompressed(string path, int headerBytes, Func<byte[], long> declaredLength)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"IDX file '{path}' does not exist.", path);
        }

        byte[] raw = File.ReadAllBytes(path);
        if (raw.Length < 2 || raw[0] != 0x1f || raw[1] != 0x8b)
        {
            return raw;
        }

        try
        {
            using var gzip = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var output = new MemoryStream();
            byte[] buffer = new byte[1 << 16];
            long limit = headerBytes;
            bool headerSeen = false;
            int read;
            while ((read = gzip.Read(buffer, 0, (int)Math.Min(buffer.Length, limit + 1 - output.Length))) > 0)
            {
                output.Write(buffer, 0, read);
                if (!headerSeen && output.Length >= headerBytes)
                {
                    headerSeen = true;
                    limit = Math.Min(Math.Max(headerBytes, declaredLength(output.GetBuffer())), Array.MaxLength - 1);
                }

                if (output.Length > limit)
                {
                    break;
                }
            }

            return output.ToArray();
        }
        catch (InvalidDataException ex)
        {
            throw new InvalidDataException($"'{path}' is a damaged or truncated gzip file: {ex.Message}", ex);
        }
    }

    private static int BigEndian(byte[] data, int offset, string path)
    {
        if (data.Length < offset + 4)
        {
            throw new InvalidDataException($"'{path}' is truncated: its IDX header ends at byte {data.Length}.");
        }

        return (data[offset] << 24) | (data[offset + 1] << 16) | (data[offset + 2] << 8) | data[offset + 3];
    }

    /// <summary>One row of an IDX data view.</summary>
    public sealed class IdxRow
    {
        /// <summary>Gets or sets the pixels, row-major, in [0, 255].</summary>
        public float[] Pixels { get; set; } = Array.Empty<float>();

        /// <summary>Gets or sets the label (−1 when unknown).</summary>
        public int Label { get; set; }
    }
}

/// <summary>Images read from an IDX file.</summary>
/// <param name="Pixels">N·rows·columns bytes, image after image, row-major.</param>
/// <param name="Count">N.</param>
/// <param name="Rows">Image height.</param>
/// <param name="Columns">Image width.</param>
public sealed record IdxImages(ReadOnlyMemory<byte> Pixels, int Count, int Rows, int Columns);
