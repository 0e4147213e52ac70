using Microsoft.ML.Diffusion.Core.Sampling;

namespace Microsoft.ML.Diffusion.Export;

/// <summary>Settings of an ONNX export (<see cref="DiffusionOnnxExport"/>).</summary>
public sealed class OnnxExportOptions
{
    /// <summary>Gets or sets what the file computes: the whole sampler (default) or the network alone.</summary>
    public OnnxGraphContent Content { get; set; } = OnnxGraphContent.Sampler;

    /// <summary>
    /// Gets or sets the sampler written into a <see cref="OnnxGraphContent.Sampler"/> graph: a <see cref="DdimScheduler"/>
    /// with η = 0 or a <see cref="DpmSolverScheduler"/> (any steps, order, spacing). Null: DDIM with 50 steps. Schedulers
    /// that draw fresh noise at each step (DDPM, Euler-ancestral, DDIM with η &gt; 0) are not supported.
    /// </summary>
    public DiffusionScheduler? Scheduler { get; set; }

    /// <summary>Gets or sets a value indicating whether x̂₀ is clamped to [−1, 1] at every step, as <see cref="SamplingLoop.ClipDenoised"/>. Default true.</summary>
    public bool ClipDenoised { get; set; } = true;

    /// <summary>
    /// Gets or sets how the sampler graph repeats the network. Default <see cref="OnnxSamplerLoop.Unrolled"/>, which ONNX
    /// Runtime ran faster in our measurements (docs/onnx.md).
    /// </summary>
    public OnnxSamplerLoop Loop { get; set; } = OnnxSamplerLoop.Unrolled;

    /// <summary>Returns a copy (the scheduler is shared: it is only read).</summary>
    /// <returns>The copy.</returns>
    public OnnxExportOptions Clone() => (OnnxExportOptions)MemberwiseClone();
}
