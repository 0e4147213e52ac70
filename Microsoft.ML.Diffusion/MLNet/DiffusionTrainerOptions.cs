using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Core.Training;

namespace Microsoft.ML.Diffusion;

/// <summary>Options of <see cref="DiffusionTrainer"/>: the data, the diffusion, the network and the training loop.</summary>
public sealed class DiffusionTrainerOptions
{
    /// <summary>
    /// Gets or sets the image column: an <see cref="Microsoft.ML.Data.MLImage"/> column of the model's size, or a Single or
    /// Byte vector of C·H·W values in [0, 255], planar (as ExtractPixels makes). Default "Image".
    /// </summary>
    public string ImageColumnName { get; set; } = "Image";

    /// <summary>Gets or sets the optional label column (key or integer type); when set the model is class-conditional.</summary>
    public string? LabelColumnName { get; set; }

    /// <summary>Gets or sets the side of square images. Default 32.</summary>
    public int ImageSize { get; set; } = 32;

    /// <summary>Gets or sets the image height for non-square images (overrides <see cref="ImageSize"/>).</summary>
    public int? ImageHeight { get; set; }

    /// <summary>Gets or sets the image width for non-square images (overrides <see cref="ImageSize"/>).</summary>
    public int? ImageWidth { get; set; }

    /// <summary>Gets or sets the channels: 1 (grayscale) or 3 (RGB). Default 1.</summary>
    public int Channels { get; set; } = 1;

    /// <summary>Gets or sets T, the number of diffusion steps. Default 1000.</summary>
    public int Timesteps { get; set; } = 1000;

    /// <summary>Gets or sets the β schedule. Default <see cref="BetaSchedule.Linear"/>.</summary>
    public BetaSchedule Schedule { get; set; } = BetaSchedule.Linear;

    /// <summary>Gets or sets the β array when <see cref="Schedule"/> is <see cref="BetaSchedule.Custom"/> (its length sets T).</summary>
    public IReadOnlyList<double>? CustomBetas { get; set; }

    /// <summary>Gets or sets what the network predicts. Default <see cref="PredictionTarget.Noise"/>.</summary>
    public PredictionTarget Objective { get; set; } = PredictionTarget.Noise;

    /// <summary>Gets or sets the distance of the simple loss. Default <see cref="DiffusionLoss.MeanSquaredError"/>.</summary>
    public DiffusionLoss Loss { get; set; } = DiffusionLoss.MeanSquaredError;

    /// <summary>Gets or sets the reverse-process variance; <see cref="VarianceType.LearnedRange"/> trains with the hybrid loss. Default fixed small.</summary>
    public VarianceType Variance { get; set; } = VarianceType.FixedSmall;

    /// <summary>Gets or sets γ of min-SNR-γ weighting, or null for none.</summary>
    public double? MinSnrGamma { get; set; }

    /// <summary>Gets or sets the U-Net's shape; its channels, learned variance and class count are set from these options.</summary>
    public DenoiserOptions Network { get; set; } = new UNetOptions();

    /// <summary>Gets or sets images per micro-batch. Default 32.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>Gets or sets the number of optimizer steps. Default 2000.</summary>
    public int TrainSteps { get; set; } = 2000;

    /// <summary>Gets or sets the peak learning rate of AdamW. Default 2e-4.</summary>
    public double LearningRate { get; set; } = 2e-4;

    /// <summary>Gets or sets AdamW's decoupled weight decay. Default 0.</summary>
    public double WeightDecay { get; set; }

    /// <summary>Gets or sets the linear warm-up length in steps; null means min(500, TrainSteps / 10).</summary>
    public int? WarmupSteps { get; set; }

    /// <summary>Gets or sets the maximum global gradient norm (0 = no clipping). Default 1.</summary>
    public double GradientClip { get; set; } = 1.0;

    /// <summary>Gets or sets micro-batches per optimizer step; the effective batch is BatchSize × this. Default 1.</summary>
    public int GradientAccumulationSteps { get; set; } = 1;

