using System;
using System.Collections.Generic;
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
/// <remarks>
/// The image size, network, objective and schedule are those of one <see cref="GaussianDiffusionOptions"/>, the model's
/// description, which these properties read and write; the variance follows the network's
/// <see cref="DenoiserOptions.LearnedVariance"/>, and a checkpoint's own β values replace the schedule.
/// </remarks>
public sealed class PyTorchImportOptions
{
    /// <summary>Gets or sets the image size (<c>GaussianDiffusion(image_size=…)</c>). Default 32.</summary>
    public int ImageSize
    {
        get => Diffusion.ImageHeight;
        set
        {
            Diffusion.ImageHeight = value;
            Diffusion.ImageWidth = value;
        }
    }

    /// <summary>
    /// Gets or sets the U-Net's shape: <see cref="UNetOptions.Dim"/> = <c>dim</c>, <see cref="UNetOptions.DimMults"/> =
    /// <c>dim_mults</c>, <see cref="DenoiserOptions.Channels"/> = <c>channels</c>, <see cref="UNetOptions.AttentionHeads"/> =
    /// <c>attn_heads</c>, <see cref="UNetOptions.AttentionDimHead"/> = <c>attn_dim_head</c>,
    /// <see cref="DenoiserOptions.LearnedVariance"/> = <c>learned_variance</c>. Class labels are not supported (the reference
    /// U-Net has none).
    /// </summary>
    public UNetOptions Network
    {
        get => (UNetOptions)Diffusion.Network;
        set => Diffusion.Network = value;
    }

    /// <summary>Gets or sets the objective (<c>objective=</c>: pred_noise, pred_x0 or pred_v). Default v, the reference's default.</summary>
    public PredictionTarget Objective
    {
        get => Diffusion.Objective;
        set => Diffusion.Objective = value;
    }

    /// <summary>
    /// Gets or sets the schedule used when the file holds a bare U-Net state dict (no <c>betas</c> buffer); a checkpoint's
    /// own β values are used otherwise. Default <see cref="BetaSchedule.Sigmoid"/>, the reference's default.
    /// </summary>
    public BetaSchedule Schedule
    {
        get => Diffusion.Schedule;
        set => Diffusion.Schedule = value;
    }

    /// <summary>Gets or sets T for a bare U-Net state dict (see <see cref="Schedule"/>). Default 1000.</summary>
    public int Timesteps
    {
        get => Diffusion.Timesteps;
        set => Diffusion.Timesteps = value;
    }

    /// <summary>Gets or sets which weights of a training checkpoint to import. Default <see cref="PyTorchWeights.Ema"/>.</summary>
    public PyTorchWeights Weights { get; set; } = PyTorchWeights.Ema;

    /// <summary>Gets or sets the sampling settings of the imported sampler; null keeps the defaults.</summary>
    public DiffusionSamplerOptions? Sampling { get; set; }

    /// <summary>Gets the description the image size, network, objective and schedule properties read and write.</summary>
    internal GaussianDiffusionOptions Diffusion { get; } = new()
    {
        Network = new UNetOptions { Dim = 64, DimMults = new[] { 1, 2, 4, 8 }, Channels = 3 },
        Objective = PredictionTarget.Velocity,
        Schedule = BetaSchedule.Sigmoid,
    };

    /// <summary>Throws a clear exception for an invalid value.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Network, nameof(Network));
        if (Network.ClassCount != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Network), Network.ClassCount, "denoising-diffusion-pytorch's Unet has no class labels: ClassCount must be 0.");
        }

        if (!Enum.IsDefined(Weights) || Schedule == BetaSchedule.Custom)
        {
            throw new ArgumentOutOfRangeException(nameof(Schedule), "Unknown weights, or a Custom schedule (not allowed: a checkpoint brings its own β values).");
        }

        DescribeModel(betas: null).Validate();
        Sampling?.Validate();
    }

    /// <summary>
    /// The model to import: a copy of the description with the variance the network's output implies and, when the file
    /// has them, the checkpoint's own β values.
    /// </summary>
    internal GaussianDiffusionOptions DescribeModel(IReadOnlyList<double>? betas)
    {
        var model = Diffusion.Clone();
        model.Variance = model.Network.LearnedVariance ? VarianceType.LearnedRange : VarianceType.FixedSmall;
        if (betas is not null)
        {
            model.Schedule = BetaSchedule.Custom;
            model.Betas = betas;
        }

        return model;
    }
}
