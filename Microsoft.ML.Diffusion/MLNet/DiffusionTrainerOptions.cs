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
/// <remarks>
/// The diffusion's settings are those of one <see cref="GaussianDiffusionOptions"/> (the model's description, which the
/// model file stores) and the training loop's those of one core settings object: the properties here read and write them,
/// nothing is copied. The network's channels, learned-variance output and class count come from <see cref="Channels"/>,
/// <see cref="Variance"/> and the data when training starts.
/// </remarks>
public sealed class DiffusionTrainerOptions
{
    private int imageSize = GaussianDiffusionOptions.Defaults.ImageSize;
    private bool heightSet;
    private bool widthSet;
    private DiffusionModel? initialModel;

    /// <summary>
    /// Gets or sets the image column: an <see cref="Microsoft.ML.Data.MLImage"/> column of the model's size, or a Single or
    /// Byte vector of C·H·W values in [0, 255], planar (as ExtractPixels makes). Default "Image".
    /// </summary>
    public string ImageColumnName { get; set; } = "Image";

    /// <summary>Gets or sets the optional label column (key or integer type); when set the model is class-conditional.</summary>
    public string? LabelColumnName { get; set; }

    /// <summary>Gets or sets the side of square images. Default 32.</summary>
    public int ImageSize
    {
        get => imageSize;
        set
        {
            imageSize = value;
            Diffusion.ImageHeight = heightSet ? Diffusion.ImageHeight : value;
            Diffusion.ImageWidth = widthSet ? Diffusion.ImageWidth : value;
        }
    }

    /// <summary>Gets or sets the image height for non-square images (overrides <see cref="ImageSize"/>).</summary>
    public int? ImageHeight
    {
        get => heightSet ? Diffusion.ImageHeight : null;
        set
        {
            heightSet = value is not null;
            Diffusion.ImageHeight = value ?? imageSize;
        }
    }

    /// <summary>Gets or sets the image width for non-square images (overrides <see cref="ImageSize"/>).</summary>
    public int? ImageWidth
    {
        get => widthSet ? Diffusion.ImageWidth : null;
        set
        {
            widthSet = value is not null;
            Diffusion.ImageWidth = value ?? imageSize;
        }
    }

    /// <summary>Gets or sets the channels: 1 (grayscale) or 3 (RGB). Default 1.</summary>
    public int Channels { get; set; } = 1;

    /// <summary>Gets or sets T, the number of diffusion steps (unless <see cref="CustomBetas"/> are set). Default 1000.</summary>
    public int Timesteps
    {
        get => Diffusion.Timesteps;
        set => Diffusion.Timesteps = value;
    }

    /// <summary>Gets or sets the β schedule. Default <see cref="BetaSchedule.Linear"/>.</summary>
    public BetaSchedule Schedule
    {
        get => Diffusion.Schedule;
        set => Diffusion.Schedule = value;
    }

    /// <summary>
    /// Gets or sets the β array, required when <see cref="Schedule"/> is <see cref="BetaSchedule.Custom"/>; when set it is the
    /// schedule (its length sets T), whatever <see cref="Schedule"/> says (which then only names the family it comes from).
    /// </summary>
    public IReadOnlyList<double>? CustomBetas
    {
        get => Diffusion.Betas;
        set => Diffusion.Betas = value;
    }

    /// <summary>Gets or sets what the network predicts. Default <see cref="PredictionTarget.Noise"/>.</summary>
    public PredictionTarget Objective
    {
        get => Diffusion.Objective;
        set => Diffusion.Objective = value;
    }

    /// <summary>Gets or sets the distance of the simple loss. Default <see cref="DiffusionLoss.MeanSquaredError"/>.</summary>
    public DiffusionLoss Loss
    {
        get => Diffusion.Loss;
        set => Diffusion.Loss = value;
    }

    /// <summary>Gets or sets the reverse-process variance; <see cref="VarianceType.LearnedRange"/> trains with the hybrid loss. Default fixed small.</summary>
    public VarianceType Variance
    {
        get => Diffusion.Variance;
        set => Diffusion.Variance = value;
    }

    /// <summary>Gets or sets γ of min-SNR-γ weighting, or null for none.</summary>
    public double? MinSnrGamma
    {
        get => Diffusion.MinSnrGamma;
        set => Diffusion.MinSnrGamma = value;
    }

    /// <summary>Gets or sets the network's kind and shape; its channels, learned variance and class count are set from these options and the data.</summary>
    public DenoiserOptions Network
    {
        get => Diffusion.Network;
        set => Diffusion.Network = value;
    }

