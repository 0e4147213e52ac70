using System;
using System.IO;
using System.Linq;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Build;

[TestClass]
public sealed class NativeLoadTests
{
    [TestMethod]
    public void TorchSharpInitialisesAndComputes()
    {
        using var a = tensor(new float[] { 1, 2, 3 });
        using var b = a.matmul(a);
        Assert.AreEqual(14f, b.item<float>());
        Assert.IsTrue(torch.TryInitializeDeviceType(DeviceType.CPU));
    }

    [TestMethod]
    public void OnlyTheOutputCopyOfTheNativeBridgeIsPatched()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Inconclusive("The native fix applies to Linux only; on this operating system there is no patched copy to check.");
        }

        using var loaded = tensor(new float[] { 1 }); // TorchSharp is loaded, and with it the C++ runtime it found

        string output = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var version = typeof(torch).Assembly.GetName().Version!;
        string original = Path.Combine(packages, "torchsharp", $"{version.Major}.{version.Minor}.{version.Build}", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.IsTrue(File.Exists(output), output);
        Assert.IsTrue(File.Exists(original), "The NuGet cache copy is not at " + original);
        // The libstdc++ this process actually loaded (the one the fix is about), wherever the distribution keeps it.
        string? libstdcxx = File.ReadLines("/proc/self/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Where(f => f.Length >= 6)
            .Select(f => f[^1]).FirstOrDefault(p => Path.GetFileName(p).StartsWith("libstdc++.so", StringComparison.Ordinal));
        Assert.IsNotNull(libstdcxx, "no libstdc++ is mapped into this process");

        byte[] patched = File.ReadAllBytes(output);
        byte[] pristine = File.ReadAllBytes(original);
        Assert.AreEqual(pristine.Length, patched.Length);
        int differing = Enumerable.Range(0, patched.Length).Count(i => patched[i] != pristine[i]);
        bool systemHasNewLibStdCxx = File.ReadAllText(libstdcxx, System.Text.Encoding.Latin1).Contains("GLIBCXX_3.4.32\0", StringComparison.Ordinal);
        // Patched: exactly one byte (vna_flags |= VER_FLG_WEAK) differs, and the cache copy still has the strong need.
        Assert.AreEqual(systemHasNewLibStdCxx ? 0 : 1, differing);
        int index = Enumerable.Range(0, patched.Length).FirstOrDefault(i => patched[i] != pristine[i]);
        if (differing == 1)
        {
            Assert.AreEqual(pristine[index] | 0x2, patched[index]);
        }
    }
}
