namespace Microsoft.ML.Diffusion.Export;

/// <summary>How an exported sampler graph repeats the network over the steps.</summary>
public enum OnnxSamplerLoop
{
    /// <summary>One copy of the network's nodes per step, with that step's coefficients as constants (the weights are shared).</summary>
    Unrolled,

    /// <summary>One ONNX <c>Loop</c> whose body holds the network once and looks each step's coefficients up by the iteration number.</summary>
    Loop,
}
