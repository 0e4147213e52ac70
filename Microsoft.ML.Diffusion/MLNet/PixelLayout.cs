using System;
using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion;

/// <summary>Planar 8-bit pixels (C·H·W, RGB order) ⇄ <see cref="MLImage"/> (BGRA32 or RGBA32).</summary>
internal static class PixelLayout
{
    /// <summary>Builds a BGRA image from planar bytes (C = 1 is written as gray).</summary>
    public static MLImage ToMLImage(ReadOnlySpan<byte> planar, int channels, int height, int width)
    {
        int plane = height * width;
        var bgra = new byte[plane * 4];
        for (int i = 0; i < plane; i++)
        {
            byte r = planar[i];
            byte g = channels == 3 ? planar[plane + i] : r;
            byte b = channels == 3 ? planar[(2 * plane) + i] : r;
            bgra[(4 * i) + 0] = b;
            bgra[(4 * i) + 1] = g;
            bgra[(4 * i) + 2] = r;
            bgra[(4 * i) + 3] = 255;
        }

        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Bgra32, bgra);
    }

    /// <summary>
    /// Writes an image's pixels as planar values in [0, 255]: RGB planes for 3 channels, BT.601 luma
    /// (0.299 R + 0.587 G + 0.114 B) for 1 channel.
    /// </summary>
    public static void ToPlanar(MLImage image, int channels, Span<float> destination)
    {
        ReadOnlySpan<byte> pixels = image.Pixels;
        int plane = image.Width * image.Height;
        bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
        if (!bgra && image.PixelFormat != MLPixelFormat.Rgba32)
        {
            throw new ArgumentException($"Unsupported pixel format {image.PixelFormat}; expected BGRA32 or RGBA32.", nameof(image));
        }

        for (int i = 0; i < plane; i++)
        {
            float r = pixels[(4 * i) + (bgra ? 2 : 0)];
            float g = pixels[(4 * i) + 1];
            float b = pixels[(4 * i) + (bgra ? 0 : 2)];
            if (channels == 1)
            {
                destination[i] = (0.299f * r) + (0.587f * g) + (0.114f * b);
            }
            else
            {
                destination[i] = r;
                destination[plane + i] = g;
                destination[(2 * plane) + i] = b;
            }
        }
    }
}
