namespace DiffusionSamples;

/// <summary>
/// The sample programs' limits on what a command line may ask for, each stated in the option's message when it is
/// exceeded. They bound what the library does not (a step count, a time budget, a picture) or say the library's own
/// limits in the option's words; memory is checked separately, against what the machine has (docs/reliability.md,
/// "Limits").
/// </summary>
internal static class Limits
{
    /// <summary>Optimizer steps, warm-up steps and steps between milestones: 10⁹ (months at the fastest step this library takes).</summary>
    public const int MaxSteps = 1_000_000_000;

    /// <summary>A time budget in minutes: 10⁶ (almost two years; .NET's <c>TimeSpan</c> would overflow near 1.5·10¹⁰).</summary>
    public const double MaxMinutes = 1_000_000;

    /// <summary>Images per step: 2²⁰; the memory check refuses far less on most machines, this keeps the counts in range.</summary>
    public const int MaxBatch = 1 << 20;

    /// <summary>AdamW's peak learning rate: 1 (these networks diverge at once far below it).</summary>
    public const double MaxLearningRate = 1;

    /// <summary>A U-Net level's width, the library's own limit (<c>UNetOptions</c>).</summary>
    public const int MaxWidth = 16_384;

    /// <summary>A U-Net's levels, the library's own limit (<c>UNetOptions</c>).</summary>
    public const int MaxLevels = 16;

    /// <summary>Images in a sample grid: 1,024 (a 32 × 32 grid; each image costs a sampling run at every milestone).</summary>
    public const int MaxSamples = 1024;

    /// <summary>The classifier-free guidance scale: 100 (scales of 1 to 15 are used; far beyond, samples saturate).</summary>
    public const double MaxGuidance = 100;
}
