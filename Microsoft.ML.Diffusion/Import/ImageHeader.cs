using System;
using System.Buffers.Binary;
using System.IO;
using System.Text;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>
/// Reads the few bytes of a PNG, JPEG or BMP file that give its size, and checks that the file is whole, before anything
/// decodes it: a decoder allocates what the header claims (a 74-byte PNG can claim 60,000 × 60,000 pixels), and a
/// truncated file decodes without complaint to an image whose missing part is blank. Each refusal is an
/// <see cref="InvalidDataException"/> naming the file, the value and the limit.
/// </summary>
internal static class ImageHeader
{
    private static readonly byte[] PngSignature = { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A };
    private static readonly uint[] CrcTable = MakeCrcTable();

    /// <summary>Checks an image file's header and ends; returns its format and size.</summary>
    /// <param name="path">The file (for messages).</param>
    /// <param name="stream">The file, open for reading and seekable, at position 0.</param>
    /// <param name="maxSide">The largest width or height accepted.</param>
    /// <param name="maxPixels">The largest width × height accepted.</param>
    /// <returns>"PNG", "JPEG" or "BMP", and the width and height the header declares.</returns>
    /// <exception cref="InvalidDataException">The file is not a PNG, JPEG or BMP, is truncated, or is too large.</exception>
    public static (string Format, int Width, int Height) Check(string path, Stream stream, int maxSide, long maxPixels)
    {
        long length = stream.Length;
        if (length == 0)
        {
            throw Refuse(path, "is empty (0 bytes)");
        }

        Span<byte> start = stackalloc byte[8];
        int read = ReadAtMost(stream, start);
        (string format, long width, long height) = read >= 8 && start.SequenceEqual(PngSignature) ? Png(path, stream, length)
            : read >= 3 && start[0] == 0xFF && start[1] == 0xD8 && start[2] == 0xFF ? Jpeg(path, stream, length)
            : read >= 2 && start[0] == (byte)'B' && start[1] == (byte)'M' ? Bmp(path, stream, length)
            : throw Refuse(path, $"is not a PNG, JPEG or BMP image (its first bytes are {Convert.ToHexString(start[..read])})");
        return (format, (int)width, (int)height);

        // The size check, shared: run by each format as soon as it knows the size, before it reads on.
        void Limit(string format, long width, long height)
        {
            if (width < 1 || height < 1)
            {
                throw Refuse(path, $"is a {format} of {width} × {height} pixels (a side of 0 or less)");
            }

            if (width > maxSide || height > maxSide)
            {
                throw Refuse(path, $"is a {format} of {width} × {height} pixels: a side of {Math.Max(width, height)} is over the limit of {maxSide}");
            }

            if (width * height > maxPixels)
            {
                throw Refuse(path, $"is a {format} of {width} × {height} = {width * height} pixels, over the limit of {maxPixels}");
            }
        }

        // PNG: the IHDR chunk first, then chunks (length, type, data, CRC) that must fit the file, up to IEND.
        (string, long, long) Png(string file, Stream s, long size)
        {
            Span<byte> chunk = stackalloc byte[8];
            Span<byte> ihdr = stackalloc byte[13];
            if (ReadAtMost(s, chunk) < 8 || BinaryPrimitives.ReadUInt32BigEndian(chunk) != 13 || !chunk[4..].SequenceEqual("IHDR"u8) || ReadAtMost(s, ihdr) < 13)
            {
                throw Refuse(file, "is a PNG without a complete IHDR chunk (truncated or damaged)");
            }

            long w = BinaryPrimitives.ReadUInt32BigEndian(ihdr);
            long h = BinaryPrimitives.ReadUInt32BigEndian(ihdr[4..]);
            Limit("PNG", w, h);
            if (!CrcMatches(s, 12, 13))
            {
                throw Refuse(file, "is a damaged PNG: the CRC of its IHDR chunk does not match");
            }

            long position = 8 + 8 + 13 + 4;
            bool data = false;
            while (true)
            {
                s.Position = position;
                if (ReadAtMost(s, chunk) < 8)
                {
                    throw Refuse(file, $"is a truncated PNG: it ends after {size} bytes, before its IEND chunk");
                }

                long dataLength = BinaryPrimitives.ReadUInt32BigEndian(chunk);
                long next = position + 8 + dataLength + 4;
                if (dataLength > int.MaxValue || next > size)
                {
                    throw Refuse(file, $"is a truncated PNG: a chunk at byte {position} declares {dataLength} bytes, past the end of the file ({size} bytes)");
                }

                if (!CrcMatches(s, position + 4, dataLength))
                {
                    throw Refuse(file, $"is a damaged PNG: the CRC of its {ChunkName(chunk[4..])} chunk at byte {position} does not match");
                }

                if (chunk[4..].SequenceEqual("IDAT"u8))
                {
                    data = true;
                }
                else if (chunk[4..].SequenceEqual("IEND"u8))
                {
                    return data ? ("PNG", w, h) : throw Refuse(file, "is a PNG without image data (no IDAT chunk)");
                }

                position = next;
            }
        }

        // JPEG: marker segments up to the first start-of-frame (which gives the size); the file must end with EOI (FF D9).
        (string, long, long) Jpeg(string file, Stream s, long size)
        {
            long position = 2;
            Span<byte> segment = stackalloc byte[9];
            while (true)
            {
                s.Position = position;
                // A marker is FF then a code; FFs in a row are fill bytes.
                int marker = s.ReadByte();
                if (marker == 0xFF)
                {
                    do
                    {
                        marker = s.ReadByte();
                    }
                    while (marker == 0xFF);
                }
                else
                {
                    marker = -1;
                }

                if (marker < 0)
                {
                    throw Refuse(file, $"is a truncated or damaged JPEG: no frame header (SOF) before byte {s.Position} of {size}");
                }

                position = s.Position;
                if (marker is 0x01 or (>= 0xD0 and <= 0xD7))
                {
                    continue; // markers without a length
                }

                if (marker is 0xD8 or 0xD9 or 0xDA || ReadAtMost(s, segment[..2]) < 2)
                {
                    throw Refuse(file, $"is a truncated or damaged JPEG: no frame header (SOF) before byte {position} of {size}");
                }

                int segmentLength = BinaryPrimitives.ReadUInt16BigEndian(segment);
                if (segmentLength < 2 || position + segmentLength > size)
                {
                    throw Refuse(file, $"is a truncated or damaged JPEG: a segment at byte {position} declares {segmentLength} bytes of the {size - position} left");
                }

                bool startOfFrame = marker is (>= 0xC0 and <= 0xCF) and not (0xC4 or 0xC8 or 0xCC);
                if (startOfFrame)
                {
                    if (segmentLength < 8 || ReadAtMost(s, segment[2..8]) < 6)
                    {
                        throw Refuse(file, "is a damaged JPEG: its frame header (SOF) is too short");
                    }

                    long h = BinaryPrimitives.ReadUInt16BigEndian(segment[3..]);
                    long w = BinaryPrimitives.ReadUInt16BigEndian(segment[5..]);
                    Limit("JPEG", w, h);
                    if (!EndsWithEoi(s, size))
                    {
                        throw Refuse(file, $"is a truncated JPEG: it does not end with the end-of-image marker FF D9 ({size} bytes)");
                    }

                    return ("JPEG", w, h);
                }

                position += segmentLength;
            }
        }

        // BMP: the file header (14 bytes) and the DIB header's size fields; uncompressed pixels must fit the file.
        (string, long, long) Bmp(string file, Stream s, long size)
        {
            Span<byte> header = stackalloc byte[26];
            s.Position = 0;
            if (ReadAtMost(s, header) < 26)
            {
                throw Refuse(file, $"is a truncated BMP: {size} bytes, fewer than its headers need");
            }

            long pixelOffset = BinaryPrimitives.ReadUInt32LittleEndian(header[10..]);
            long dibSize = BinaryPrimitives.ReadUInt32LittleEndian(header[14..]);
            long w, h, bitsPerPixel, compression = 0;
            if (dibSize == 12)
            {
                w = BinaryPrimitives.ReadUInt16LittleEndian(header[18..]);
                h = BinaryPrimitives.ReadUInt16LittleEndian(header[20..]);
                bitsPerPixel = BinaryPrimitives.ReadUInt16LittleEndian(header[24..]);
            }
            else if (dibSize >= 40)
            {
                Span<byte> more = stackalloc byte[8];
                if (ReadAtMost(s, more) < 8)
                {
                    throw Refuse(file, $"is a truncated BMP: {size} bytes, fewer than its headers need");
                }

                w = BinaryPrimitives.ReadInt32LittleEndian(header[18..]);
                h = Math.Abs((long)BinaryPrimitives.ReadInt32LittleEndian(header[22..])); // negative: stored top-down
                bitsPerPixel = BinaryPrimitives.ReadUInt16LittleEndian(more[2..]); // after the planes (bytes 26–27)
                compression = BinaryPrimitives.ReadUInt32LittleEndian(more[4..]);
            }
            else
            {
                throw Refuse(file, $"is a BMP with an unknown header ({dibSize} bytes)");
            }

            Limit("BMP", w, h);
            if (compression is 0 or 3 or 6)
            {
                // Uncompressed (BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS): rows of whole 32-bit words.
                long stride = ((w * bitsPerPixel) + 31) / 32 * 4;
                if (bitsPerPixel is not (1 or 2 or 4 or 8 or 16 or 24 or 32))
                {
                    throw Refuse(file, $"is a BMP of {bitsPerPixel} bits per pixel");
                }

                if (pixelOffset + (stride * h) > size)
                {
                    throw Refuse(file, $"is a truncated BMP: its {w} × {h} pixels need {pixelOffset + (stride * h)} bytes, the file has {size}");
                }
            }

            return ("BMP", w, h);
        }
    }