    /// <summary>
    /// Gets or sets the number of images the network processes at once within a batch, or null for the whole batch. The
    /// gradient is still that of the batch's mean loss (each chunk weighted by its share of the batch), so only the memory
    /// schedule changes; it equals the unchunked gradient up to rounding for the same timesteps and noise, but each chunk
    /// draws its own timesteps and noise, so a run with chunks follows a different random stream from the same run without
    /// (and resuming a checkpoint needs the same value). On the CPU, batches whose activations exceed glibc's 32 MB mmap
    /// threshold are slower per image than smaller chunks (measured in docs/performance.md), so splitting large batches pays.
    /// </summary>
    public int? MicroBatchSize { get; set; }

    /// <summary>Gets or sets the ceiling of the EMA decay (the decay ramps up to it); 0 disables the average. Default 0.995.</summary>
    public double EmaDecay { get; set; } = 0.995;

    /// <summary>Gets or sets a value indicating whether training images are flipped left–right at random. Default false.</summary>
    public bool RandomHorizontalFlip { get; set; }

    /// <summary>Gets or sets the probability of dropping a label during training (enables classifier-free guidance). Default 0.1.</summary>
    public double ConditionDropout { get; set; } = 0.1;

    /// <summary>Gets or sets the device: "cpu", "cuda" or "cuda:N". Default "cpu".</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>
    /// Gets or sets the seed of initialisation, data order and noise; null takes one from the <see cref="MLContext"/>'s
    /// random source (as ML.NET's trainers do), so <c>new MLContext(seed: 1)</c> makes training repeatable.
    /// </summary>
    public int? Seed { get; set; }

    /// <summary>Gets or sets how often (in steps) progress is reported. Default 50.</summary>
    public int LogEvery { get; set; } = 50;

    /// <summary>Gets or sets how many consecutive non-finite steps stop training with an error. Default 10.</summary>
    public int MaxConsecutiveNonFiniteSteps { get; set; } = 10;

    /// <summary>Gets or sets the folder for training checkpoints, or null for none.</summary>
    public string? CheckpointDirectory { get; set; }

    /// <summary>Gets or sets how often (in steps) a checkpoint is written; one is always written at the end. Default 500.</summary>
    public int CheckpointEvery { get; set; } = 500;

    /// <summary>Gets or sets how many of the newest checkpoints are kept. Default 3.</summary>
    public int KeepCheckpoints { get; set; } = 3;

    /// <summary>
    /// Gets or sets a value indicating whether training continues from the newest checkpoint in <see cref="CheckpointDirectory"/>
    /// (bit-exactly on the CPU: N steps, stop, resume, N more = 2N steps). Default false.
    /// </summary>
    public bool Resume { get; set; }

    /// <summary>Gets or sets the sampler settings of the trained <see cref="DiffusionSampler"/>.</summary>
    public DiffusionSamplerOptions Sampling { get; set; } = new();

    /// <summary>
    /// Gets or sets a wall-clock budget for training: when it is used up, training ends cleanly after the current step (the
    /// model is complete, with <see cref="DiffusionModel.TrainedSteps"/> the steps actually taken). Null: no budget.
    /// </summary>
    public TimeSpan? MaxTrainingTime { get; set; }

    /// <summary>Gets or sets a token that stops training between steps (Fit then throws <see cref="OperationCanceledException"/>).</summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>Gets or sets an optional receiver of progress reports.</summary>
    public IProgress<TrainingProgress>? Progress { get; set; }

    /// <summary>Gets the effective image height.</summary>
    public int Height => ImageHeight ?? ImageSize;

    /// <summary>Gets the effective image width.</summary>
    public int Width => ImageWidth ?? ImageSize;

    /// <summary>Gets the effective warm-up length.</summary>
    public int EffectiveWarmupSteps => WarmupSteps ?? Math.Min(500, TrainSteps / 10);

