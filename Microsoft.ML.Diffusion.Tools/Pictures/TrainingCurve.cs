using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Training;

namespace Microsoft.ML.Diffusion.Tools.Pictures;

/// <summary>
/// The picture of a training run: three panels over a shared step axis — the loss (on a logarithmic axis when every value
/// is positive), the learning rate and the throughput in images per second — drawn with the library's bitmap font, so it
/// looks the same on every machine and needs no system fonts.
/// </summary>
/// <remarks>
/// Axes: steps run from 0 to the last reported step; the learning rate and images/s run from 0 to the largest value
/// rounded up to 1, 2, 2.5 or 5 × 10^k; the logarithmic loss axis spans whole decades around the values. Each point is
/// placed at the pixel nearest its value (halves away from zero) and consecutive points are joined by straight one-pixel lines; a non-finite
/// value (a report window whose steps were all skipped) leaves a gap.
/// </remarks>
public static class TrainingCurve
{
    /// <summary>Colour of the loss line (RGB).</summary>
    internal static readonly byte[] LossColor = { 255, 165, 40 };

    /// <summary>Colour of the learning-rate line (RGB).</summary>
    internal static readonly byte[] LearningRateColor = { 80, 200, 255 };

    /// <summary>Colour of the images/s line (RGB).</summary>
    internal static readonly byte[] ThroughputColor = { 120, 225, 120 };

    /// <summary>Colour of titles and axis labels (RGB).</summary>
    internal static readonly byte[] TextColor = { 235, 235, 235 };

    /// <summary>Colour of the frame around each plot area (RGB).</summary>
    internal static readonly byte[] FrameColor = { 110, 110, 110 };

    internal const int LeftMargin = 64;
    internal const int RightMargin = 16;
    internal const int PanelTitleHeight = 14;
    internal const int PlotHeight = 151;
    internal const int PanelGap = 14;
    internal const int BottomMargin = 28;

    private static readonly byte[] Background = { 18, 18, 22 };
    private static readonly byte[] GridColor = { 44, 44, 50 };

    /// <summary>Draws the curves of a run.</summary>
    /// <param name="reports">The progress reports, in any order (they are sorted by step).</param>
    /// <param name="width">The picture's width in pixels (at least 240).</param>
    /// <returns>An RGB picture.</returns>
    /// <exception cref="ArgumentException">There are no reports.</exception>
    public static MLImage Draw(IEnumerable<TrainingProgress> reports, int width = 800)
    {
        ArgumentNullException.ThrowIfNull(reports);
        if (width < 240)
        {
            throw new ArgumentOutOfRangeException(nameof(width), width, "The picture must be at least 240 pixels wide.");
        }

        var points = reports.OrderBy(r => r.Step).ToArray();
        if (points.Length == 0)
        {
            throw new ArgumentException("No progress reports to draw.", nameof(reports));
        }

        int height = Height;
        var canvas = new Canvas(width, height);
        canvas.Fill(Background);
        double lastStep = Math.Max(1, points[^1].Step);
        double[] steps = points.Select(p => (double)p.Step).ToArray();
        double[] loss = points.Select(p => p.Loss).ToArray();
        bool logLoss = loss.Where(double.IsFinite).DefaultIfEmpty(0).All(v => v > 0) && loss.Any(double.IsFinite);
        var panels = new (string Title, double[] Values, byte[] Color, Axis Axis)[]
        {
            (logLoss ? "LOSS (LOG SCALE)" : "LOSS", loss, LossColor, logLoss ? Axis.Logarithmic(loss) : Axis.Linear(loss)),
            ("LEARNING RATE", points.Select(p => p.LearningRate).ToArray(), LearningRateColor, Axis.Linear(points.Select(p => p.LearningRate))),
            ("IMAGES/S", points.Select(p => p.ImagesPerSecond).ToArray(), ThroughputColor, Axis.Linear(points.Select(p => p.ImagesPerSecond))),
        };

        var xTicks = Axis.Linear(new[] { lastStep }).Ticks.Where(t => t <= lastStep * (1 + 1e-9)).ToArray();
        for (int k = 0; k < panels.Length; k++)
        {
            var (title, values, color, axis) = panels[k];
            var area = PlotArea(k, width);
            foreach (double tick in axis.Ticks)
            {
                int y = area.Y(axis.Fraction(tick));
                canvas.HorizontalLine(area.Left, area.Right, y, GridColor);
                string label = axis.IsLogarithmic ? Label(tick) : Label(tick, axis.Ticks.Max(Math.Abs));
                canvas.Text(label, area.Left - 4 - BitmapFont.Measure(label), y - 3, TextColor);
            }

            foreach (double tick in xTicks)
            {
                canvas.VerticalLine(area.X(tick / lastStep), area.Top, area.Bottom, GridColor);
            }

            canvas.Rectangle(area.Left - 1, area.Top - 1, area.Right + 1, area.Bottom + 1, FrameColor);
            canvas.Text(title, area.Left, area.Top - PanelTitleHeight + 2, TextColor);
            double last = values.LastOrDefault(double.IsFinite, double.NaN);
            if (double.IsFinite(last))
            {
                string text = "LAST " + Label(last);
                canvas.Text(text, area.Right - BitmapFont.Measure(text), area.Top - PanelTitleHeight + 2, color);
            }

            (int X, int Y)? previous = null;
            for (int i = 0; i < values.Length; i++)
            {
                if (!double.IsFinite(values[i]))
                {
                    previous = null;
                    continue;
                }

                var point = (area.X(steps[i] / lastStep), area.Y(axis.Fraction(values[i])));
                if (previous is (int px, int py))
                {
                    canvas.Line(px, py, point.Item1, point.Item2, color);
                }
                else if (i + 1 >= values.Length || !double.IsFinite(values[i + 1]))
                {
                    canvas.Dot(point.Item1, point.Item2, color); // a lone point
                }

                previous = point;
            }
        }

        var bottom = PlotArea(panels.Length - 1, width);
        foreach (double tick in xTicks)
        {
            string label = Label(tick);
            int x = bottom.X(tick / lastStep);
            canvas.Text(label, Math.Clamp(x - (BitmapFont.Measure(label) / 2), 0, width - BitmapFont.Measure(label)), bottom.Bottom + 5, TextColor);
        }

        canvas.Text("STEP", (width - BitmapFont.Measure("STEP")) / 2, bottom.Bottom + 17, TextColor);
        return canvas.ToImage();
    }

