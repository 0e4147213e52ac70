using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// Channels-last (NHWC in memory, NCHW in shape) activations. TorchSharp 0.107 has no memory-format argument, so the
/// layout is made with a permute, a copy and the inverse permute; libtorch's convolutions, normalisations, elementwise
/// ops and concatenations keep it. On the CPU oneDNN runs convolutions with few channels at high resolution up to 2×
/// faster in this layout (it skips the reorders), and wide convolutions at low resolution faster in NCHW.
/// </summary>
internal static class MemoryFormat
{
    public static bool IsChannelsLast(Tensor x)
    {
        if (x.dim() != 4)
        {
            return false;
        }

        long c = x.shape[1], w = x.shape[3];
        var stride = x.stride();
        return stride[1] == 1 && stride[3] == c && stride[2] == c * w && stride[0] == c * w * x.shape[2];
    }

    /// <summary>Returns <paramref name="x"/> in the asked layout, copying only when it is in the other one.</summary>
    public static Tensor To(Tensor x, bool channelsLast)
    {
        if (channelsLast)
        {
            return IsChannelsLast(x) ? x.alias() : x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
        }

        return x.is_contiguous() ? x.alias() : x.contiguous();
    }
}
