using System;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// Sanity limits on a configuration read from a file, checked before anything is allocated from it. A damaged or hostile
/// file must fail with a clear <see cref="InvalidDataException"/>, never with a multi-gigabyte allocation, an overflow or
/// a sampler that runs for hours. The limits are far above any model this library trains on a CPU or a single GPU.
/// </summary>
internal static class ModelLimits
{
    /// <summary>The largest image side in pixels.</summary>
    public const int MaxImageSide = 8192;

    /// <summary>The largest number of diffusion timesteps T.</summary>
    public const int MaxTimesteps = 100_000;

    /// <summary>The largest number of image channels.</summary>
    public const int MaxChannels = 64;

    /// <summary>The largest number of U-Net levels.</summary>
    public const int MaxLevels = 8;

    /// <summary>The largest width of any U-Net level (Dim × multiplier), and of Dim itself.</summary>
    public const int MaxWidth = 16_384;

    /// <summary>The largest number of attention heads, and of channels per head.</summary>
    public const int MaxAttention = 4096;

    /// <summary>The largest number of classes.</summary>
    public const int MaxClasses = 1_000_000;

    /// <summary>The largest network micro-batch a saved sampler may ask for.</summary>
    public const int MaxMicroBatch = 4096;

    /// <summary>The largest number of parameters (their float32 weights must fit one 2 GiB entry).</summary>
    public const long MaxParameters = int.MaxValue / 4;

    /// <summary>
    /// Checks every field of a configuration read from <paramref name="source"/>; throws an <see cref="InvalidDataException"/>
    /// naming the source and the field.
    /// </summary>
    public static void Check(DiffusionModelConfig config, string source)
    {
        void Require(bool ok, string what)
        {
            if (!ok)
            {
                throw new InvalidDataException($"{source} has an impossible diffusion model configuration: {what}.");
            }
        }

        static string S(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

        Require(config.Network is not null && config.Betas is not null && config.Sampling is not null, "a section is missing");
        var network = config.Network!;
        Require(config.ImageHeight is >= 1 and <= MaxImageSide && config.ImageWidth is >= 1 and <= MaxImageSide, S($"image size {config.ImageHeight}×{config.ImageWidth} (each side must be in [1, {MaxImageSide}])"));
        Require(Enum.IsDefined(config.Schedule) && Enum.IsDefined(config.Objective) && Enum.IsDefined(config.Loss) && Enum.IsDefined(config.Variance), "an unknown schedule, objective, loss or variance");
        Require(config.Betas!.Length is >= 2 and <= MaxTimesteps, S($"{config.Betas.Length} timesteps (must be in [2, {MaxTimesteps}])"));
        for (int i = 0; i < config.Betas.Length; i++)
        {
            double beta = config.Betas[i];
            Require(beta is > 0 and < 1, S($"β at index {i} is {beta} (every β must satisfy 0 < β < 1)"));
        }

        Require(config.MinSnrGamma is null || (double.IsFinite(config.MinSnrGamma.Value) && config.MinSnrGamma > 0), S($"MinSnrGamma {config.MinSnrGamma} (must be positive and finite)"));
        Require(network.Channels is >= 1 and <= MaxChannels, S($"{network.Channels} channels (must be in [1, {MaxChannels}])"));
        Require(network.ClassCount is >= 0 and <= MaxClasses, S($"{network.ClassCount} classes (must be in [0, {MaxClasses}])"));
        Require(network.LearnedVariance == (config.Variance == VarianceType.LearnedRange), "the network's learned-variance output disagrees with the variance type");
        if (network is UNetOptions unet)
        {
            Require(unet.Dim is >= 1 and <= MaxWidth, S($"U-Net Dim {unet.Dim} (must be in [1, {MaxWidth}])"));
            Require(unet.DimMults is { Count: >= 1 and <= MaxLevels }, S($"{unet.DimMults?.Count ?? 0} U-Net levels (must be in [1, {MaxLevels}])"));
            Require(unet.DimMults!.All(m => m >= 1 && (long)m * unet.Dim <= MaxWidth), S($"U-Net multipliers ({string.Join(", ", unet.DimMults!)}) × Dim {unet.Dim} (every level's width must be in [1, {MaxWidth}])"));
            Require(unet.AttentionHeads is >= 1 and <= MaxAttention && unet.AttentionDimHead is >= 1 and <= MaxAttention, S($"{unet.AttentionHeads} attention heads of {unet.AttentionDimHead} (each must be in [1, {MaxAttention}])"));
            Require(unet.Dropout is >= 0 and < 1, S($"dropout {unet.Dropout} (must be in [0, 1))"));
        }
        else if (network is DiTOptions dit)
        {
            Require(dit.HiddenSize is >= 1 and <= MaxWidth && dit.MlpRatio is > 0 and <= 64, S($"DiT width {dit.HiddenSize}, MLP ratio {dit.MlpRatio} (width in [1, {MaxWidth}], ratio in (0, 64])"));
            Require(dit.Depth is >= 1 and <= 1024 && dit.Heads is >= 1 and <= MaxAttention && dit.PatchSize is >= 1 and <= MaxImageSide, S($"DiT depth {dit.Depth}, {dit.Heads} heads, patch {dit.PatchSize}"));
        }

        try
        {
            network.Validate();
        }
        catch (ArgumentException ex)
        {
            Require(false, "network settings: " + ex.Message);
        }

        Require(config.ImageHeight % network.SizeDivisor == 0 && config.ImageWidth % network.SizeDivisor == 0, S($"image size {config.ImageHeight}×{config.ImageWidth} is not divisible by {network.SizeDivisor} (the network's size divisor)"));
        Require(config.ClassNames is null || (config.ClassNames.Count <= MaxClasses && config.ClassNames.All(n => n is not null)), "the class names");
        Require(!string.IsNullOrEmpty(config.ImageColumnName), "no image column name");
        Require(config.TrainedSteps >= 0, S($"{config.TrainedSteps} trained steps"));
        var sampling = config.Sampling!;
        Require(sampling.MicroBatchSize is null or (>= 1 and <= MaxMicroBatch), S($"a sampling micro-batch of {sampling.MicroBatchSize} (must be in [1, {MaxMicroBatch}])"));
        Require(sampling.Scheduler is not null, "no scheduler");
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException ex)
        {
            Require(false, "sampling settings: " + ex.Message);
        }

        long parameters = network.CountParameters() ?? 0;
        Require(parameters <= MaxParameters, S($"a {network.Kind} of {parameters:N0} parameters (at most {MaxParameters:N0})"));
    }
}
