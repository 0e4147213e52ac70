using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Pictures;

/// <summary>The pictures a diffusion run is judged by: a captioned grid of samples and a progressive-denoising strip.</summary>
public static class DiffusionPictures
{
    /// <summary>
    /// A grid of images, each with an optional caption below it (5×7 bitmap font, upper case), on black.
    /// </summary>
    /// <param name="images">N×C×H×W in [−1, 1], C = 1 or 3.</param>
    /// <param name="columns">Images per row.</param>
    /// <param name="captions">One caption per image, or null.</param>
    /// <param name="scale">Whole-number enlargement of every image pixel.</param>
    /// <returns>The picture.</returns>
    public static MLImage LabelledGrid(Tensor images, int columns, IReadOnlyList<string>? captions = null, int scale = 2)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (columns < 1 || scale < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(columns), "Columns and scale must be positive.");
        }

        int n = (int)images.shape[0];
        if (captions is not null && captions.Count != n)
        {
            throw new ArgumentException($"{captions.Count} captions for {n} images.", nameof(captions));
        }

        int c = (int)images.shape[1], h = (int)images.shape[2] * scale, w = (int)images.shape[3] * scale;
        int captionHeight = captions is null ? 0 : BitmapFont.GlyphHeight + 4;
        int cellWidth = Math.Max(w, captions is null ? 0 : captions.Max(t => BitmapFont.Measure(t))) + 4;
        int cellHeight = h + captionHeight + 4;
        int rows = (n + columns - 1) / columns;
        return Compose(images, c, scale, rows * cellHeight, columns * cellWidth, i => ((i / columns) * cellHeight) + 2, i => ((i % columns) * cellWidth) + 2 + ((cellWidth - 4 - w) / 2),
            (canvas, height, width) =>
            {
                for (int i = 0; captions is not null && i < n; i++)
                {
                    int left = ((i % columns) * cellWidth) + 2 + ((cellWidth - 4 - BitmapFont.Measure(captions[i])) / 2);
                    BitmapFont.Draw(canvas, c, height, width, captions[i], left, ((i / columns) * cellHeight) + 2 + h + 2);
                }
            });
    }

    /// <summary>
    /// The progressive-denoising strip of a sampling run: one row per image, one column per captured step, from pure
    /// noise x_T on the left to the final image on the right, with the timestep above each column.
    /// </summary>
    /// <param name="trajectory">A trajectory captured by a sampler.</param>
    /// <param name="maxRows">Show at most this many images.</param>
    /// <param name="scale">Whole-number enlargement of every image pixel.</param>
    /// <returns>The picture.</returns>
    public static MLImage DenoisingStrip(SamplingTrajectory trajectory, int maxRows = 8, int scale = 2)
    {
        ArgumentNullException.ThrowIfNull(trajectory);
        if (trajectory.States.Count == 0)
        {
            throw new ArgumentException("The trajectory is empty: pass it to a sampler first.", nameof(trajectory));
        }

        using var scope = NewDisposeScope();
        int rows = (int)Math.Min(maxRows, trajectory.States[0].shape[0]);
        int columns = trajectory.States.Count;
        // Row-major: image r at step k goes to cell (r, k).
        var cells = stack(trajectory.States.Select(s => s[..rows]).ToArray(), 1).flatten(0, 1);
        var captions = Enumerable.Range(0, rows * columns).Select(i => i < columns ? Caption(trajectory.Timesteps[i]) : string.Empty).ToArray();
        int c = (int)cells.shape[1], h = (int)cells.shape[2] * scale, w = (int)cells.shape[3] * scale;
        int header = BitmapFont.GlyphHeight + 4;
        int cellWidth = Math.Max(w, captions.Max(t => BitmapFont.Measure(t))) + 4;
        int cellHeight = h + 4;
        return Compose(cells, c, scale, header + (rows * cellHeight), columns * cellWidth, i => header + ((i / columns) * cellHeight) + 2, i => ((i % columns) * cellWidth) + 2 + ((cellWidth - 4 - w) / 2),
            (canvas, height, width) =>
            {
                for (int k = 0; k < columns; k++)
                {
                    BitmapFont.Draw(canvas, c, height, width, captions[k], (k * cellWidth) + 2 + ((cellWidth - 4 - BitmapFont.Measure(captions[k])) / 2), 2);
                }
            });
    }

    private static string Caption(int timestep) => timestep < 0 ? "X0" : FormattableString.Invariant($"T={timestep + 1}");

    private static MLImage Compose(Tensor images, int channels, int scale, int height, int width, Func<int, int> top, Func<int, int> left, Action<byte[], int, int> decorate)
    {
        using var scope = NewDisposeScope();
        var pixels = ImageConversion.ModelToPixels(images).to(ScalarType.Byte).cpu();
        if (scale > 1)
        {
            pixels = pixels.repeat_interleave(scale, 2).repeat_interleave(scale, 3);
        }

        pixels = pixels.contiguous();
        int n = (int)pixels.shape[0], h = (int)pixels.shape[2], w = (int)pixels.shape[3];
        byte[] source = pixels.data<byte>().ToArray();
        var canvas = new byte[channels * height * width];
        for (int i = 0; i < n; i++)
        {
            int y0 = top(i), x0 = left(i);
            for (int ch = 0; ch < channels; ch++)
            {
                for (int y = 0; y < h; y++)
                {
                    Array.Copy(source, (((i * channels) + ch) * h * w) + (y * w), canvas, (ch * height * width) + ((y0 + y) * width) + x0, w);
                }
            }
        }

        decorate(canvas, height, width);
        return PixelLayout.ToMLImage(canvas, channels, height, width);
    }
}
