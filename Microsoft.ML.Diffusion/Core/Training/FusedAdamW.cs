using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.IO;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter 2019, decoupled weight decay) over one flat buffer: the constructor moves every parameter
/// and its gradient into two contiguous tensors (the parameters become views of them), so that a step is a handful of
/// kernels whatever the number of parameter tensors — TorchSharp's <c>optim.AdamW</c> runs about seven per tensor, which
/// on a GPU makes the optimizer bound by kernel launches. The arithmetic is TorchSharp's AdamW, element by element; the
/// state is saved and read in TorchSharp's AdamW layout, so checkpoints of either load into the other.
/// </summary>
/// <remarks>
/// While the optimizer lives, the parameters must stay where they are: moving the module (<c>.to</c>) gives it new
/// tensors that this optimizer does not update. Gradients accumulate into the flat gradient buffer (autograd adds into an
/// existing gradient in place); <see cref="ZeroGrad"/> clears it with one kernel.
/// </remarks>
public sealed class FusedAdamW : IDisposable
{
    private readonly Parameter[] parameters;
    private readonly Tensor expAvg;
    private readonly Tensor expAvgSq;
    private readonly double initialLearningRate;

    /// <summary>Initializes a new instance of the <see cref="FusedAdamW"/> class and flattens the parameters.</summary>
    /// <param name="parameters">The parameters to optimize: one dtype, one device.</param>
    /// <param name="learningRate">The learning rate.</param>
    /// <param name="beta1">The decay of the first-moment average.</param>
    /// <param name="beta2">The decay of the second-moment average.</param>
    /// <param name="epsilon">The term added to the denominator.</param>
    /// <param name="weightDecay">The decoupled weight decay.</param>
    public FusedAdamW(IEnumerable<Parameter> parameters, double learningRate, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 0.01)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        this.parameters = parameters.ToArray();
        if (this.parameters.Length == 0)
        {
            throw new ArgumentException("There are no parameters to optimize.", nameof(parameters));
        }

        if (learningRate < 0 || double.IsNaN(learningRate) || epsilon < 0 || weightDecay < 0 || beta1 is < 0 or >= 1 || beta2 is < 0 or >= 1)
        {
            throw new ArgumentOutOfRangeException(nameof(learningRate), $"AdamW needs lr ≥ 0, ε ≥ 0, weight decay ≥ 0 and betas in [0, 1); got lr {learningRate}, betas ({beta1}, {beta2}), ε {epsilon}, weight decay {weightDecay}.");
        }

        var first = this.parameters[0];
        var device = first.device;
        var dtype = first.dtype;
        if (this.parameters.Any(p => p.dtype != dtype || p.device_type != device.type || p.device_index != device.index))
        {
            throw new ArgumentException("All parameters must have one dtype and be on one device.", nameof(parameters));
        }

