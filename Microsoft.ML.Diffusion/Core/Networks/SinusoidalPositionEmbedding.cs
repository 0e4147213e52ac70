using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>Sinusoidal embedding of the timestep (Vaswani et al. 2017): [sin(t·ω_k), cos(t·ω_k)], ω_k = θ^(−k/(d/2 − 1)).</summary>
/// <remarks>
/// The frequencies are not a registered buffer: a persistent one would add an entry to the saved weights (which match
/// denoising-diffusion-pytorch's, where they are computed in forward), and TorchSharp 0.107 does not move non-persistent
/// buffers with <c>.to(device)</c> (the cause of "found at least two devices, cuda:0 and cpu"). They are made once per
/// device from the CPU values instead, so the module works on whatever device its input is on.
/// </remarks>
internal sealed class SinusoidalPositionEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly DeviceCopies frequencies;

    public SinusoidalPositionEmbedding(int dim, double theta = 10000)
        : base(nameof(SinusoidalPositionEmbedding))
    {
        if (dim < 4 || dim % 2 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(dim), dim, "The sinusoidal embedding needs an even size of at least 4.");
        }

        int half = dim / 2;
        double step = Math.Log(theta) / (half - 1);
        using var scope = NewDisposeScope();
        using Scalar count = half.ToScalar(), negativeStep = (-step).ToScalar();
        frequencies = new DeviceCopies(exp(arange(count, dtype: float32) * negativeStep));
        RegisterComponents();
    }

    public override Tensor forward(Tensor time)
    {
        using var scope = NewDisposeScope();
        var args = time.to(float32).unsqueeze(1) * frequencies.On(time.device).unsqueeze(0);
        return cat(new[] { args.sin(), args.cos() }, 1).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            frequencies.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>A constant tensor and its copy on the device last asked for (not a module component: never saved or moved).</summary>
    private sealed class DeviceCopies : IDisposable
    {
        private readonly Tensor cpu;
        private Tensor? copy;

        public DeviceCopies(Tensor cpu) => this.cpu = cpu.DetachFromDisposeScope();

        public Tensor On(Device device)
        {
            if (device.type == DeviceType.CPU)
            {
                return cpu;
            }

            var current = copy;
            if (current is not null && current.device.type == device.type && current.device.index == device.index)
            {
                return current;
            }

            var made = cpu.to(device).DetachFromDisposeScope();
            copy = made; // a replaced copy is left to its finalizer: another thread may still be using it
            return made;
        }

        public void Dispose()
        {
            cpu.Dispose();
            copy?.Dispose();
        }
    }
}
