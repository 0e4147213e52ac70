using System;
using System.Linq;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Distributed;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using TorchSharp;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// Trains a denoising diffusion model (a U-Net noise predictor) on the images of an <see cref="IDataView"/> and returns a
/// <see cref="DiffusionSampler"/> that generates new ones.
/// </summary>
/// <remarks>
/// <para>Input: an image column — <see cref="MLImage"/> of the model's size, or a Single/Byte vector of C·H·W pixel values
/// in [0, 255], planar (as ExtractPixels makes) — and optionally a key or integer label column (class-conditional model).</para>
/// <para>Output: the sampler's columns "GeneratedImage" (<see cref="MLImage"/>) and "GeneratedPixels" (Single vector).</para>
/// <para>Algorithm (Ho et al. 2020, Algorithm 1): repeat — take a batch x₀, t ~ U{1…T}, ε ~ N(0, I), and step AdamW on
/// ‖target − f_θ(√ᾱ_t x₀ + √(1 − ᾱ_t) ε, t)‖, the target being ε, x₀ or v; with learned variance the hybrid loss
/// L_simple + λ·L_vlb (Nichol &amp; Dhariwal 2021). Sampling uses the exponential moving average of the weights.</para>
/// <para>Characteristics: unsupervised (labels optional); needs normalization: no (pixels are scaled to [−1, 1]);
/// needs caching: no (the images are read into memory once).</para>
/// </remarks>
public sealed class DiffusionTrainer : IEstimator<DiffusionSampler>
{
    private readonly IHost host;
    private readonly DiffusionTrainerOptions options;

    internal DiffusionTrainer(IHostEnvironment env, DiffusionTrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(options);
        host = env.Register(nameof(DiffusionTrainer));
        options.Validate();
        this.options = options.Clone();
    }

    /// <summary>Trains on the data. Validates the columns first; fails with an exception naming the column and what it expected.</summary>
    /// <param name="input">Training data.</param>
    /// <returns>The trained sampler.</returns>
    public DiffusionSampler Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        options.Validate();
        int height = options.Height, width = options.Width, channels = options.Channels;
        ImageBatchReader.ValidateSchema(input.Schema, options.ImageColumnName, options.LabelColumnName, channels, height, width);
        // Under mpirun every rank trains a share of each global batch (Collective.World; a plain process is a world of 1).
        var world = Collective.World;
        var device = Torch.ParseDevice(options.Device);
        if (world.WorldSize > 1 && device.type == DeviceType.CUDA && !options.Device.Contains(':', StringComparison.Ordinal))
        {
            device = new torch.Device(DeviceType.CUDA, world.LocalRank % Math.Max(1, torch.cuda.device_count()));
        }

