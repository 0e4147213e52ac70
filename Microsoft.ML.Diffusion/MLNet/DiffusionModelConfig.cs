using System.Collections.Generic;
using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Core.Diffusion;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// Everything needed to rebuild a trained model (saved as JSON in the model file): the model's description
/// (<see cref="GaussianDiffusionOptions"/>, with its exact β values) and what ML.NET adds — the columns, the class names,
/// the steps trained and the sampler's defaults. <see cref="DiffusionModelFile"/> writes it as one flat JSON object, the
/// description's fields first, as files have always been written.
/// </summary>
internal sealed class DiffusionModelConfig
{
    /// <summary>Gets or sets the model's description.</summary>
    [JsonIgnore]
    public GaussianDiffusionOptions Diffusion { get; set; } = new();

    public string ImageColumnName { get; set; } = "Image";

    public string? LabelColumnName { get; set; }

    public IReadOnlyList<string>? ClassNames { get; set; }

    public int TrainedSteps { get; set; }

    public DiffusionSamplerOptions Sampling { get; set; } = new();
}
