using System;
using System.Threading;
using Microsoft.ML.Diffusion.Core.Runtime;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>
/// What the training loop needs to know, free of ML.NET: the ML.NET options (<c>DiffusionTrainerOptions</c>) hold one
/// and show its settings as their own properties, and so could any other front end. It checks itself (<see cref="Validate"/>).
/// </summary>
internal sealed class TrainingSettings
{
    /// <summary>Gets or sets images per micro-batch. Default 32.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>Gets or sets the number of images the network processes at once within a batch, or null for the whole batch.</summary>
    public int? MicroBatchSize { get; set; }

    /// <summary>Gets or sets micro-batches per optimizer step. Default 1.</summary>
    public int GradientAccumulationSteps { get; set; } = 1;

    /// <summary>Gets or sets the number of optimizer steps. Default 2000.</summary>
    public int TrainSteps { get; set; } = 2000;

    /// <summary>Gets or sets the peak learning rate of AdamW. Default 2e-4.</summary>
    public double LearningRate { get; set; } = 2e-4;

    /// <summary>Gets or sets AdamW's decoupled weight decay. Default 0.</summary>
    public double WeightDecay { get; set; }

    /// <summary>Gets or sets the linear warm-up length in steps; null means <see cref="EffectiveWarmupSteps"/>'s default.</summary>
    public int? WarmupSteps { get; set; }

    /// <summary>Gets or sets the maximum global gradient norm (0 = no clipping). Default 1.</summary>
    public double GradientClip { get; set; } = 1.0;

    /// <summary>Gets or sets the ceiling of the EMA decay; 0 disables the average. Default 0.995.</summary>
    public double EmaDecay { get; set; } = 0.995;

    /// <summary>Gets or sets a value indicating whether training images are flipped left–right at random.</summary>
    public bool RandomHorizontalFlip { get; set; }

    /// <summary>Gets or sets the probability of dropping a label during training. Default 0.1.</summary>
    public double ConditionDropout { get; set; } = 0.1;

    /// <summary>Gets or sets how many consecutive non-finite steps stop training with an error. Default 10.</summary>
    public int MaxConsecutiveNonFiniteSteps { get; set; } = 10;

    /// <summary>Gets or sets how often (in steps) progress is reported. Default 50.</summary>
    public int LogEvery { get; set; } = 50;

    /// <summary>Gets or sets a wall-clock budget for training, or null for none.</summary>
    public TimeSpan? MaxTrainingTime { get; set; }

    /// <summary>Gets or sets the folder for training checkpoints, or null for none.</summary>
    public string? CheckpointDirectory { get; set; }

    /// <summary>Gets or sets how often (in steps) a checkpoint is written. Default 500.</summary>
    public int CheckpointEvery { get; set; } = 500;

    /// <summary>Gets or sets how many of the newest checkpoints are kept. Default 3.</summary>
    public int KeepCheckpoints { get; set; } = 3;

    /// <summary>Gets or sets a value indicating whether training continues from the newest checkpoint.</summary>
    public bool Resume { get; set; }

    /// <summary>
    /// Gets or sets the step that a resume must reach at least (0: none required): milestone training continues each
    /// segment from the checkpoint the one before wrote, and a checkpoint folder deleted meanwhile must stop the run, not
    /// start it again from step 0.
    /// </summary>
    internal int RequiredResumeStep { get; set; }

    /// <summary>
    /// Gets or sets how often (in steps) the ranks of a data-parallel run compare a hash of their weights, optimizer and EMA
    /// (also before every checkpoint and at the end). Default 50.
    /// </summary>
    public int ConsistencyCheckEvery { get; set; } = 50;

    // ---- Mixed precision (docs/mixed-precision.md) ----

    /// <summary>Gets or sets the precision of the network's forward and backward passes; the weights stay float32. Default Float32.</summary>
    public Precision Precision { get; set; } = Precision.Float32;

    /// <summary>Gets or sets the first loss scale of <see cref="Precision.Float16"/> training. Default 2¹⁶.</summary>
    public double InitialLossScale { get; set; } = LossScaler.DefaultInitialScale;