    /// <summary>Gets or sets images per micro-batch. Default 32.</summary>
    public int BatchSize
    {
        get => Training.BatchSize;
        set => Training.BatchSize = value;
    }

    /// <summary>Gets or sets the number of optimizer steps. Default 2000.</summary>
    public int TrainSteps
    {
        get => Training.TrainSteps;
        set => Training.TrainSteps = value;
    }

    /// <summary>Gets or sets the peak learning rate of AdamW. Default 2e-4.</summary>
    public double LearningRate
    {
        get => Training.LearningRate;
        set => Training.LearningRate = value;
    }

    /// <summary>Gets or sets AdamW's decoupled weight decay. Default 0.</summary>
    public double WeightDecay
    {
        get => Training.WeightDecay;
        set => Training.WeightDecay = value;
    }

    /// <summary>Gets or sets the linear warm-up length in steps; null means min(500, TrainSteps / 10).</summary>
    public int? WarmupSteps
    {
        get => Training.WarmupSteps;
        set => Training.WarmupSteps = value;
    }

    /// <summary>Gets or sets the maximum global gradient norm (0 = no clipping). Default 1.</summary>
    public double GradientClip
    {
        get => Training.GradientClip;
        set => Training.GradientClip = value;
    }

    /// <summary>Gets or sets micro-batches per optimizer step; the effective batch is BatchSize × this. Default 1.</summary>
    public int GradientAccumulationSteps
    {
        get => Training.GradientAccumulationSteps;
        set => Training.GradientAccumulationSteps = value;
    }

    /// <summary>
    /// Gets or sets the number of images the network processes at once within a batch, or null for the whole batch. The
    /// gradient is still that of the batch's mean loss (each chunk weighted by its share of the batch), so only the memory
    /// schedule changes; it equals the unchunked gradient up to rounding for the same timesteps and noise, but each chunk
    /// draws its own timesteps and noise, so a run with chunks follows a different random stream from the same run without
    /// (and resuming a checkpoint needs the same value). On the CPU, batches whose activations exceed glibc's 32 MB mmap
    /// threshold are slower per image than smaller chunks (measured in docs/performance.md), so splitting large batches pays.
    /// </summary>
    public int? MicroBatchSize
    {
        get => Training.MicroBatchSize;
        set => Training.MicroBatchSize = value;
    }

    /// <summary>Gets or sets the ceiling of the EMA decay (the decay ramps up to it); 0 disables the average. Default 0.995.</summary>
    public double EmaDecay
    {
        get => Training.EmaDecay;
        set => Training.EmaDecay = value;
    }

    /// <summary>Gets or sets a value indicating whether training images are flipped left–right at random. Default false.</summary>
    public bool RandomHorizontalFlip
    {
        get => Training.RandomHorizontalFlip;
        set => Training.RandomHorizontalFlip = value;
    }

    /// <summary>Gets or sets the probability of dropping a label during training (enables classifier-free guidance). Default 0.1.</summary>
    public double ConditionDropout
    {
        get => Training.ConditionDropout;
        set => Training.ConditionDropout = value;
    }

    /// <summary>Gets or sets the device: "cpu", "cuda" or "cuda:N". Default "cpu".</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>
    /// Gets or sets the seed of initialisation, data order and noise; null takes one from the <see cref="MLContext"/>'s
    /// random source (as ML.NET's trainers do), so <c>new MLContext(seed: 1)</c> makes training repeatable.
    /// </summary>
    public int? Seed { get; set; }

    /// <summary>Gets or sets how often (in steps) progress is reported. Default 50.</summary>
    public int LogEvery
    {
        get => Training.LogEvery;
        set => Training.LogEvery = value;
    }

    /// <summary>Gets or sets how many consecutive non-finite steps stop training with an error. Default 10.</summary>
    public int MaxConsecutiveNonFiniteSteps
    {
        get => Training.MaxConsecutiveNonFiniteSteps;
        set => Training.MaxConsecutiveNonFiniteSteps = value;
    }

    /// <summary>Gets or sets the folder for training checkpoints, or null for none.</summary>
    public string? CheckpointDirectory
    {
        get => Training.CheckpointDirectory;
        set => Training.CheckpointDirectory = value;
    }

    /// <summary>Gets or sets how often (in steps) a checkpoint is written; one is always written at the end. Default 500.</summary>
    public int CheckpointEvery
    {
        get => Training.CheckpointEvery;
        set => Training.CheckpointEvery = value;
    }

    /// <summary>Gets or sets how many of the newest checkpoints are kept. Default 3.</summary>
    public int KeepCheckpoints
    {
        get => Training.KeepCheckpoints;
        set => Training.KeepCheckpoints = value;
    }