    /// <summary>Draws the curves of a run and writes them as PNG (through a temporary file renamed into place).</summary>
    /// <param name="reports">The progress reports.</param>
    /// <param name="path">The destination (folders are created).</param>
    /// <param name="width">The picture's width in pixels.</param>
    public static void Save(IEnumerable<TrainingProgress> reports, string path, int width = 800)
    {
        using var image = Draw(reports, width);
        ImageConversion.SavePng(image, path);
    }

    /// <summary>Gets the picture's height in pixels.</summary>
    internal static int Height => (3 * (PanelTitleHeight + PlotHeight + PanelGap)) + BottomMargin;

    /// <summary>The plot area of panel k (0: loss, 1: learning rate, 2: images/s), inclusive pixel bounds.</summary>
    internal static PlotRectangle PlotArea(int panel, int width)
    {
        int top = (panel * (PanelTitleHeight + PlotHeight + PanelGap)) + PanelTitleHeight + 4;
        return new PlotRectangle(LeftMargin, top, width - RightMargin - 1, top + PlotHeight - 1);
    }

    // Plain decimals for magnitudes in [1e-4, 1e5), else scientific; an axis's labels all follow its largest tick.
    private static string Label(double value, double? scale = null)
    {
        if (value == 0)
        {
            return "0";
        }

        double magnitude = scale ?? Math.Abs(value);
        return magnitude is >= 1e-4 and < 1e5
            ? value.ToString(scale is null ? "0.####" : "0.######", CultureInfo.InvariantCulture)
            : value.ToString("0.##E+0", CultureInfo.InvariantCulture);
    }

    /// <summary>The inclusive pixel bounds of a plot area and the mapping of [0, 1] fractions onto them.</summary>
    internal readonly record struct PlotRectangle(int Left, int Top, int Right, int Bottom)
    {
        public int X(double fraction) => Left + (int)Math.Round(fraction * (Right - Left), MidpointRounding.AwayFromZero);

        public int Y(double fraction) => Bottom - (int)Math.Round(fraction * (Bottom - Top), MidpointRounding.AwayFromZero);
    }

    private sealed class Axis
    {
        private readonly bool logarithmic;
        private readonly double low;
        private readonly double high;

        private Axis(bool logarithmic, double low, double high, double[] ticks)
        {
            this.logarithmic = logarithmic;
            this.low = low;
            this.high = high;
            Ticks = ticks;
        }

