using System;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Schedules;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>Which weights of a denoising-diffusion-pytorch training checkpoint to import.</summary>
public enum PyTorchWeights
{
    /// <summary>The exponential moving average of the weights (the <c>ema</c> entry; what the reference samples with).</summary>
    Ema,

    /// <summary>The online (last trained) weights (the <c>model</c> entry).</summary>
    Model,
}

/// <summary>
/// What <see cref="PyTorchCheckpoint.Import"/> cannot read from a denoising-diffusion-pytorch 2.1.1 checkpoint: the
/// constructor arguments of its <c>Unet</c> and <c>GaussianDiffusion</c>. Every weight shape is checked against them.
/// </summary>
public sealed class PyTorchImportOptions
{
    /// <summary>Gets or sets the image size (<c>GaussianDiffusion(image_size=…)</c>). Default 32.</summary>
    public int ImageSize { get; set; } = 32;

    /// <summary>
    /// Gets or sets the U-Net's shape: <see cref="UNetOptions.Dim"/> = <c>dim</c>, <see cref="UNetOptions.DimMults"/> =
    /// <c>dim_mults</c>, <see cref="DenoiserOptions.Channels"/> = <c>channels</c>, <see cref="UNetOptions.AttentionHeads"/> =
    /// <c>attn_heads</c>, <see cref="UNetOptions.AttentionDimHead"/> = <c>attn_dim_head</c>,
    /// <see cref="DenoiserOptions.LearnedVariance"/> = <c>learned_variance</c>. Class labels are not supported (the reference
    /// U-Net has none).
    /// </summary>
    public UNetOptions Network { get; set; } = new() { Dim = 64, DimMults = new[] { 1, 2, 4, 8 }, Channels = 3 };

    /// <summary>Gets or sets the objective (<c>objective=</c>: pred_noise, pred_x0 or pred_v). Default v, the reference's default.</summary>
    public PredictionTarget Objective { get; set; } = PredictionTarget.Velocity;

    /// <summary>
    /// Gets or sets the schedule used when the file holds a bare U-Net state dict (no <c>betas</c> buffer); a checkpoint's
    /// own β values are used otherwise. Default <see cref="BetaSchedule.Sigmoid"/>, the reference's default.
    /// </summary>
    public BetaSchedule Schedule { get; set; } = BetaSchedule.Sigmoid;

    /// <summary>Gets or sets T for a bare U-Net state dict (see <see cref="Schedule"/>). Default 1000.</summary>
    public int Timesteps { get; set; } = 1000;

    /// <summary>Gets or sets which weights of a training checkpoint to import. Default <see cref="PyTorchWeights.Ema"/>.</summary>
    public PyTorchWeights Weights { get; set; } = PyTorchWeights.Ema;

    /// <summary>Gets or sets the sampling settings of the imported sampler; null keeps the defaults.</summary>
    public DiffusionSamplerOptions? Sampling { get; set; }

    /// <summary>Throws a clear exception for an invalid value.</summary>
    public void Validate()
    {
        if (ImageSize < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(ImageSize), ImageSize, "PyTorchImportOptions.ImageSize must be positive.");
        }

        ArgumentNullException.ThrowIfNull(Network, nameof(Network));
        Network.Validate();
        if (Network.ClassCount != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Network), Network.ClassCount, "denoising-diffusion-pytorch's Unet has no class labels: ClassCount must be 0.");
        }

        if (ImageSize % Network.SizeDivisor != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(ImageSize), ImageSize, $"The image size must be divisible by {Network.SizeDivisor} for {Network.Levels} levels.");
        }

        if (Timesteps < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Timesteps), Timesteps, "PyTorchImportOptions.Timesteps must be positive.");
        }

        if (!Enum.IsDefined(Objective) || !Enum.IsDefined(Weights) || !Enum.IsDefined(Schedule) || Schedule == BetaSchedule.Custom)
        {
            throw new ArgumentOutOfRangeException(nameof(Objective), "Unknown objective, weights or schedule (Custom is not allowed: a checkpoint brings its own β values).");
        }

        Sampling?.Validate();
    }
}