    /// <summary>Gets or sets the good steps in a row after which the loss scale grows. Default 2000.</summary>
    public int LossScaleGrowthInterval { get; set; } = LossScaler.DefaultGrowthInterval;

    /// <summary>Gets or sets the loss scale's growth factor. Default 2.</summary>
    public double LossScaleGrowthFactor { get; set; } = 2;

    /// <summary>Gets or sets the loss scale's factor after an overflow. Default 0.5.</summary>
    public double LossScaleBackoffFactor { get; set; } = 0.5;

    /// <summary>Gets or sets a token that stops training between steps.</summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>Gets the warm-up length: <see cref="WarmupSteps"/>, or min(500, <see cref="TrainSteps"/> / 10).</summary>
    public int EffectiveWarmupSteps => WarmupSteps ?? Math.Min(500, TrainSteps / 10);

    /// <summary>Returns a copy (every setting is a value; the token is shared).</summary>
    /// <returns>The copy.</returns>
    public TrainingSettings Clone() => (TrainingSettings)MemberwiseClone();

    /// <summary>Throws a clear exception (naming the setting) for an invalid value.</summary>
    public void Validate()
    {
        Check(BatchSize >= 1, nameof(BatchSize), "BatchSize must be positive.");
        Check(TrainSteps >= 0, nameof(TrainSteps), "TrainSteps must not be negative.");
        Check(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), "LearningRate must be positive.");
        Check(WeightDecay >= 0, nameof(WeightDecay), "WeightDecay must not be negative.");
        Check(WarmupSteps is null || WarmupSteps >= 0, nameof(WarmupSteps), "WarmupSteps must not be negative.");
        Check(GradientClip >= 0, nameof(GradientClip), "GradientClip must not be negative.");
        Check(MicroBatchSize is null || MicroBatchSize >= 1, nameof(MicroBatchSize), "MicroBatchSize must be positive.");
        Check(GradientAccumulationSteps >= 1, nameof(GradientAccumulationSteps), "GradientAccumulationSteps must be at least 1.");
        Check(EmaDecay is >= 0 and < 1, nameof(EmaDecay), "EmaDecay must be in [0, 1).");
        Check(ConditionDropout is >= 0 and < 1, nameof(ConditionDropout), "ConditionDropout must be in [0, 1).");
        Check(LogEvery >= 1, nameof(LogEvery), "LogEvery must be positive.");
        Check(CheckpointEvery >= 1 && KeepCheckpoints >= 1, nameof(CheckpointEvery), "CheckpointEvery and KeepCheckpoints must be positive.");
        Check(MaxTrainingTime is null || MaxTrainingTime > TimeSpan.Zero, nameof(MaxTrainingTime), "MaxTrainingTime must be positive.");
        Check(!Resume || CheckpointDirectory is not null, nameof(Resume), "Resume needs a CheckpointDirectory.");
        Check(ConsistencyCheckEvery >= 1, nameof(ConsistencyCheckEvery), "ConsistencyCheckEvery must be positive.");
        Check(MaxConsecutiveNonFiniteSteps >= 1, nameof(MaxConsecutiveNonFiniteSteps), "MaxConsecutiveNonFiniteSteps must be positive.");

        // Mixed precision.
        Check(Precision.IsDefined(), nameof(Precision), "Precision must be Float32, BFloat16 or Float16.");
        Check(InitialLossScale > 0 && InitialLossScale <= float.MaxValue, nameof(InitialLossScale), "InitialLossScale must be positive and finite in float32.");
        Check(LossScaleGrowthInterval >= 1, nameof(LossScaleGrowthInterval), "LossScaleGrowthInterval must be at least 1 step.");
        Check(LossScaleGrowthFactor > 1 && double.IsFinite(LossScaleGrowthFactor), nameof(LossScaleGrowthFactor), "LossScaleGrowthFactor must be above 1.");
        Check(LossScaleBackoffFactor is > 0 and < 1, nameof(LossScaleBackoffFactor), "LossScaleBackoffFactor must be in (0, 1).");
    }

    private static void Check(bool condition, string name, string message)
    {
        if (!condition)
        {
            throw new ArgumentOutOfRangeException(name, message);
        }
    }
}
