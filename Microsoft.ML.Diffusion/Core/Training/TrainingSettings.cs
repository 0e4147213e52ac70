using System;
using System.Threading;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>
/// What the training loop needs to know, free of ML.NET: the ML.NET options (<c>DiffusionTrainerOptions</c>)
/// map onto it, and so could any other front end.
/// </summary>
internal sealed record TrainingSettings
{
    public int BatchSize { get; init; } = 32;

    public int? MicroBatchSize { get; init; }

    public int GradientAccumulationSteps { get; init; } = 1;

    public int TrainSteps { get; init; } = 2000;

    public double LearningRate { get; init; } = 2e-4;

    public double WeightDecay { get; init; }

    public int WarmupSteps { get; init; }

    public double GradientClip { get; init; } = 1.0;

    public double EmaDecay { get; init; }

    public bool RandomHorizontalFlip { get; init; }

    public double ConditionDropout { get; init; }

    public int MaxConsecutiveNonFiniteSteps { get; init; } = 10;

    public int LogEvery { get; init; } = 50;

    public TimeSpan? MaxTrainingTime { get; init; }

    public string? CheckpointDirectory { get; init; }

    public int CheckpointEvery { get; init; } = 500;

    public int KeepCheckpoints { get; init; } = 3;

    public bool Resume { get; init; }

    public CancellationToken CancellationToken { get; init; }
}
