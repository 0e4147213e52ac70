using System;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>A progress report of diffusion training.</summary>
/// <param name="Step">Optimizer steps done.</param>
/// <param name="TotalSteps">Optimizer steps planned.</param>
/// <param name="Loss">Mean training loss over the steps since the previous report.</param>
/// <param name="LearningRate">The learning rate of the last step.</param>
/// <param name="ImagesPerSecond">Training images processed per second since the previous report.</param>
/// <param name="Elapsed">Wall-clock time since training started.</param>
/// <param name="EstimatedRemaining">Estimated time to finish at the recent speed.</param>
/// <param name="SkippedSteps">Steps skipped so far because the loss or a gradient was not finite.</param>
public sealed record TrainingProgress(
    int Step,
    int TotalSteps,
    double Loss,
    double LearningRate,
    double ImagesPerSecond,
    TimeSpan Elapsed,
    TimeSpan EstimatedRemaining,
    int SkippedSteps)
{
    /// <summary>Gets the fraction done, in [0, 1].</summary>
    public double Fraction => TotalSteps == 0 ? 1 : (double)Step / TotalSteps;

    /// <summary>One line for logs.</summary>
    /// <returns>"step S/T loss L lr R img/s I eta E".</returns>
    public override string ToString() => FormattableString.Invariant(
        $"step {Step}/{TotalSteps}  loss {Loss:F5}  lr {LearningRate:G3}  {ImagesPerSecond:F1} img/s  elapsed {Elapsed:hh\\:mm\\:ss}  eta {EstimatedRemaining:hh\\:mm\\:ss}{(SkippedSteps > 0 ? $"  skipped {SkippedSteps}" : string.Empty)}");
}
