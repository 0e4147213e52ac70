using System;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Core.Runtime;

/// <summary>
/// Whether this processor computes 16-bit floats natively. libtorch's CPU kernels run bfloat16 fast only with AVX512-BF16 or
/// AMX-BF16 (and half precision with AVX512-FP16 or AMX-FP16); elsewhere they convert each element to float32 and back, so
/// a reduced-precision network is slower than float32 there, not faster (measured in docs/mixed-precision.md).
/// </summary>
internal static class CpuFeatures
{
    private static readonly Lazy<string[]> Flags = new(ReadFlags);

    /// <summary>Gets a value indicating whether the processor has AVX512-BF16 or AMX-BF16 (Linux: /proc/cpuinfo; elsewhere AVX10.1, which includes both).</summary>
    public static bool HasNativeBFloat16 => Flags.Value.Contains("avx512_bf16") || Flags.Value.Contains("amx_bf16") || HasAvx10;

    /// <summary>Gets a value indicating whether the processor has AVX512-FP16 or AMX-FP16 (Linux: /proc/cpuinfo; elsewhere AVX10.1, which includes both).</summary>
    public static bool HasNativeFloat16 => Flags.Value.Contains("avx512_fp16") || Flags.Value.Contains("amx_fp16") || HasAvx10;

#if NET9_0_OR_GREATER
    // .NET's own check of the instruction set (AVX10.1 includes the BF16 and FP16 instructions of AVX-512), for systems
    // without /proc/cpuinfo.
    private static bool HasAvx10 => System.Runtime.Intrinsics.X86.Avx10v1.IsSupported;
#else
    private static bool HasAvx10 => false;
#endif

    /// <summary>Whether the processor computes the precision natively (float32 always).</summary>
    public static bool IsNative(Precision precision) => precision switch
    {
        Precision.BFloat16 => HasNativeBFloat16,
        Precision.Float16 => HasNativeFloat16,
        _ => true,
    };

    /// <summary>
    /// The warning for a reduced precision on this CPU, or null when it has native support (or the precision is float32).
    /// The library warns and goes on rather than refusing: the results are right, only slower, and tests and experiments
    /// need to run everywhere.
    /// </summary>
    public static string? SlowPrecisionWarning(Precision precision)
    {
        if (precision == Precision.Float32 || IsNative(precision))
        {
            return null;
        }

        string needed = precision == Precision.BFloat16 ? "AVX512-BF16 or AMX-BF16" : "AVX512-FP16 or AMX-FP16";
        string found = Flags.Value.Length == 0
            ? "its instruction set could not be read here (Linux's /proc/cpuinfo, or .NET 9's AVX10.1 check)"
            : $"it has {string.Join(", ", new[] { "avx512f", "avx2" }.Where(f => Flags.Value.Contains(f)).DefaultIfEmpty("neither AVX2 nor AVX-512"))} only";
        return $"Warning: {precision} on this CPU is emulated ({needed} is needed for native 16-bit arithmetic; {found}): "
            + "libtorch converts every element to float32 and back, so it runs slower than Float32 and saves no time. "
            + "It is meant for GPUs and for CPUs with native support; see docs/mixed-precision.md.";
    }

    private static string[] ReadFlags()
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux) || !File.Exists("/proc/cpuinfo"))
        {
            return Array.Empty<string>();
        }

        try
        {
            string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal));
            return line is null ? Array.Empty<string>() : line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        }
        catch (IOException)
        {
            return Array.Empty<string>();
        }
        catch (UnauthorizedAccessException)
        {
            return Array.Empty<string>();
        }
    }
}
