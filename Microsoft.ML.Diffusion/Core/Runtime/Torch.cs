using System;
using TorchSharp;

namespace Microsoft.ML.Diffusion.Core.Runtime;

/// <summary>Device parsing and thread settings shared by training and sampling.</summary>
internal static class Torch
{
    public static torch.Device ParseDevice(string device)
    {
        if (string.IsNullOrWhiteSpace(device))
        {
            throw new ArgumentException("Device must be \"cpu\", \"cuda\" or \"cuda:N\".", nameof(device));
        }

        string d = device.Trim().ToLowerInvariant();
        if (d == "cpu")
        {
            return torch.CPU;
        }

        if (d == "cuda" || d.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!torch.cuda.is_available())
            {
                throw new ArgumentException($"Device \"{device}\" was asked for, but CUDA is not available: reference a CUDA backend (TorchSharp-cuda-linux or TorchSharp-cuda-windows) and run on a machine with an NVIDIA GPU.", nameof(device));
            }

            return torch.device(d);
        }

        throw new ArgumentException($"Unknown device \"{device}\"; use \"cpu\", \"cuda\" or \"cuda:N\".", nameof(device));
    }
}