    /// <summary>
    /// Gets or sets a value indicating whether training continues from the newest checkpoint in <see cref="CheckpointDirectory"/>
    /// (bit-exactly on the CPU: N steps, stop, resume, N more = 2N steps). Default false.
    /// </summary>
    public bool Resume
    {
        get => Training.Resume;
        set => Training.Resume = value;
    }

    // ---- Mixed precision (docs/mixed-precision.md); checked by the training settings' Validate. ----

    /// <summary>
    /// Gets or sets the precision of the network's forward and backward passes. <see cref="Precision.BFloat16"/> and
    /// <see cref="Precision.Float16"/> keep float32 master weights (the optimizer, the EMA, checkpoints and the model file
    /// stay float32) and run a 16-bit copy of the network, with normalisations, softmax, the loss and the schedule maths in
    /// float32; Float16 also scales the loss dynamically (<see cref="InitialLossScale"/>, <see cref="LossScaleGrowthInterval"/>).
    /// On a CPU without native 16-bit arithmetic (AVX512-BF16/AMX) training warns that it is slower than Float32 and goes on.
    /// Default <see cref="Precision.Float32"/>.
    /// </summary>
    public Precision Precision
    {
        get => Training.Precision;
        set => Training.Precision = value;
    }

    /// <summary>Gets or sets the first loss scale of <see cref="Precision.Float16"/> training (torch's GradScaler default). Default 65536 (2¹⁶).</summary>
    public double InitialLossScale
    {
        get => Training.InitialLossScale;
        set => Training.InitialLossScale = value;
    }

    /// <summary>
    /// Gets or sets how many steps in a row without a gradient overflow double the loss scale of <see cref="Precision.Float16"/>
    /// training (an overflow skips the step and halves it). Default 2000.
    /// </summary>
    public int LossScaleGrowthInterval
    {
        get => Training.LossScaleGrowthInterval;
        set => Training.LossScaleGrowthInterval = value;
    }

    /// <summary>Gets or sets the sampler settings of the trained <see cref="DiffusionSampler"/>.</summary>
    public DiffusionSamplerOptions Sampling { get; set; } = new();

    /// <summary>
    /// Gets or sets a wall-clock budget for training: when it is used up, training ends cleanly after the current step (the
    /// model is complete, with <see cref="DiffusionModel.TrainedSteps"/> the steps actually taken). Null: no budget.
    /// </summary>
    public TimeSpan? MaxTrainingTime
    {
        get => Training.MaxTrainingTime;
        set => Training.MaxTrainingTime = value;
    }

    /// <summary>Gets or sets a token that stops training between steps (Fit then throws <see cref="OperationCanceledException"/>).</summary>
    public CancellationToken CancellationToken
    {
        get => Training.CancellationToken;
        set => Training.CancellationToken = value;
    }

    /// <summary>Gets or sets an optional receiver of progress reports.</summary>
    public IProgress<TrainingProgress>? Progress { get; set; }

    /// <summary>
    /// Gets or sets a model to train further (fine-tuning), for example one imported with
    /// <c>Import.DiffusersPipeline.Import</c> or loaded from a model file, or null to start from fresh weights. Setting it
    /// copies the model's description into these options — its image size, <see cref="Channels"/>, schedule (exact β
    /// values), <see cref="Objective"/>, <see cref="Variance"/> and <see cref="Network"/> — keeping <see cref="Loss"/> and
    /// <see cref="MinSnrGamma"/>; training then starts from its (sampling) weights. The data must have its channels and
    /// size and, for a class-conditional model, its number of classes. The model is read, never changed; its owner
    /// disposes it, not before <see cref="DiffusionTrainer.Fit"/> returns.
    /// </summary>
    public DiffusionModel? InitialModel
    {
        get => initialModel;
        set
        {
            initialModel = value;
            if (value is null)
            {
                return;
            }

            var description = value.Config.Diffusion.Clone();
            description.Loss = Diffusion.Loss;
            description.MinSnrGamma = Diffusion.MinSnrGamma;
            description.HybridLambda = Diffusion.HybridLambda;
            Diffusion = description;
            Channels = value.Channels;
            imageSize = value.ImageHeight;
            heightSet = widthSet = value.ImageHeight != value.ImageWidth;
        }
    }

    /// <summary>Gets the effective image height.</summary>
    public int Height => Diffusion.ImageHeight;

    /// <summary>Gets the effective image width.</summary>
    public int Width => Diffusion.ImageWidth;

