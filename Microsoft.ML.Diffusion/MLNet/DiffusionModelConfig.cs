using System.Collections.Generic;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Schedules;

namespace Microsoft.ML.Diffusion;

/// <summary>Everything needed to rebuild a trained model's network and diffusion (saved as JSON in the model file).</summary>
internal sealed class DiffusionModelConfig
{
    public int ImageHeight { get; set; }

    public int ImageWidth { get; set; }

    public BetaSchedule Schedule { get; set; }

    public double[] Betas { get; set; } = System.Array.Empty<double>();

    public PredictionTarget Objective { get; set; }

    public DiffusionLoss Loss { get; set; }

    public VarianceType Variance { get; set; }

    public double? MinSnrGamma { get; set; }

    public DenoiserOptions Network { get; set; } = new UNetOptions();

    public string ImageColumnName { get; set; } = "Image";

    public string? LabelColumnName { get; set; }

    public IReadOnlyList<string>? ClassNames { get; set; }

    public int TrainedSteps { get; set; }

    public DiffusionSamplerOptions Sampling { get; set; } = new();
}
