using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>
/// An exponential moving average of a network's parameters: θ_ema ← d·θ_ema + (1 − d)·θ. The decay ramps up with the
/// step count, d_k = min(<see cref="MaxDecay"/>, 1 − (1 + k)^(−2/3)), so that early in training (and in short runs) the
/// average follows the raw weights closely and never lags far behind them. Only parameters are averaged; buffers (the
/// schedule, the sinusoidal table) are never touched.
/// </summary>
public sealed class ExponentialMovingAverage : IDisposable
{
    private readonly Tensor[] shadow;
    private readonly Parameter[] parameters;
    private readonly Tensor? flatShadow;
    private readonly Tensor? flatParameters;

    /// <summary>Initializes a new instance of the <see cref="ExponentialMovingAverage"/> class with a copy of the current parameters.</summary>
    /// <param name="module">The trained network.</param>
    /// <param name="maxDecay">The decay the ramp tends to, in [0, 1).</param>
    public ExponentialMovingAverage(nn.Module module, double maxDecay)
    {
        ArgumentNullException.ThrowIfNull(module);
        MaxDecay = CheckDecay(maxDecay);
        parameters = module.parameters().ToArray();
        using var noGrad = no_grad();
        shadow = parameters.Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray();
    }

    /// <summary>
    /// Initializes a new instance of the <see cref="ExponentialMovingAverage"/> class over the flat parameter buffer of a
    /// <see cref="FusedAdamW"/>: an update is two kernels whatever the number of parameter tensors. Update it only while
    /// the optimizer lives (the flat buffer is the optimizer's).
    /// </summary>
    /// <param name="optimizer">The optimizer whose parameters are averaged.</param>
    /// <param name="maxDecay">The decay the ramp tends to, in [0, 1).</param>
    public ExponentialMovingAverage(FusedAdamW optimizer, double maxDecay)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        MaxDecay = CheckDecay(maxDecay);
        parameters = optimizer.Parameters.ToArray();
        flatParameters = optimizer.FlatParameters;
        using var noGrad = no_grad();
        flatShadow = flatParameters.detach().clone().DetachFromDisposeScope();
        long offset = 0;
        shadow = new Tensor[parameters.Length];
        for (int i = 0; i < parameters.Length; i++)
        {
            long n = parameters[i].numel();
            shadow[i] = flatShadow.narrow(0, offset, n).view(parameters[i].shape).DetachFromDisposeScope();
            offset += n;
        }
    }

    private static double CheckDecay(double maxDecay) => maxDecay is >= 0 and < 1
        ? maxDecay
        : throw new ArgumentOutOfRangeException(nameof(maxDecay), maxDecay, "The EMA decay must be in [0, 1).");

    /// <summary>Gets the decay the ramp tends to.</summary>
    public double MaxDecay { get; }

    /// <summary>Gets the number of updates so far.</summary>
    public long Updates { get; private set; }

    /// <summary>Gets the averaged tensors, in the order of the module's parameters.</summary>
    public IReadOnlyList<Tensor> Shadow => shadow;

    /// <summary>The decay used at update <paramref name="step"/> (0-based).</summary>
    /// <param name="step">The update index.</param>
    /// <param name="maxDecay">The ceiling.</param>
    /// <returns>min(maxDecay, 1 − (1 + step)^(−2/3)).</returns>
    public static double DecayAt(long step, double maxDecay) => Math.Min(maxDecay, Math.Max(0.0, 1.0 - Math.Pow(1.0 + step, -2.0 / 3.0)));

    /// <summary>Folds the module's current parameters into the average.</summary>
    public void Update()
    {
        double decay = DecayAt(Updates, MaxDecay);
        using var noGrad = no_grad();
        using Scalar kept = decay.ToScalar(), taken = (1.0 - decay).ToScalar();
        if (flatShadow is not null)
        {
            flatShadow.mul_(kept).add_(flatParameters!, alpha: taken);
        }
        else
        {
            for (int i = 0; i < shadow.Length; i++)
            {
                shadow[i].mul_(kept).add_(parameters[i].detach(), alpha: taken);
            }
        }

        Updates++;
    }

    /// <summary>Copies the average into another module with the same parameter layout (e.g. the network used for sampling).</summary>
    /// <param name="target">The module to overwrite.</param>
    public void CopyTo(nn.Module target)
    {
        ArgumentNullException.ThrowIfNull(target);
        var targetParameters = target.parameters().ToArray();
        if (targetParameters.Length != shadow.Length)
        {
            throw new ArgumentException($"The target has {targetParameters.Length} parameters; the average has {shadow.Length}.", nameof(target));
        }

        using var noGrad = no_grad();
        for (int i = 0; i < shadow.Length; i++)
        {
            targetParameters[i].copy_(shadow[i]);
        }
    }

    /// <summary>Restores the averaged values (from a checkpoint).</summary>
    /// <param name="values">Tensors in parameter order.</param>
    /// <param name="updates">The update count to resume from.</param>
    public void Load(IReadOnlyList<Tensor> values, long updates)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count != shadow.Length)
        {
            throw new ArgumentException($"Expected {shadow.Length} tensors; got {values.Count}.", nameof(values));
        }

        using var noGrad = no_grad();
        for (int i = 0; i < shadow.Length; i++)
        {
            shadow[i].copy_(values[i]);
        }

        Updates = updates;
    }

    /// <summary>Releases the averaged tensors.</summary>
    public void Dispose()
    {
        foreach (var t in shadow)
        {
            t.Dispose();
        }

        flatShadow?.Dispose();
    }
}
