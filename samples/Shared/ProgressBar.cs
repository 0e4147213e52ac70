using System;
using System.IO;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Training;

namespace DiffusionSamples;

/// <summary>A one-line console progress bar; plain lines every 10% when the output is not a terminal.</summary>
internal sealed class ProgressBar
{
    private readonly TextWriter console;
    private readonly bool interactive;
    private int lastDecile = -1;

    public ProgressBar(TextWriter console)
    {
        this.console = console;
        interactive = ReferenceEquals(console, Console.Out) && !Console.IsOutputRedirected;
    }

    public void Show(TrainingProgress p, TimeSpan? budget)
    {
        double fraction = budget is TimeSpan b ? Math.Min(1, Math.Max(p.Fraction, p.Elapsed / b)) : p.Fraction;
        string text = FormattableString.Invariant(
            $"{fraction * 100,3:F0}% step {p.Step,5}  loss {p.Loss:F4}  lr {p.LearningRate:G2}  {p.ImagesPerSecond,5:F0} img/s  {p.Elapsed:mm\\:ss} elapsed  eta {p.EstimatedRemaining:mm\\:ss}");
        if (interactive)
        {
            int filled = (int)(fraction * 30);
            console.Write($"\r[{new string('#', filled)}{new string('.', 30 - filled)}] {text}   ");
            return;
        }

        int decile = (int)(fraction * 10);
        if (decile != lastDecile)
        {
            lastDecile = decile;
            console.WriteLine(text);
        }
    }

    public void Done()
    {
        if (interactive)
        {
            console.WriteLine();
        }
    }
}