        LearningRate = initialLearningRate = learningRate;
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        WeightDecay = weightDecay;
        long total = this.parameters.Sum(p => p.numel());
        FlatParameters = empty(total, dtype: dtype, device: device);
        FlatGradients = zeros(total, dtype: dtype, device: device);
        expAvg = zeros(total, dtype: dtype, device: device);
        expAvgSq = zeros(total, dtype: dtype, device: device);
        using var noGrad = no_grad();
        long offset = 0;
        foreach (var p in this.parameters)
        {
            long n = p.numel();
            using var values = FlatParameters.narrow(0, offset, n).view(p.shape);
            values.copy_(p);
            p.set_(values);
            p.grad = FlatGradients.narrow(0, offset, n).view(p.shape);
            offset += n;
        }
    }

    /// <summary>Gets or sets the learning rate of the next step.</summary>
    public double LearningRate { get; set; }

    /// <summary>Gets the decay of the first-moment average.</summary>
    public double Beta1 { get; }

    /// <summary>Gets the decay of the second-moment average.</summary>
    public double Beta2 { get; }

    /// <summary>Gets the term added to the denominator.</summary>
    public double Epsilon { get; }

    /// <summary>Gets the decoupled weight decay.</summary>
    public double WeightDecay { get; }

    /// <summary>Gets the number of steps taken.</summary>
    public long Steps { get; private set; }

    /// <summary>Gets the parameters, in order.</summary>
    public IReadOnlyList<Parameter> Parameters => parameters;

    /// <summary>Gets all parameters as one vector (the parameters are views of it).</summary>
    public Tensor FlatParameters { get; }

    /// <summary>Gets all gradients as one vector (the gradients are views of it).</summary>
    public Tensor FlatGradients { get; }

    /// <summary>Gets the tensors of the optimizer's state: the flat parameters and the two moment buffers.</summary>
    internal IReadOnlyList<Tensor> StateTensors => new[] { FlatParameters, expAvg, expAvgSq };

    /// <summary>Sets every gradient to zero (one kernel).</summary>
    public void ZeroGrad() => FlatGradients.zero_();

    /// <summary>One AdamW step with the current gradients.</summary>
    public void Step()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        Steps++;
        double lr = LearningRate;
        if (WeightDecay != 0)
        {
            using Scalar decayed = (1 - (lr * WeightDecay)).ToScalar();
            FlatParameters.mul_(decayed);
        }

        double biasCorrection1 = 1 - Math.Pow(Beta1, Steps);
        double biasCorrection2 = 1 - Math.Pow(Beta2, Steps);
        using Scalar beta1 = Beta1.ToScalar(), oneMinusBeta1 = (1 - Beta1).ToScalar(), beta2 = Beta2.ToScalar(), oneMinusBeta2 = (1 - Beta2).ToScalar();
        using Scalar correction2 = Math.Sqrt(biasCorrection2).ToScalar(), epsilon = Epsilon.ToScalar(), stepSize = (-lr / biasCorrection1).ToScalar();
        expAvg.mul_(beta1).add_(FlatGradients, alpha: oneMinusBeta1);
        expAvgSq.mul_(beta2).addcmul_(FlatGradients, FlatGradients, value: oneMinusBeta2);
        var denominator = (expAvgSq.sqrt() / correction2).add_(epsilon, Scalars.One);
        FlatParameters.addcdiv_(expAvg, denominator, value: stepSize);
    }

    /// <summary>Writes the state in TorchSharp's <c>optim.AdamW</c> layout (one parameter group, per-tensor moments).</summary>
    /// <param name="writer">Where to write.</param>
    public void Save(BinaryWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.Write("AdamW");
        Leb128.Write(writer, 1);
        Leb128.Write(writer, parameters.Length);
        writer.Write(initialLearningRate);
        writer.Write(LearningRate);
        writer.Write(Beta1);
        writer.Write(Beta2);
        writer.Write(Epsilon);
        writer.Write(WeightDecay);
        writer.Write(false); // amsgrad
        writer.Write(false); // maximize
        long offset = 0;
        foreach (var p in parameters)
        {
            long n = p.numel();
            writer.Write(Steps);
            using (var m = expAvg.narrow(0, offset, n).view(p.shape))
            {
                m.Save(writer);
            }

            using (var v = expAvgSq.narrow(0, offset, n).view(p.shape))
            {
                v.Save(writer);
            }

            writer.Write(false); // no max_exp_avg_sq
            offset += n;
        }
    }

    /// <summary>
    /// Reads a state written by <see cref="Save"/> or by TorchSharp's <c>optim.AdamW.save_state_dict</c> for the same
    /// parameters. The hyperparameters are this optimizer's; the learning rate, step count and moments are read.
    /// </summary>
    /// <param name="reader">Where to read.</param>
    public void Load(BinaryReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        string name = reader.ReadString();
        if (name != "AdamW")
        {
            throw new InvalidDataException($"The optimizer state is for '{name}', not AdamW.");
        }

        long groups = Leb128.Read(reader);
        long states = Leb128.Read(reader);
        if (groups != 1 || states != parameters.Length)
        {
            throw new InvalidDataException($"The optimizer state has {groups} parameter groups and {states} tensors; this optimizer has 1 and {parameters.Length}.");
        }

        reader.ReadDouble(); // the initial learning rate
        double learningRate = reader.ReadDouble();
        for (int i = 0; i < 4; i++)
        {
            reader.ReadDouble(); // beta1, beta2, eps, weight decay: this optimizer's own
        }

        if (reader.ReadBoolean() || reader.ReadBoolean())
        {
            throw new InvalidDataException("The optimizer state is for AMSGrad or a maximizing AdamW, which this optimizer is not.");
        }

        using var noGrad = no_grad();
        long offset = 0;
        long steps = 0;
        foreach (var p in parameters)
        {
            long n = p.numel();
            long step = reader.ReadInt64();
            if (step < 0 || (offset > 0 && step != steps))
            {
                throw new InvalidDataException($"The optimizer state counts {step} steps for one tensor and {steps} for another; a fused optimizer keeps one count.");
            }

            steps = step;
            using (var m = expAvg.narrow(0, offset, n).view(p.shape))
            {
                m.Load(reader);
            }

            using (var v = expAvgSq.narrow(0, offset, n).view(p.shape))
            {
                v.Load(reader);
            }

            if (reader.ReadBoolean())
            {
                throw new InvalidDataException("The optimizer state holds AMSGrad maxima, which this optimizer does not keep.");
            }

            offset += n;
        }

        Steps = steps;
        LearningRate = learningRate;
    }

    /// <summary>Releases the optimizer's moments; the parameters and their gradients keep their values (they share the flat buffers' storage).</summary>
    public void Dispose()
    {
        FlatParameters.Dispose();
        FlatGradients.Dispose();
        expAvg.Dispose();
        expAvgSq.Dispose();
    }
}
