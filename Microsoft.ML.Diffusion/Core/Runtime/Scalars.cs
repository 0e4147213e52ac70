using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Runtime;

/// <summary>
/// Constant TorchSharp scalars held for the life of the process.
/// </summary>
/// <remarks>
/// A TorchSharp <see cref="Scalar"/> made for one call (<c>x + 1</c>, <c>t.clamp_min(1e-12)</c>) is unreachable once
/// TorchSharp has read its handle, so a garbage collection on another thread can free it while libtorch is still reading
/// it (seen as "Expected false to be true ... toDouble" in a training run). Every scalar this library hands to libtorch
/// is therefore held: a static field here or in the class that uses it for constants, a <c>using</c> local for values
/// computed per call. TorchSharp itself makes such a temporary in <c>add</c> without an alpha (so in every <c>a + b</c>),
/// in <c>scalar - tensor</c> and in <c>square()</c>; <see cref="Plus(Tensor, Tensor)"/>, <see cref="Minus(Scalar, Tensor)"/>
/// and <see cref="Squared"/> do the same arithmetic with held scalars (the same kernels, so the same bits). The build
/// enforces all of it (eng/Analyzers, rule MLDIFF100).
/// </remarks>
internal static class Scalars
{
    /// <summary>The integer 1, as in <c>x + 1</c>.</summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary>The integer 2, as in <c>x / 2</c>.</summary>
    public static readonly Scalar Two = 2.ToScalar();

    /// <summary>The integer 0, as in <c>t == 0</c>.</summary>
    public static readonly Scalar Zero = 0.ToScalar();

    /// <summary>The real 0.5.</summary>
    public static readonly Scalar Half = 0.5.ToScalar();

    /// <summary>The real 1.0.</summary>
    public static readonly Scalar OneReal = 1.0.ToScalar();

    /// <summary>a + b, as TorchSharp's <c>+</c> computes it (<c>add</c> with alpha 1), with the alpha held.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary>a + b for a held scalar b, with the alpha held.</summary>
    public static Tensor Plus(this Tensor a, Scalar b) => a.add(b, One);

    /// <summary>a − x for a held scalar a, as TorchSharp's <c>scalar - tensor</c> computes it (−x + a), with the alpha held.</summary>
    public static Tensor Minus(this Scalar a, Tensor x) => x.neg().add(a, One);

    /// <summary>x², as TorchSharp's <c>square()</c> computes it (<c>pow(2)</c>), with the exponent held.</summary>
    public static Tensor Squared(this Tensor x) => x.pow(Two);
}
