using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Diffusion.Tools.Pictures;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Tools.Pictures;

[TestClass]
public sealed class TrainingCurveTests
{
    private const int Width = 800;

    // A known run of 1000 steps: the loss falls from 1 to 0.01 as 10^(−step/500) (a straight line on a log axis); the
    // learning rate warms up linearly to 2e-3 over 200 steps, then stays; the throughput is 100 images/s, then 200 from
    // step 500 on.
    private static List<TrainingProgress> KnownRun() => Enumerable.Range(0, 101).Select(i => i * 10).Select(step => new TrainingProgress(
        step, 1000, Math.Pow(10, -step / 500.0), step < 200 ? 2e-3 * step / 200 : 2e-3, step < 500 ? 100 : 200, TimeSpan.Zero, TimeSpan.Zero, 0)).ToList();

    [TestMethod]
    public void AKnownSeriesDrawsItsLinesThroughTheExpectedPixels()
    {
        using var image = TrainingCurve.Draw(KnownRun(), Width);
        Assert.AreEqual(Width, image.Width);
        Assert.AreEqual(TrainingCurve.Height, image.Height);

        var loss = TrainingCurve.PlotArea(0, Width);
        var lr = TrainingCurve.PlotArea(1, Width);
        var speed = TrainingCurve.PlotArea(2, Width);
        foreach (var area in new[] { loss, lr, speed })
        {
            // The frame sits one pixel outside each plot area.
            Assert.IsTrue(Is(image, area.Left - 1, (area.Top + area.Bottom) / 2, TrainingCurve.FrameColor), "left edge of the frame");
            Assert.IsTrue(Is(image, (area.Left + area.Right) / 2, area.Bottom + 1, TrainingCurve.FrameColor), "bottom edge of the frame");
        }

        // x: step 0 at the left edge, step 1000 at the right. Loss axis: log10 from 0.01 (bottom) to 1 (top).
        int X(TrainingCurve.PlotRectangle a, double step) => a.Left + (int)Math.Round(step / 1000 * (a.Right - a.Left), MidpointRounding.AwayFromZero);
        int Y(TrainingCurve.PlotRectangle a, double fraction) => a.Bottom - (int)Math.Round(fraction * (a.Bottom - a.Top), MidpointRounding.AwayFromZero);
        foreach (int step in new[] { 0, 250, 500, 750, 1000 })
        {
            double fraction = (Math.Log10(Math.Pow(10, -step / 500.0)) + 2) / 2;
            AssertLineNear(image, X(loss, step), Y(loss, fraction), TrainingCurve.LossColor, $"loss at step {step}");
        }

        // The loss line never visits the top-right or bottom-left corner.
        Assert.IsFalse(Is(image, X(loss, 900), Y(loss, 0.95), TrainingCurve.LossColor));
        Assert.IsFalse(Is(image, X(loss, 100), Y(loss, 0.05), TrainingCurve.LossColor));

        // Learning rate: axis 0 … 2e-3; the ramp reaches half height at step 100, the plateau is the top row.
        AssertLineNear(image, X(lr, 0), Y(lr, 0), TrainingCurve.LearningRateColor, "lr at step 0");
        AssertLineNear(image, X(lr, 100), Y(lr, 0.5), TrainingCurve.LearningRateColor, "lr at step 100");
        foreach (int step in new[] { 300, 600, 900 })
        {
            Assert.IsTrue(Is(image, X(lr, step), Y(lr, 1), TrainingCurve.LearningRateColor), $"lr plateau at step {step}");
            Assert.IsFalse(Is(image, X(lr, step), Y(lr, 0.5), TrainingCurve.LearningRateColor), $"nothing at half height at step {step}");
        }

        // Images/s: axis 0 … 200; 100 (half height) before step 500, 200 (top) after, joined by a steep segment.
        Assert.IsTrue(Is(image, X(speed, 250), Y(speed, 0.5), TrainingCurve.ThroughputColor), "100 images/s");
        Assert.IsTrue(Is(image, X(speed, 750), Y(speed, 1), TrainingCurve.ThroughputColor), "200 images/s");
        Assert.IsFalse(Is(image, X(speed, 250), Y(speed, 1), TrainingCurve.ThroughputColor));
        Assert.IsFalse(Is(image, X(speed, 750), Y(speed, 0.5), TrainingCurve.ThroughputColor));
    }

    [TestMethod]
    public void TitlesAndAxisLabelsAreWritten()
    {
        using var image = TrainingCurve.Draw(KnownRun(), Width);
        foreach (string text in new[] { "LOSS (LOG SCALE)", "LEARNING RATE", "IMAGES/S", "STEP", "1000", "400", "0.002", "0.0005", "0.01", "200" })
        {
            Assert.IsTrue(Contains(image, text, TrainingCurve.TextColor), $"'{text}' is not in the picture");
        }

        Assert.IsTrue(Contains(image, "LAST 0.01", TrainingCurve.LossColor), "the last loss, in the loss colour");
        Assert.IsFalse(Contains(image, "LAST 0.5", TrainingCurve.LossColor), "the text search does not find what is not there");
    }

    [TestMethod]
    public void ALossWithANonPositiveValueFallsBackToALinearAxisAndGapsAreLeft()
    {
        var run = KnownRun();
        run[50] = run[50] with { Loss = double.NaN };
        run[0] = run[0] with { Loss = 0 };
        using var image = TrainingCurve.Draw(run, Width);
        Assert.IsTrue(Contains(image, "LOSS", TrainingCurve.TextColor));
        Assert.IsFalse(Contains(image, "LOSS (LOG SCALE)", TrainingCurve.TextColor));

        // Linear axis 0 … 1: the loss at step 0 is 0 (bottom row); around the NaN at step 500 the line has a gap.
        var loss = TrainingCurve.PlotArea(0, Width);
        int x500 = loss.Left + (int)Math.Round(0.5 * (loss.Right - loss.Left));
        Assert.IsTrue(Is(image, loss.Left, loss.Bottom, TrainingCurve.LossColor), "0 at the bottom-left corner");
        Assert.IsFalse(Enumerable.Range(loss.Top, loss.Bottom - loss.Top + 1).Any(y => Is(image, x500, y, TrainingCurve.LossColor)), "a gap at step 500");
    }

    [TestMethod]
    public void SaveWritesAPngAndNoReportsIsAnError()
    {
        string path = Path.Combine(Path.GetTempPath(), $"mldiffusion-curve-{Guid.NewGuid():N}", "training-curve.png");
        try
        {
            TrainingCurve.Save(KnownRun().Take(1), path);
            using var image = MLImage.CreateFromFile(path);
            Assert.AreEqual(Width, image.Width);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }

        Assert.ThrowsExactly<ArgumentException>(() => TrainingCurve.Draw(Array.Empty<TrainingProgress>()));
    }

    private static bool Is(MLImage image, int x, int y, byte[] rgb) => PictureAssert.Is(image, x, y, rgb);

    private static bool Contains(MLImage image, string text, byte[] color) => PictureAssert.ContainsText(image, text, color);

    private static void AssertLineNear(MLImage image, int x, int y, byte[] color, string what) =>
        Assert.IsTrue(Enumerable.Range(-1, 3).Any(dy => Is(image, x, y + dy, color)), $"{what}: no line pixel at ({x}, {y}±1)");
}
