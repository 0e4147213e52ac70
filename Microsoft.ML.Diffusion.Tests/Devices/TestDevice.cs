using System;
using System.Globalization;
using System.IO;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Devices;

/// <summary>
/// The switch for device tests: a test row named "cuda" runs on the GPU where CUDA is available and reports
/// inconclusive, with the reason, where it is not (never a silent pass). MLDIFFUSION_TEST_REPORT names a file that
/// collects the measured differences (for docs/gpu/).
/// </summary>
internal static class TestDevice
{
    public static Device Require(string name)
    {
        if (name == "cpu")
        {
            return CPU;
        }

        if (!torch.cuda.is_available())
        {
            Assert.Inconclusive($"Not run: CUDA is not available here (a CPU backend, or no NVIDIA GPU). This row runs on a GPU machine: docs/gpu/README.md.");
        }

        return torch.device(name);
    }

    /// <summary>Records a measured value: to the test output, and to the report file when one is named.</summary>
    public static void Record(string device, string name, double value)
    {
        string line = string.Create(CultureInfo.InvariantCulture, $"{device}\t{name}\t{value:G6}");
        Console.WriteLine("MEASURED " + line);
        if (Environment.GetEnvironmentVariable("MLDIFFUSION_TEST_REPORT") is { Length: > 0 } file)
        {
            File.AppendAllText(file, line + Environment.NewLine);
        }
    }

    /// <summary>Same shape and the same values, bit for bit (compared on the CPU).</summary>
    public static bool Same(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return a.shape.AsSpan().SequenceEqual(b.shape) && a.cpu().eq(b.cpu()).all().item<bool>();
    }

    public static double MaxDifference(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return (a.cpu().to(float64) - b.cpu().to(float64)).abs().max().item<double>();
    }
}