    /// <summary>Gets the effective warm-up length.</summary>
    public int EffectiveWarmupSteps => Training.EffectiveWarmupSteps;

    /// <summary>Gets the diffusion's description, which the diffusion properties of these options read and write.</summary>
    internal GaussianDiffusionOptions Diffusion { get; private set; } = new();

    /// <summary>Gets the training loop's settings, which the training properties of these options read and write.</summary>
    internal TrainingSettings Training { get; private set; } = new();

    /// <summary>
    /// Returns a deep copy: every setting, with its own <see cref="Network"/>, <see cref="Sampling"/> and
    /// <see cref="CustomBetas"/>; the <see cref="CancellationToken"/> and the <see cref="Progress"/> receiver are shared.
    /// </summary>
    /// <returns>The copy.</returns>
    public DiffusionTrainerOptions Clone()
    {
        var copy = (DiffusionTrainerOptions)MemberwiseClone();
        copy.Diffusion = Diffusion.Clone();
        copy.Training = Training.Clone();
        copy.Sampling = Sampling?.Clone()!;
        return copy;
    }

    /// <summary>Throws a clear exception for an invalid value.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ImageColumnName))
        {
            throw new ArgumentException("ImageColumnName must name a column.", nameof(ImageColumnName));
        }

        if (Channels is not (1 or 3))
        {
            throw new ArgumentOutOfRangeException(nameof(Channels), $"Channels must be 1 or 3; got {Channels}.");
        }

        ArgumentNullException.ThrowIfNull(Network, nameof(Network));
        ArgumentNullException.ThrowIfNull(Sampling, nameof(Sampling));
        Training.Validate();
        var model = DescribeModel(Network.ClassCount);
        model.Validate();
        Sampling.Validate();

        // The sampler of the trained model (and of every milestone) must fit the schedule: checked now, not after training.
        using (var scheduler = Sampling.Scheduler.Clone())
        {
            try
            {
                scheduler.SetTimesteps(model.CreateSchedule());
            }
            catch (ArgumentException ex)
            {
                throw new ArgumentOutOfRangeException(nameof(Sampling), $"Sampling.Scheduler does not fit the schedule of {model.CreateSchedule().Timesteps} timesteps: {ex.Message.Split(" (Parameter", 2)[0]}");
            }
        }

        _ = Torch.ParseDevice(Device);
        if (initialModel is not null)
        {
            var initial = initialModel.Config.Diffusion;
            if (Height != initial.ImageHeight || Width != initial.ImageWidth || Channels != initial.Network.Channels || Variance != initial.Variance || Network.Kind != initial.Network.Kind)
            {
                throw new ArgumentException(
                    $"InitialModel is a {initial.Network.Kind} for {initial.Network.Channels}×{initial.ImageHeight}×{initial.ImageWidth} images with variance {initial.Variance}; "
                    + $"these options were changed after it was set to a {Network.Kind} for {Channels}×{Height}×{Width} with variance {Variance}. Set InitialModel last.",
                    nameof(InitialModel));
            }
        }
    }

    /// <summary>
    /// Estimates the memory training with these options needs — the network's parameters and their training state, the
    /// activations of one forward and backward pass, the training images — from the options alone, before anything is
    /// allocated. <see cref="DiffusionTrainer.Fit"/> refuses a run whose estimate exceeds the memory available
    /// (<see cref="TrainingMemoryEstimate.AvailableBytes"/>) on the CPU.
    /// </summary>
    /// <param name="imageCount">The number of training images (0 when not known: the data are then not counted).</param>
    /// <param name="classCount">The number of classes of the data (0: unconditional).</param>
    /// <returns>The estimate.</returns>
    /// <exception cref="ArgumentException">The options are invalid (<see cref="Validate"/>).</exception>
    public TrainingMemoryEstimate EstimateMemory(long imageCount, int classCount = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(imageCount);
        ArgumentOutOfRangeException.ThrowIfNegative(classCount);
        DescribeModel(classCount).Validate();
        Training.Validate();
        return TrainingMemoryEstimate.For(this, imageCount, classCount);
    }

    /// <summary>
    /// The model these options describe for data of <paramref name="classCount"/> classes: a copy of the description whose
    /// network takes its channels from <see cref="Channels"/>, its learned-variance output from <see cref="Variance"/> and
    /// its class count from the data.
    /// </summary>
    internal GaussianDiffusionOptions DescribeModel(int classCount)
    {
        var model = Diffusion.Clone();
        model.Network.Channels = Channels;
        model.Network.LearnedVariance = Variance == VarianceType.LearnedRange;
        model.Network.ClassCount = classCount;
        return model;
    }
}
