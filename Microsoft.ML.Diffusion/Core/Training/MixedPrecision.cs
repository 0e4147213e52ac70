using System;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>
/// The mixed-precision policy of training: float32 master weights in <see cref="FusedAdamW"/>'s flat buffer (the only
/// weights the optimizer, the EMA, checkpoints and model files see), and a 16-bit copy of the network that runs the forward
/// and backward passes.
/// </summary>
/// <remarks>
/// <para>Per step: <see cref="BeginStep"/> copies the master weights into the copy's own flat 16-bit buffer (one kernel);
/// <see cref="Diffusion"/>'s loss runs the copy on x_t cast to 16 bits (its normalisations and softmax compute in float32)
/// and returns its output in float32, so the loss and every schedule, posterior and bound computation stay float32;
/// <see cref="Backward"/> back-propagates (the loss multiplied by the loss scale for <see cref="Precision.Float16"/>) into
/// the copy's flat 16-bit gradient and adds that, divided by the scale, into the optimizer's float32 flat gradient (one
/// kernel), so accumulation over chunks and micro-batches is float32; the gradient norm, clipping and the AdamW step then
/// run on float32 as without mixed precision; <see cref="EndStep"/> updates the loss scale.</para>
/// <para>With <see cref="Precision.Float32"/> nothing changes: <see cref="Diffusion"/> is the given one and
/// <see cref="Backward"/> is <c>loss.backward()</c>, bit for bit the loop without this class.</para>
/// </remarks>
public sealed class MixedPrecision : IDisposable
{
    private const string CheckpointTag = "MixedPrecision";
    private const int CheckpointVersion = 1;
    private static readonly Scalar UnitScale = 1.0.ToScalar();
    private readonly FusedAdamW optimizer;
    private readonly GaussianDiffusion? reduced;
    private readonly Tensor? flatParameters;
    private readonly Tensor? flatGradients;

