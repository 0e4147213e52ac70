namespace Microsoft.ML.Diffusion.Export;

/// <summary>What an exported ONNX file computes.</summary>
public enum OnnxGraphContent
{
    /// <summary>
    /// The whole deterministic sampler as one graph: inputs <c>noise</c> (N×C×H×W, x_T) and, for a class-conditional
    /// model, <c>class</c> (N, int64; the class count means "no label") and <c>guidance</c> (N, float, the classifier-free
    /// guidance scale w; 1 = none); outputs <c>images</c> (N×C×H×W in [0, 1]) and <c>pixels</c> (N×C×H×W bytes, as the
    /// library rounds them).
    /// </summary>
    Sampler,

    /// <summary>
    /// The network alone: inputs <c>x</c> (N×C×H×W), <c>t</c> (N, int64, the network's timesteps, 0-based) and, for a
    /// class-conditional model, <c>class</c> (N, int64); output <c>prediction</c> (N×C_out×H×W: ε, x₀ or v, followed by
    /// the variance interpolation value when the variance is learned).
    /// </summary>
    Network,
}
