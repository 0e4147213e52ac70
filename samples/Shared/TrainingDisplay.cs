using System;
using System.IO;
using Microsoft.ML.Diffusion.Core.Training;
using Spectre.Console;

namespace DiffusionSamples;

/// <summary>
/// The training progress of the sample programs: step, loss, learning rate, images/s and the time left. On a terminal it is
/// a live Spectre.Console progress bar (other lines print above it); when the output is redirected or is not the console
/// (tests, CI, <c>| tee</c>) it is a plain line at every tenth of the run, as text files and log readers want. Either way it
/// says when the time budget will run out before the learning-rate warm-up is over.
/// </summary>
internal sealed class TrainingDisplay
{
    private readonly TextWriter console;
    private readonly TimeSpan? budget;
    private readonly int warmup;
    private readonly bool live;
    private ProgressTask? task;
    private int lastDecile = -1;
    private bool noted;

    /// <summary>Creates the display.</summary>
    /// <param name="console">Where the program writes; the live bar is used only when this is the console's own, unredirected output.</param>
    /// <param name="budget">The training time budget, or null for a fixed number of steps.</param>
    /// <param name="warmup">The warm-up length in steps (0: none).</param>
    public TrainingDisplay(TextWriter console, TimeSpan? budget, int warmup)
    {
        this.console = console;
        this.budget = budget;
        this.warmup = warmup;
        live = ReferenceEquals(console, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
    }

    /// <summary>Runs <paramref name="train"/>, showing the live bar meanwhile when there is a terminal.</summary>
    public T Run<T>(Func<T> train)
    {
        if (!live)
        {
            return train();
        }

        return AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new ProgressBarColumn { Width = 20 }, new PercentageColumn(), new TaskDescriptionColumn { Alignment = Justify.Left })
            .Start(context =>
            {
                task = context.AddTask("starting…", maxValue: 1000);
                T result = train();
                task.Value = task.MaxValue;
                task.StopTask();
                return result;
            });
    }

    /// <summary>Writes a line of its own (a milestone, a message), above the live bar when there is one.</summary>
    public void WriteLine(string text)
    {
        if (task is not null)
        {
            AnsiConsole.WriteLine(text);
        }
        else
        {
            console.WriteLine(text);
        }
    }

    /// <summary>Shows one progress report.</summary>
    public void Show(TrainingProgress p)
    {
        ArgumentNullException.ThrowIfNull(p);
        double fraction = budget is TimeSpan b ? Math.Min(1, Math.Max(p.Fraction, p.Elapsed / b)) : p.Fraction;
        if (task is not null)
        {
            // Short enough to leave the bar its width on an 80-column terminal; the warm-up note, longer, also prints once above.
            string note = WarmupNote(p);
            if (note.Length > 0 && !noted)
            {
                noted = true;
                AnsiConsole.WriteLine(FormattableString.Invariant(
                    $"At this pace the time budget ends inside the {warmup}-step learning-rate warm-up, near step {ExpectedLastStep(p, budget)}."));
            }

            task.Value = fraction * task.MaxValue;
            task.Description = Markup.Escape(FormattableString.Invariant(
                $"step {p.Step}  loss {p.Loss:F4}  lr {p.LearningRate:G2}  {p.ImagesPerSecond:F0} img/s  {p.EstimatedRemaining:mm\\:ss} left{note}"));
            return;
        }

        string text = FormattableString.Invariant(
            $"step {p.Step,5}  loss {p.Loss:F4}  lr {p.LearningRate:G2}  {p.ImagesPerSecond,5:F0} img/s  {p.Elapsed:mm\\:ss} elapsed  {p.EstimatedRemaining:mm\\:ss} left{WarmupNote(p)}");
        int decile = (int)(fraction * 10);
        if (decile != lastDecile)
        {
            lastDecile = decile;
            console.WriteLine(FormattableString.Invariant($"{fraction * 100,3:F0}% {text}"));
        }
    }

    /// <summary>The step a time budget is expected to stop at, from the pace so far (null without a budget or a pace).</summary>
    public static int? ExpectedLastStep(TrainingProgress p, TimeSpan? budget) =>
        budget is TimeSpan b && p.Elapsed > TimeSpan.Zero && p.Step > 0
            ? (int)Math.Min(p.TotalSteps, p.Step * (b / p.Elapsed))
            : null;

    // "  budget ends in warm-up (~step 140 of 200)" while the pace says the budget will not outlast the warm-up.
    private string WarmupNote(TrainingProgress p) =>
        p.Step < warmup && ExpectedLastStep(p, budget) is int last && last < warmup
            ? FormattableString.Invariant($"  budget ends in warm-up (~step {last} of {warmup})")
            : string.Empty;
}