    /// <summary>Initializes a new instance of the <see cref="MixedPrecision"/> class.</summary>
    /// <param name="diffusion">The float32 diffusion whose network <paramref name="optimizer"/> optimizes.</param>
    /// <param name="optimizer">The optimizer over the network's parameters, in their order; its buffers must be float32.</param>
    /// <param name="precision">The precision of the network's forward and backward passes.</param>
    /// <param name="lossScaler">
    /// The loss scaler; null gives a default one (2¹⁶, ×2 after 2000 good steps, ×½ after an overflow) for
    /// <see cref="Precision.Float16"/> and none otherwise (bfloat16 has float32's range and needs no scaling).
    /// </param>
    public MixedPrecision(GaussianDiffusion diffusion, FusedAdamW optimizer, Precision precision, LossScaler? lossScaler = null)
    {
        ArgumentNullException.ThrowIfNull(diffusion);
        ArgumentNullException.ThrowIfNull(optimizer);
        if (!precision.IsDefined())
        {
            throw new ArgumentOutOfRangeException(nameof(precision), precision, "Precision must be Float32, BFloat16 or Float16.");
        }

        this.optimizer = optimizer;
        Precision = precision;
        if (precision == Precision.Float32)
        {
            Diffusion = diffusion;
            LossScaler = lossScaler;
            return;
        }

        if (optimizer.FlatParameters.dtype != ScalarType.Float32)
        {
            throw new ArgumentException($"Mixed precision keeps float32 master weights; the optimizer's are {optimizer.FlatParameters.dtype}.", nameof(optimizer));
        }

        LossScaler = lossScaler ?? (precision == Precision.Float16 ? new LossScaler() : null);
        reduced = diffusion.WithReducedPrecisionNetwork(precision);
        Diffusion = reduced;
        try
        {
            var master = optimizer.Parameters;
            var copies = reduced.Model.parameters().ToArray();
            if (copies.Length != master.Count || copies.Zip(master).Any(pair => !pair.First.shape.SequenceEqual(pair.Second.shape)))
            {
                throw new ArgumentException("The optimizer's parameters are not the network's, in the network's order.", nameof(optimizer));
            }

            // The copy's parameters become views of one flat 16-bit buffer (and its gradients of another), laid out as the
            // optimizer's float32 buffers: refreshing the weights and gathering the gradients are one kernel each.
            var device = optimizer.FlatParameters.device;
            var dtype = precision.ToScalarType();
            long total = optimizer.FlatParameters.numel();
            flatParameters = empty(total, dtype: dtype, device: device);
            flatGradients = zeros(total, dtype: dtype, device: device);
            using var noGrad = no_grad();
            long offset = 0;
            foreach (var p in copies)
            {
                long n = p.numel();
                using var values = flatParameters.narrow(0, offset, n).view(p.shape);
                p.set_(values);
                p.grad = flatGradients.narrow(0, offset, n).view(p.shape);
                offset += n;
            }

            Refresh();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>
    /// The policy a training run's settings ask for (<see cref="TrainingSettings.Precision"/> and the loss-scale settings);
    /// on a CPU without native 16-bit arithmetic it logs why that precision is slow there (see <see cref="CpuFeatures"/>).
    /// </summary>
    internal static MixedPrecision ForTraining(GaussianDiffusion diffusion, FusedAdamW optimizer, TrainingSettings settings, Action<string> log)
    {
        if (diffusion.Device.type == DeviceType.CPU && CpuFeatures.SlowPrecisionWarning(settings.Precision) is string warning)
        {
            log(warning);
        }

        var scaler = settings.Precision == Precision.Float16
            ? new LossScaler(settings.InitialLossScale, settings.LossScaleGrowthInterval, settings.LossScaleGrowthFactor, settings.LossScaleBackoffFactor)
            : null;
        return new MixedPrecision(diffusion, optimizer, settings.Precision, scaler);
    }

    /// <summary>Test hook: runs on the 16-bit gradient after each backward pass, before it is added to the float32 one (injects overflows).</summary>
    internal static Action<MixedPrecision, Tensor>? AfterBackward { get; set; }

    /// <summary>Gets the precision of the network's forward and backward passes.</summary>
    public Precision Precision { get; }

    /// <summary>
    /// Gets the diffusion to compute the training loss with: the given one for <see cref="Precision.Float32"/>, otherwise the
    /// same diffusion around the 16-bit copy of the network.
    /// </summary>
    public GaussianDiffusion Diffusion { get; }

    /// <summary>Gets the loss scaler, or null when the loss is not scaled.</summary>
    public LossScaler? LossScaler { get; }

    /// <summary>Gets a value indicating whether the last step was skipped for a gradient overflow that the loss scale explains and handles (the loss was finite, the scale above 1).</summary>
    public bool LastStepOverflowed { get; private set; }

    /// <summary>Gets the 16-bit network, or null for <see cref="Precision.Float32"/>.</summary>
    public Denoiser? ReducedNetwork => (reduced?.Model as ReducedPrecisionDenoiser)?.Network;

    /// <summary>Gets the 16-bit copy of the weights as one vector, or null for <see cref="Precision.Float32"/>.</summary>
    internal Tensor? FlatParameters => flatParameters;

    /// <summary>Refreshes the 16-bit weights from the float32 master weights (after a step, or a checkpoint's restore).</summary>
    public void BeginStep() => Refresh();

    /// <summary>
    /// Back-propagates a float32 loss through the network: for 16 bits, scaled by the loss scale into the copy's gradient,
    /// then added, unscaled, into the optimizer's float32 gradient (the 16-bit gradient is then cleared).
    /// </summary>
    /// <param name="loss">The loss (a scalar computed with <see cref="Diffusion"/>).</param>
    public void Backward(Tensor loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        if (flatGradients is null)
        {
            loss.backward();
            return;
        }

        double scale = LossScaler?.Scale ?? 1;
        using (var scope = NewDisposeScope())
        {
            if (LossScaler is null)
            {
                loss.backward();
            }
            else
            {
                using Scalar factor = scale.ToScalar();
                (loss * factor).backward();
            }
        }

        using var noGrad = no_grad();
        AfterBackward?.Invoke(this, flatGradients);
        if (LossScaler is null)
        {
            optimizer.FlatGradients.add_(flatGradients, alpha: UnitScale);
        }
        else
        {
            using Scalar inverse = (1 / scale).ToScalar();
            optimizer.FlatGradients.add_(flatGradients, alpha: inverse);
        }

        flatGradients.zero_();
    }

    /// <summary>Records a step's outcome: updates the loss scale (backs off on an overflow, grows after enough good steps).</summary>
    /// <param name="lossFinite">Whether the loss was finite.</param>
    /// <param name="gradientsFinite">Whether the float32 gradients (their norm) were finite.</param>
    /// <returns>Whether the step is to be applied.</returns>
    public bool EndStep(bool lossFinite, bool gradientsFinite)
    {
        bool finite = lossFinite && gradientsFinite;
        LastStepOverflowed = LossScaler is not null && lossFinite && !gradientsFinite && LossScaler.Scale > 1;
        LossScaler?.Update(finite);
        return finite;
    }

    /// <summary>Releases the 16-bit copy and its buffers (the master weights are the optimizer's).</summary>
    public void Dispose()
    {
        reduced?.Dispose();
        flatParameters?.Dispose();
        flatGradients?.Dispose();
    }

    /// <summary>
    /// Writes the mixed-precision section of a checkpoint, after the optimizer state: nothing for float32 (so float32
    /// checkpoints are what they always were); otherwise the string "MixedPrecision", int32 section version 1, int32 the
    /// precision, a bool for a loss scaler and, with one, float64 scale, int32 good steps and int64 overflows.
    /// </summary>
    internal static void WriteCheckpoint(BinaryWriter writer, MixedPrecision? precision)
    {
        if (precision is null || precision.Precision == Precision.Float32)
        {
            return;
        }

        writer.Write(CheckpointTag);
        writer.Write(CheckpointVersion);
        writer.Write((int)precision.Precision);
        writer.Write(precision.LossScaler is not null);
        if (precision.LossScaler is LossScaler scaler)
        {
            writer.Write(scaler.Scale);
            writer.Write(scaler.GoodSteps);
            writer.Write(scaler.Overflows);
        }
    }

    /// <summary>
    /// Reads the section <see cref="WriteCheckpoint"/> wrote, when <paramref name="present"/> (checkpoints of float32 runs and
    /// of versions before mixed precision have none). Returns what to restore, checked, or null.
    /// </summary>
    internal static CheckpointState? ReadCheckpoint(BinaryReader reader, bool present)
    {
        if (!present)
        {
            return null;
        }

        string tag = reader.ReadString();
        int version = reader.ReadInt32();
        if (tag != CheckpointTag || version != CheckpointVersion)
        {
            throw new InvalidDataException($"unknown data after the optimizer state ('{tag}', version {version}); a mixed-precision section was expected");
        }

        var precision = (Precision)reader.ReadInt32();
        if (!precision.IsDefined())
        {
            throw new InvalidDataException($"an unknown precision {(int)precision}");
        }

        if (!reader.ReadBoolean())
        {
            return new CheckpointState(precision, null, 0, 0);
        }

        double scale = reader.ReadDouble();
        int good = reader.ReadInt32();
        long overflows = reader.ReadInt64();
        if (!(scale > 0 && double.IsFinite(scale)) || good < 0 || overflows < 0)
        {
            throw new InvalidDataException($"a loss scaler state out of range (scale {scale}, good steps {good}, overflows {overflows})");
        }

        return new CheckpointState(precision, scale, good, overflows);
    }

    /// <summary>
    /// Restores a checkpoint's section: the loss scaler's state when both the checkpoint and this run scale the loss. A
    /// checkpoint of another precision resumes in this run's precision (the weights are float32 in every case), the scaler
    /// starting afresh when the checkpoint had none.
    /// </summary>
    internal void Restore(CheckpointState? state)
    {
        if (state?.Scale is double scale && LossScaler is LossScaler scaler)
        {
            scaler.Restore(scale, state.GoodSteps, state.Overflows);
        }

        Refresh();
    }

    private void Refresh()
    {
        if (flatParameters is not null)
        {
            using var noGrad = no_grad();
            flatParameters.copy_(optimizer.FlatParameters);
        }
    }

    /// <summary>What a checkpoint's mixed-precision section holds.</summary>
    internal sealed record CheckpointState(Precision Precision, double? Scale, int GoodSteps, long Overflows);
}