        public double[] Ticks { get; }

        public bool IsLogarithmic => logarithmic;

        // From 0 to the largest value rounded up to 1, 2, 2.5 or 5 × 10^k, with ticks at a round step.
        public static Axis Linear(IEnumerable<double> values)
        {
            double max = values.Where(double.IsFinite).DefaultIfEmpty(0).Max();
            if (max <= 0)
            {
                return new Axis(false, 0, 1, new[] { 0.0, 0.5, 1.0 });
            }

            double decade = Math.Pow(10, Math.Floor(Math.Log10(max)));
            double scaled = max / decade;
            (double top, double step) = scaled <= 1 + 1e-9 ? (1, 0.2)
                : scaled <= 2 + 1e-9 ? (2, 0.5)
                : scaled <= 2.5 + 1e-9 ? (2.5, 0.5)
                : scaled <= 5 + 1e-9 ? (5, 1)
                : (10, 2);
            int count = (int)Math.Round(top / step);
            return new Axis(false, 0, top * decade, Enumerable.Range(0, count + 1).Select(i => i * step * decade).ToArray());
        }

        // Whole decades from below the smallest value to above the largest.
        public static Axis Logarithmic(IEnumerable<double> values)
        {
            var finite = values.Where(v => double.IsFinite(v) && v > 0).ToArray();
            int lowExponent = (int)Math.Floor(Math.Log10(finite.Min()) + 1e-9);
            int highExponent = (int)Math.Ceiling(Math.Log10(finite.Max()) - 1e-9);
            if (highExponent <= lowExponent)
            {
                highExponent = lowExponent + 1;
            }

            var ticks = Enumerable.Range(lowExponent, highExponent - lowExponent + 1).Select(e => Math.Pow(10, e)).ToArray();
            return new Axis(true, lowExponent, highExponent, ticks);
        }

        public double Fraction(double value) => logarithmic
            ? (Math.Log10(value) - low) / (high - low)
            : (value - low) / (high - low);
    }

    private sealed class Canvas
    {
        private readonly int width;
        private readonly int height;
        private readonly byte[] pixels;

        public Canvas(int width, int height)
        {
            this.width = width;
            this.height = height;
            pixels = new byte[3 * width * height];
        }

        public void Fill(byte[] color)
        {
            for (int c = 0; c < 3; c++)
            {
                Array.Fill(pixels, color[c], c * width * height, width * height);
            }
        }

        public void Set(int x, int y, byte[] color)
        {
            if (x < 0 || y < 0 || x >= width || y >= height)
            {
                return;
            }

            for (int c = 0; c < 3; c++)
            {
                pixels[(c * width * height) + (y * width) + x] = color[c];
            }
        }

        public void HorizontalLine(int x0, int x1, int y, byte[] color)
        {
            for (int x = x0; x <= x1; x++)
            {
                Set(x, y, color);
            }
        }

        public void VerticalLine(int x, int y0, int y1, byte[] color)
        {
            for (int y = y0; y <= y1; y++)
            {
                Set(x, y, color);
            }
        }

        public void Rectangle(int x0, int y0, int x1, int y1, byte[] color)
        {
            HorizontalLine(x0, x1, y0, color);
            HorizontalLine(x0, x1, y1, color);
            VerticalLine(x0, y0, y1, color);
            VerticalLine(x1, y0, y1, color);
        }

        public void Dot(int x, int y, byte[] color)
        {
            for (int dy = -1; dy <= 1; dy++)
            {
                for (int dx = -1; dx <= 1; dx++)
                {
                    Set(x + dx, y + dy, color);
                }
            }
        }

        // Bresenham's line, both end points included.
        public void Line(int x0, int y0, int x1, int y1, byte[] color)
        {
            int dx = Math.Abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
            int dy = -Math.Abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
            int error = dx + dy;
            while (true)
            {
                Set(x0, y0, color);
                if (x0 == x1 && y0 == y1)
                {
                    return;
                }

                int twice = 2 * error;
                if (twice >= dy)
                {
                    error += dy;
                    x0 += sx;
                }

                if (twice <= dx)
                {
                    error += dx;
                    y0 += sy;
                }
            }
        }

        public void Text(string text, int left, int top, byte[] color) => BitmapFont.Draw(pixels, 3, height, width, text, left, top, color: color);

        public MLImage ToImage() => PixelLayout.ToMLImage(pixels, 3, height, width);
    }
}