    /// <summary>The training loop's settings these options describe.</summary>
    internal TrainingSettings ToTrainingSettings() => new()
    {
        BatchSize = BatchSize,
        MicroBatchSize = MicroBatchSize,
        GradientAccumulationSteps = GradientAccumulationSteps,
        TrainSteps = TrainSteps,
        LearningRate = LearningRate,
        WeightDecay = WeightDecay,
        WarmupSteps = EffectiveWarmupSteps,
        GradientClip = GradientClip,
        EmaDecay = EmaDecay,
        RandomHorizontalFlip = RandomHorizontalFlip,
        ConditionDropout = ConditionDropout,
        MaxConsecutiveNonFiniteSteps = MaxConsecutiveNonFiniteSteps,
        LogEvery = LogEvery,
        MaxTrainingTime = MaxTrainingTime,
        CheckpointDirectory = CheckpointDirectory,
        CheckpointEvery = CheckpointEvery,
        KeepCheckpoints = KeepCheckpoints,
        Resume = Resume,
        CancellationToken = CancellationToken,
    };

    /// <summary>
    /// Returns a deep copy: every setting, with its own <see cref="Network"/>, <see cref="Sampling"/> and
    /// <see cref="CustomBetas"/>; the <see cref="CancellationToken"/> and the <see cref="Progress"/> receiver are shared.
    /// </summary>
    /// <returns>The copy.</returns>
    public DiffusionTrainerOptions Clone()
    {
        var copy = (DiffusionTrainerOptions)MemberwiseClone();
        copy.Network = Network?.Clone()!;
        copy.Sampling = Sampling?.Clone()!;
        copy.CustomBetas = CustomBetas?.ToArray();
        return copy;
    }

    /// <summary>Throws a clear exception for an invalid value.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ImageColumnName))
        {
            throw new ArgumentException("ImageColumnName must name a column.", nameof(ImageColumnName));
        }

        Check(Height >= 1 && Width >= 1, nameof(ImageSize), $"Image size must be positive; got {Height}×{Width}.");
        Check(Channels is 1 or 3, nameof(Channels), $"Channels must be 1 or 3; got {Channels}.");
        Check(Schedule == BetaSchedule.Custom ? CustomBetas is { Count: >= 2 } : Timesteps >= 2, nameof(Timesteps), "At least 2 timesteps (or CustomBetas with at least 2 values) are needed.");
        Check(Enum.IsDefined(Objective) && Enum.IsDefined(Loss) && Enum.IsDefined(Variance) && Enum.IsDefined(Schedule), nameof(Objective), "Unknown objective, loss, variance or schedule.");
        Check(MinSnrGamma is null || MinSnrGamma > 0, nameof(MinSnrGamma), "MinSnrGamma must be positive.");
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
        Check(MaxConsecutiveNonFiniteSteps >= 1, nameof(MaxConsecutiveNonFiniteSteps), "MaxConsecutiveNonFiniteSteps must be positive.");
        ArgumentNullException.ThrowIfNull(Network, nameof(Network));
        ArgumentNullException.ThrowIfNull(Sampling, nameof(Sampling));
        Network.Validate();
        Sampling.Validate();
        int divisor = Network.SizeDivisor;
        Check(
            Height % divisor == 0 && Width % divisor == 0,
            nameof(ImageSize),
            Network is UNetOptions unet
                ? $"Image size {Height}×{Width} must be divisible by {divisor} = 2^(levels − 1) for a U-Net with {unet.Levels} levels (DimMults); resize the images or use fewer levels."
                : $"Image size {Height}×{Width} must be divisible by {divisor}, the {Network.Kind}'s size divisor; resize the images.");
        _ = Torch.ParseDevice(Device);
    }

    private static void Check(bool condition, string name, string message)
    {
        if (!condition)
        {
            throw new ArgumentOutOfRangeException(name, message);
        }
    }
}
