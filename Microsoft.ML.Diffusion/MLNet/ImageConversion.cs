using System;
using System.Collections.Generic;
using System.IO;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// The one place that converts between model space (N×C×H×W floats in [−1, 1]), 8-bit pixel values in [0, 255] and
/// <see cref="MLImage"/>s (grayscale or RGB), and that lays images out in PNG grids.
/// </summary>
public static class ImageConversion
{
    private static readonly Scalar HalfRange = 127.5.ToScalar(); // held, see Core/Runtime/Scalars.cs
    private static readonly Scalar MaxPixel = 255.ToScalar();

    /// <summary>Maps pixel values in [0, 255] to model space [−1, 1]: x = p/127.5 − 1.</summary>
    /// <param name="pixels">Pixel values.</param>
    /// <returns>Model-space values.</returns>
    public static Tensor PixelsToModel(Tensor pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        using var scope = NewDisposeScope();
        return ((pixels.to(float32) / HalfRange) - Scalars.OneReal).MoveToOuterDisposeScope();
    }

    /// <summary>Maps model space to 8-bit pixel values: p = round((x + 1)·127.5) clamped to [0, 255], as floats.</summary>
    /// <param name="images">Model-space values.</param>
    /// <returns>Whole-number pixel values in [0, 255].</returns>
    public static Tensor ModelToPixels(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        using var scope = NewDisposeScope();
        return (images.to(float32).Plus(Scalars.OneReal) * HalfRange).round().clamp(Scalars.Zero, MaxPixel).MoveToOuterDisposeScope();
    }

    /// <summary>Converts a batch of model-space images (C = 1 or 3) to <see cref="MLImage"/>s.</summary>
    /// <param name="images">N×C×H×W in [−1, 1].</param>
    /// <returns>One image per row, in order.</returns>
    public static IReadOnlyList<MLImage> ToMLImages(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        CheckBatch(images);
        var result = new List<MLImage>((int)images.shape[0]);
        using var scope = NewDisposeScope();
        var pixels = ModelToPixels(images).to(ScalarType.Byte).cpu().contiguous();
        for (long i = 0; i < images.shape[0]; i++)
        {
            result.Add(ToMLImage(pixels[i]));
        }

        return result;
    }

    /// <summary>
    /// Lays a batch of model-space images out in a grid with <paramref name="columns"/> columns and a gap of
    /// <paramref name="padding"/> pixels (black) between cells.
    /// </summary>
    /// <param name="images">N×C×H×W in [−1, 1], C = 1 or 3.</param>
    /// <param name="columns">Images per row.</param>
    /// <param name="padding">Gap in pixels.</param>
    /// <param name="scale">Whole-number enlargement of every pixel (nearest neighbour), for small images.</param>
    /// <returns>The grid.</returns>
    public static MLImage Grid(Tensor images, int columns, int padding = 2, int scale = 1)
    {
        ArgumentNullException.ThrowIfNull(images);
        CheckBatch(images);
        if (columns < 1 || padding < 0 || scale < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(columns), "A grid needs at least one column, a non-negative padding and a positive scale.");
        }

        using var scope = NewDisposeScope();
        long n = images.shape[0], c = images.shape[1], h = images.shape[2], w = images.shape[3];
        long rows = (n + columns - 1) / columns;
        var canvas = zeros(new[] { c, (rows * (h + padding)) + padding, (columns * (w + padding)) + padding }, dtype: ScalarType.Byte);
        var pixels = ModelToPixels(images).to(ScalarType.Byte).cpu();
        for (long i = 0; i < n; i++)
        {
            long top = padding + ((i / columns) * (h + padding));
            long left = padding + ((i % columns) * (w + padding));
            canvas[TensorIndex.Colon, TensorIndex.Slice(top, top + h), TensorIndex.Slice(left, left + w)] = pixels[i];
        }

        return ToMLImage(scale == 1 ? canvas : canvas.repeat_interleave(scale, 1).repeat_interleave(scale, 2));
    }

    /// <summary>Writes an image as PNG, through a temporary file renamed into place.</summary>
    /// <param name="image">The image.</param>
    /// <param name="path">Destination path (folders are created).</param>
    public static void SavePng(MLImage image, string path)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp.png";
        image.Save(temp);
        File.Move(temp, full, overwrite: true);
    }

    // C×H×W bytes (C = 1 or 3, RGB order) → BGRA MLImage.
    private static MLImage ToMLImage(Tensor chw)
    {
        using var contiguous = chw.contiguous();
        return PixelLayout.ToMLImage(contiguous.data<byte>().ToArray(), (int)chw.shape[0], (int)chw.shape[1], (int)chw.shape[2]);
    }

    private static void CheckBatch(Tensor images)
    {
        if (images.dim() != 4 || (images.shape[1] != 1 && images.shape[1] != 3))
        {
            throw new ArgumentException($"Expected images N×C×H×W with C = 1 or 3; got shape [{string.Join(", ", images.shape)}].", nameof(images));
        }
    }
}
