using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Runtime;

/// <summary>
/// The one place where the library draws random tensors. A draw with a <see cref="Generator"/> is made on the CPU and
/// copied to the target device, so the same generator state gives the same numbers on every device (TorchSharp 0.107
/// creates CPU generators only: <c>new Generator(seed, cuda)</c> is a CPU generator, and libtorch refuses it for a CUDA
/// draw). A draw without a generator uses torch's global generator of the target device.
/// </summary>
/// <remarks>
/// On the CPU this is exactly <c>randn(shape, dtype, generator: g)</c> (and so on), so CPU results are unchanged by it.
/// On a GPU the copy costs one small host-to-device transfer per draw (for training, the batch's noise and timesteps).
/// </remarks>
public static class DeviceRandom
{
    /// <summary>Standard normal samples.</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="device">Where the result lives.</param>
    /// <param name="dtype">The element type (floating point).</param>
    /// <param name="generator">A generator (TorchSharp's are CPU generators, whatever device they name), or null for the device's global generator.</param>
    /// <returns>A new tensor on <paramref name="device"/>.</returns>
    public static Tensor Normal(long[] shape, Device device, ScalarType dtype = ScalarType.Float32, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(device);
        return generator is null
            ? randn(shape, dtype: dtype, device: device)
            : OnDevice(randn(shape, dtype: dtype, device: CPU, generator: generator), device);
    }

    /// <summary>Samples of the uniform distribution on [0, 1).</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="device">Where the result lives.</param>
    /// <param name="dtype">The element type (floating point).</param>
    /// <param name="generator">A generator (TorchSharp's are CPU generators, whatever device they name), or null for the device's global generator.</param>
    /// <returns>A new tensor on <paramref name="device"/>.</returns>
    public static Tensor Uniform(long[] shape, Device device, ScalarType dtype = ScalarType.Float32, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(device);
        return generator is null
            ? rand(shape, dtype: dtype, device: device)
            : OnDevice(rand(shape, dtype: dtype, device: CPU, generator: generator), device);
    }

    /// <summary>Integers drawn uniformly from [<paramref name="low"/>, <paramref name="high"/>), as int64.</summary>
    /// <param name="low">The smallest value.</param>
    /// <param name="high">One more than the largest value.</param>
    /// <param name="shape">The shape.</param>
    /// <param name="device">Where the result lives.</param>
    /// <param name="generator">A generator (TorchSharp's are CPU generators, whatever device they name), or null for the device's global generator.</param>
    /// <returns>A new int64 tensor on <paramref name="device"/>.</returns>
    public static Tensor Integers(long low, long high, long[] shape, Device device, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(device);
        return generator is null
            ? randint(low, high, shape, dtype: ScalarType.Int64, device: device)
            : OnDevice(randint(low, high, shape, dtype: ScalarType.Int64, device: CPU, generator: generator), device);
    }

    /// <summary>A random permutation of 0 … n − 1, as int64.</summary>
    /// <param name="n">The length.</param>
    /// <param name="device">Where the result lives.</param>
    /// <param name="generator">A generator (TorchSharp's are CPU generators, whatever device they name), or null for the device's global generator.</param>
    /// <returns>A new int64 tensor on <paramref name="device"/>.</returns>
    public static Tensor Permutation(long n, Device device, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        return generator is null
            ? randperm(n, device: device)
            : OnDevice(randperm(n, device: CPU, generator: generator), device);
    }

    /// <summary>
    /// The random source of one training step's timesteps and noise. On the CPU it is <paramref name="cpuGenerator"/>
    /// (the run's generator, saved in checkpoints). Elsewhere the draws are made on the device itself — a batch's noise
    /// drawn on the CPU and copied costs a GPU step several milliseconds — from its global generator, seeded here from the
    /// run's seed and the step index: a run is reproducible on its device and resumes exactly without saving any GPU
    /// generator state (TorchSharp can neither create CUDA generators nor read their state). Dropout on the device draws
    /// from the same seeded generator. The numbers differ from the CPU's.
    /// </summary>
    /// <param name="device">The training device.</param>
    /// <param name="cpuGenerator">The run's CPU generator.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="step">The step index (0-based).</param>
    /// <returns><paramref name="cpuGenerator"/> on the CPU; null (the device's seeded global generator) elsewhere.</returns>
    public static Generator? ForTrainingStep(Device device, Generator cpuGenerator, long seed, long step)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(cpuGenerator);
        if (device.type == DeviceType.CPU)
        {
            return cpuGenerator;
        }

        // SplitMix64 of (seed, step): neighbouring steps and seeds get unrelated generator seeds.
        ulong z = unchecked(((ulong)seed * 0x9E3779B97F4A7C15UL) + (ulong)step + 0x632BE59BD9B4E019UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        torch.cuda.manual_seed_all(unchecked((long)(z >> 1)));
        return null;
    }

    private static Tensor OnDevice(Tensor drawn, Device device)
    {
        if (drawn.device.type == device.type && drawn.device.index == device.index)
        {
            return drawn;
        }

        using (drawn)
        {
            return drawn.to(device);
        }
    }
}
