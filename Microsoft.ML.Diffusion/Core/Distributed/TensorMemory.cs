using System;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>The address of a contiguous tensor's first element (host memory for a CPU tensor, device memory for CUDA).</summary>
internal static class TensorMemory
{
    public static IntPtr Address(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        long offset = tensor.storage_offset();
        switch (tensor.dtype)
        {
            case ScalarType.Float32:
                using (var storage = tensor.storage<float>())
                {
                    return storage.data_ptr() + (nint)(offset * sizeof(float));
                }

            case ScalarType.Float64:
                using (var storage = tensor.storage<double>())
                {
                    return storage.data_ptr() + (nint)(offset * sizeof(double));
                }

            case ScalarType.Byte:
                using (var storage = tensor.storage<byte>())
                {
                    return storage.data_ptr() + (nint)offset;
                }

            default:
                throw new ArgumentException($"Collectives take float32, float64 or byte tensors; got {tensor.dtype}.", nameof(tensor));
        }
    }
}
