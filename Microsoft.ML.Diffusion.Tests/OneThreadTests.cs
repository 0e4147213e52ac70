using System;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests;

/// <summary>
/// A base for test classes whose tests train or sample: each test runs with libtorch on one thread
/// (<see cref="TinyModels.OneThread"/>), so that results do not depend on the machine's core count.
/// </summary>
public abstract class OneThreadTests
{
    private IDisposable? oneThread;

    /// <summary>Sets libtorch to one thread for the test.</summary>
    [TestInitialize]
    public void OneThread() => oneThread = TinyModels.OneThread();

    /// <summary>Restores the thread count.</summary>
    [TestCleanup]
    public void RestoreThreads() => oneThread?.Dispose();
}