        CheckMemory(options.EstimateMemory(input.GetRowCount() ?? 0), device);
        using var channel = host.Start("Training");
        try
        {
            return Train(input, channel, device, world);
        }
        catch (Exception ex) when (TrainingMemoryEstimate.DescribeNativeOutOfMemory(ex) is string what)
        {
            throw new InsufficientMemoryException(
                $"Training ran out of memory: {what}. The options' estimate was {options.EstimateMemory(input.GetRowCount() ?? 0)}. "
                + "Lower BatchSize (or set MicroBatchSize), the image size or the network's width.",
                ex);
        }
    }

    /// <summary>The output schema: the input's columns plus the generated image and pixel columns.</summary>
    /// <param name="inputSchema">The input shape.</param>
    /// <returns>The output shape.</returns>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        if (Find(inputSchema, options.ImageColumnName) is not SchemaShape.Column image)
        {
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Image column '{options.ImageColumnName}' is not in the input schema.");
        }

        bool isImage = image.ItemType is ImageDataViewType && image.Kind == SchemaShape.Column.VectorKind.Scalar;
        bool isVector = image.Kind == SchemaShape.Column.VectorKind.Vector && (image.ItemType == NumberDataViewType.Single || image.ItemType == NumberDataViewType.Byte);
        if (!isImage && !isVector)
        {
            throw new ArgumentOutOfRangeException(
                nameof(inputSchema), $"Image column '{options.ImageColumnName}' has type {image.ItemType} ({image.Kind}); expected an image or a fixed-size Single/Byte vector.");
        }

        if (options.LabelColumnName is string label && Find(inputSchema, label) is null)
        {
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Label column '{label}' is not in the input schema.");
        }

        var sampling = options.Sampling;
        var columns = inputSchema.Where(c => c.Name != sampling.OutputImageColumnName && c.Name != sampling.OutputPixelsColumnName).ToList();
        columns.Add(MLNetInternals.Column(sampling.OutputImageColumnName, SchemaShape.Column.VectorKind.Scalar, new ImageDataViewType(options.Height, options.Width)));
        columns.Add(MLNetInternals.Column(sampling.OutputPixelsColumnName, SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single));
        return new SchemaShape(columns);
    }

    // Refuses, before anything large is allocated, a run whose estimate exceeds the memory available. On a GPU the
    // activations live in the device's memory, which is not measured here: only the parameters and the data are compared
    // with the host's memory there (libtorch's own out-of-memory error is translated by Fit).
    private static void CheckMemory(TrainingMemoryEstimate estimate, TorchSharp.torch.Device device)
    {
        if (TrainingMemoryEstimate.AvailableBytes() is not long available)
        {
            return;
        }

        bool cpu = device.type == TorchSharp.DeviceType.CPU;
        long needed = cpu ? estimate.TotalBytes : estimate.ParameterBytes + estimate.DataBytes;
        if (needed > available)
        {
            throw new InsufficientMemoryException(
                $"Training needs {estimate}, but {TrainingMemoryEstimate.Format(available)} of memory is available: "
                + "lower BatchSize (or set MicroBatchSize), the image size or the network's width.");
        }
    }

    private DiffusionSampler Train(IDataView input, IChannel channel, TorchSharp.torch.Device device, Communicator world)
    {
        int height = options.Height, width = options.Width, channels = options.Channels;
        using var data = ImageBatchReader.ReadAll(input, options.ImageColumnName, options.LabelColumnName, channels, height, width);
        if (data.Count < 100 && world.IsRoot)
        {
            channel.Warning(MessageSensitivity.None, $"Only {data.Count} training images: a diffusion model needs many more to generalise; it will mostly reproduce these.");
        }

        // Without a seed, the host's random source (seeded from the MLContext's seed) picks one, as ML.NET's trainers do.
        long seed = world.AgreeWithRoot(options.Seed ?? host.Rand.Next(), "agree on the seed");
        torch.manual_seed(seed);
        var diffusion = options.DescribeModel(data.ClassCount).CreateDiffusion();
        try
        {
            if (options.InitialModel is DiffusionModel initial)
            {
                CopyInitialWeights(initial, diffusion, data.ClassCount);
            }

            // The model file records the built diffusion's description: its exact β values and its network's settings.
            var config = new DiffusionModelConfig
            {
                Diffusion = diffusion.Options,
                ImageColumnName = options.ImageColumnName,
                LabelColumnName = options.LabelColumnName,
                ClassNames = data.ClassNames,
                TrainedSteps = options.TrainSteps,
                Sampling = options.Sampling.Clone(),
            };
            diffusion.to(device);
            if (world.IsRoot)
            {
                string ranks = world.WorldSize > 1 ? FormattableString.Invariant($", {world.WorldSize} ranks ({world.Backend})") : string.Empty;
                channel.Info(MessageSensitivity.None, FormattableString.Invariant(
                    $"Training a diffusion model: {data.Count} images {channels}×{height}×{width}, {diffusion.Model.Options.Kind} {diffusion.Model.ParameterCount:N0} parameters, T = {diffusion.Timesteps} ({diffusion.Schedule.Kind}), objective {options.Objective}, {options.TrainSteps} steps of {options.BatchSize}×{options.GradientAccumulationSteps}, seed {seed}, device {device}{ranks}."));
            }

            var loop = new DiffusionTrainingLoop(
                diffusion,
                options.Training,
                progress =>
                {
                    channel.Info(MessageSensitivity.None, progress.ToString());
                    options.Progress?.Report(progress);
                },
                message => channel.Info(MessageSensitivity.None, message),
                world);
            loop.Run(data, seed, Fingerprint(config, data.Count));
            config.TrainedSteps = loop.CompletedSteps;
            return new DiffusionSampler(host, new DiffusionModel(config, diffusion), options.Sampling);
        }
        catch
        {
            diffusion.Dispose();
            throw;
        }
    }

    // Fine-tuning: the new network starts from the initial model's weights (its sampling weights), parameter by parameter.
    private void CopyInitialWeights(DiffusionModel initial, GaussianDiffusion diffusion, int classCount)
    {
        if (initial.ClassCount != classCount)
        {
            throw new ArgumentException(
                $"InitialModel has {initial.ClassCount} classes, but the data {(options.LabelColumnName is null ? "have no label column" : $"column '{options.LabelColumnName}' has {classCount}")}: a fine-tuned model keeps its classes.",
                nameof(options));
        }

        var source = initial.Diffusion.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        using (torch.no_grad())
        {
            foreach (var (name, parameter) in diffusion.Model.named_parameters())
            {
                if (!source.TryGetValue(name, out var value) || !value.shape.SequenceEqual(parameter.shape))
                {
                    throw new ArgumentException($"InitialModel's network has no parameter '{name}' of shape [{string.Join(", ", parameter.shape)}]: it is not the network these options describe.", nameof(options));
                }

                parameter.copy_(value);
            }
        }
    }

    // What must not change between a checkpoint and the run that resumes from it. Chunks draw their own timesteps and noise,
    // so the micro-batch size is part of it whenever it splits the batch (a size that does not split it changes nothing).
    private string Fingerprint(DiffusionModelConfig config, long rows)
    {
        string chunks = options.MicroBatchSize is int m && m < options.BatchSize ? FormattableString.Invariant($"|chunks of {m}") : string.Empty;
        return FormattableString.Invariant(
            $"{DiffusionModelFile.ConfigJson(config, forFingerprint: true)}|batch {options.BatchSize}×{options.GradientAccumulationSteps}{chunks}|rows {rows}|flip {options.RandomHorizontalFlip}|dropout {options.ConditionDropout}|ema {options.EmaDecay > 0}");
    }

    private static SchemaShape.Column? Find(SchemaShape shape, string name)
    {
        foreach (var column in shape)
        {
            if (column.Name == name)
            {
                return column;
            }
        }

        return null;
    }
}