    private static string ChunkName(ReadOnlySpan<byte> type)
    {
        foreach (byte b in type)
        {
            if (b is not ((>= (byte)'A' and <= (byte)'Z') or (>= (byte)'a' and <= (byte)'z')))
            {
                return "0x" + Convert.ToHexString(type);
            }
        }

        return Encoding.ASCII.GetString(type);
    }

    /// <summary>Whether a PNG chunk's CRC-32 (of its type and data, stored after them) matches.</summary>
    private static bool CrcMatches(Stream s, long typeOffset, long dataLength)
    {
        s.Position = typeOffset;
        var buffer = new byte[(int)Math.Min(64 * 1024, 4 + dataLength)];
        uint crc = 0xFFFFFFFF;
        long left = 4 + dataLength;
        while (left > 0)
        {
            int n = ReadAtMost(s, buffer.AsSpan(0, (int)Math.Min(buffer.Length, left)));
            if (n == 0)
            {
                return false;
            }

            foreach (byte b in buffer.AsSpan(0, n))
            {
                crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
            }

            left -= n;
        }

        Span<byte> stored = stackalloc byte[4];
        return ReadAtMost(s, stored) == 4 && BinaryPrimitives.ReadUInt32BigEndian(stored) == ~crc;
    }

    // The CRC-32 of PNG (and zip): reflected polynomial 0xEDB88320, one table entry per byte value.
    private static uint[] MakeCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            }

            table[n] = c;
        }

        return table;
    }

    /// <summary>Whether a JPEG ends with FF D9, trailing zero bytes (padding some writers add) aside.</summary>
    private static bool EndsWithEoi(Stream s, long size)
    {
        const int Tail = 4096;
        var tail = new byte[(int)Math.Min(Tail, size)];
        s.Position = size - tail.Length;
        int n = ReadAtMost(s, tail);
        int end = n;
        while (end > 0 && tail[end - 1] == 0)
        {
            end--;
        }

        return end >= 2 && tail[end - 2] == 0xFF && tail[end - 1] == 0xD9;
    }

    private static int ReadAtMost(Stream stream, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer[total..]);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    private static InvalidDataException Refuse(string path, string what) => new($"Image file '{path}' {what}.");
}
