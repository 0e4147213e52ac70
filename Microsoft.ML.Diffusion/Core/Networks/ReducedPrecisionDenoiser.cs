using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// A 16-bit copy of a network behind the float32 interface of every <see cref="Denoiser"/>: it casts x_t to bfloat16 or half,
/// runs the copy (whose normalisations and softmax compute in float32), and returns the output in the input's type, so
/// that the diffusion maths around it — the loss, the posterior, the sampler's step — stay in float32.
/// </summary>
/// <remarks>
/// The copy is a new network of the same kind and shape (<see cref="DenoiserOptions.CreateDenoiser"/>, built without
/// touching torch's global generator) with the source's weights cast into it; the source is never changed, so model files
/// stay float32. Training refreshes the copy's weights from the float32 master weights before each step
/// (<c>Core/Training/MixedPrecision</c>); sampling makes one copy per model and precision.
/// </remarks>
internal sealed class ReducedPrecisionDenoiser : Denoiser
{
    private readonly Denoiser inner;
    private readonly ScalarType dtype;

    private ReducedPrecisionDenoiser(Denoiser inner, ScalarType dtype)
        : base(nameof(ReducedPrecisionDenoiser))
    {
        this.inner = inner;
        this.dtype = dtype;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override DenoiserOptions Options => inner.Options;

    /// <summary>Gets the 16-bit network.</summary>
    public Denoiser Network => inner;

    /// <summary>Gets the element type the network runs in.</summary>
    public ScalarType DType => dtype;

    /// <summary>Makes a copy of <paramref name="source"/> in <paramref name="precision"/> on the source's device, in the source's train/eval mode.</summary>
    /// <param name="source">The float32 network.</param>
    /// <param name="precision">BFloat16 or Float16.</param>
    /// <returns>The copy (owned by the caller).</returns>
    public static ReducedPrecisionDenoiser Copy(Denoiser source, Precision precision)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (precision is not (Precision.BFloat16 or Precision.Float16))
        {
            throw new ArgumentOutOfRangeException(nameof(precision), precision, "A reduced-precision copy is BFloat16 or Float16.");
        }

        var device = source.parameters().First().device;
        Denoiser copy;
        // A fresh network draws its initial weights, which are overwritten at once: keep torch's global generator where it was,
        // so that dropout and everything else drawn later is the same as without the copy (exact resume depends on it).
        using (var state = torch.get_rng_state())
        {
            try
            {
                copy = source.Options.CreateDenoiser();
            }
            finally
            {
                torch.set_rng_state(state);
            }
        }

        try
        {
            copy.to(precision.ToScalarType());
            copy.to(device);
            using (no_grad())
            {
                var targets = copy.state_dict();
                foreach (var (name, value) in source.state_dict())
                {
                    if (!targets.TryGetValue(name, out var target) || !target.shape.SequenceEqual(value.shape))
                    {
                        throw new InvalidOperationException($"The {source.Options.Kind} network's tensor '{name}' has no counterpart in a fresh network of its own settings: it cannot be copied to 16 bits.");
                    }

                    target.copy_(value);
                }
            }

            var result = new ReducedPrecisionDenoiser(copy, precision.ToScalarType());
            result.train(source.training);
            return result;
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    /// <summary>Runs the 16-bit network on x_t cast to its type; returns the output in x_t's type.</summary>
    /// <param name="x">Images N×C×H×W (float32).</param>
    /// <param name="time">Timesteps, a vector of N integers (0-based).</param>
    /// <param name="classes">Labels, or null.</param>
    /// <returns>N×<see cref="Denoiser.OutputChannels"/>×H×W in x's type.</returns>
    public override Tensor forward(Tensor x, Tensor time, Tensor? classes)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        return inner.forward(x.to(dtype), time, classes).to(x.dtype).MoveToOuterDisposeScope();
    }
}
