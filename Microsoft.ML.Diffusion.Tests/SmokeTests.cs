using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
[assembly: Parallelize(Workers = 1, Scope = ExecutionScope.ClassLevel)]
namespace Microsoft.ML.Diffusion.Tests;
[TestClass]
public sealed class SmokeTests
{
    [TestMethod]
    public void TorchInitialises()
    {
        using var t = torch.ones(3);
        Assert.AreEqual(3.0f, t.sum().item<float>());
    }
}
