using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Runtime;

/// <summary>
/// The number format the network runs in, for training (<c>DiffusionTrainerOptions.Precision</c>) or sampling
/// (<c>DiffusionSamplerOptions.Precision</c>). Weights are kept, saved and loaded in 32-bit floats whatever the choice;
/// normalisations, softmax, the loss and every schedule, posterior and bound computation run in 32-bit floats too.
/// See docs/mixed-precision.md.
/// </summary>
public enum Precision
{
    /// <summary>32-bit floats everywhere (the default).</summary>
    Float32 = 0,

    /// <summary>
    /// The network's convolutions, matrix products and activations in bfloat16 (8 exponent bits, as float32, and 8 mantissa
    /// bits), from a copy of the float32 weights; no loss scaling is needed.
    /// </summary>
    BFloat16 = 1,

    /// <summary>
    /// The network's convolutions, matrix products and activations in IEEE half precision (5 exponent bits), from a copy of
    /// the float32 weights; training scales the loss dynamically so that small gradients do not underflow.
    /// </summary>
    Float16 = 2,
}

/// <summary>What a <see cref="Precision"/> means for tensors, and the float32 islands of a reduced-precision network.</summary>
internal static class PrecisionTensors
{
    /// <summary>The tensor element type the network runs in.</summary>
    public static ScalarType ToScalarType(this Precision precision) => precision switch
    {
        Precision.Float32 => ScalarType.Float32,
        Precision.BFloat16 => ScalarType.BFloat16,
        Precision.Float16 => ScalarType.Float16,
        _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, "Precision must be Float32, BFloat16 or Float16."),
    };

    /// <summary>Whether the precision is one of the defined values.</summary>
    public static bool IsDefined(this Precision precision) => precision is Precision.Float32 or Precision.BFloat16 or Precision.Float16;

    /// <summary>Whether the tensor holds 16-bit floats (bfloat16 or half).</summary>
    public static bool IsReduced(this Tensor x) => x.dtype is ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>
    /// softmax along <paramref name="dim"/>, computed in float32 when <paramref name="x"/> holds 16-bit floats and returned in
    /// its type (as torch's autocast runs softmax); for float32 input the plain softmax, so the same bits as before.
    /// </summary>
    public static Tensor SoftmaxInFloat32(this Tensor x, long dim)
    {
        if (!x.IsReduced())
        {
            return x.softmax(dim);
        }

        using var scope = NewDisposeScope();
        return x.softmax(dim, ScalarType.Float32).to(x.dtype).MoveToOuterDisposeScope();
    }
}
