using System;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Tools.Pictures;

namespace Microsoft.ML.Diffusion.Tests.Tools.Pictures;

/// <summary>Reads pictures back: pixels, and whether a text drawn in the bitmap font appears.</summary>
internal static class PictureAssert
{
    public static bool Is(MLImage image, int x, int y, byte[] rgb)
    {
        var (r, g, b) = Pixel(image, x, y);
        return r == rgb[0] && g == rgb[1] && b == rgb[2];
    }

    public static (byte R, byte G, byte B) Pixel(MLImage image, int x, int y)
    {
        ReadOnlySpan<byte> pixels = image.Pixels;
        int i = 4 * ((y * image.Width) + x);
        bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
        return (pixels[i + (bgra ? 2 : 0)], pixels[i + 1], pixels[i + (bgra ? 0 : 2)]);
    }

    // Whether the text, drawn in the bitmap font, appears somewhere in the picture: every glyph pixel in the colour, and
    // no other pixel of its box in that colour.
    public static bool ContainsText(MLImage image, string text, byte[] color)
    {
        int w = BitmapFont.Measure(text), h = BitmapFont.GlyphHeight;
        var mask = new byte[w * h];
        BitmapFont.Draw(mask, 1, h, w, text, 0, 0);
        int width = image.Width, height = image.Height;
        var hit = new bool[width * height];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                hit[(y * width) + x] = Is(image, x, y, color);
            }
        }

        for (int top = 0; top + h <= height; top++)
        {
            for (int left = 0; left + w <= width; left++)
            {
                bool match = true;
                for (int i = 0; i < mask.Length && match; i++)
                {
                    match = hit[((top + (i / w)) * width) + left + (i % w)] == (mask[i] != 0);
                }

                if (match)
                {
                    return true;
                }
            }
        }

        return false;
    }
}
