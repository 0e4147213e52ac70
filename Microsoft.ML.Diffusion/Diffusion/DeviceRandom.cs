using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion;

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
