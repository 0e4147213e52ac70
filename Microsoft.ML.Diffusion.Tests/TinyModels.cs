using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests;

/// <summary>Tiny networks and data that keep the tests fast.</summary>
internal static class TinyModels
{
    public static UNetOptions Options(int channels = 1, bool learnedVariance = false, int classCount = 0) => new()
    {
        Dim = 8,
        DimMults = new[] { 1, 2 },
        Channels = channels,
        AttentionHeads = 2,
        AttentionDimHead = 8,
        LearnedVariance = learnedVariance,
        ClassCount = classCount,
    };

    public static GaussianDiffusion Diffusion(
        int timesteps = 20,
        BetaSchedule schedule = BetaSchedule.Linear,
        PredictionTarget objective = PredictionTarget.Noise,
        VarianceType variance = VarianceType.FixedSmall,
        DiffusionLoss loss = DiffusionLoss.MeanSquaredError,
        int size = 8,
        int seed = 1)
    {
        manual_seed(seed);
        var unet = new UNet(Options(learnedVariance: variance == VarianceType.LearnedRange));
        return new GaussianDiffusion(unet, NoiseSchedule.Create(schedule, timesteps), size, size, objective, loss, variance);
    }

    /// <summary>Two fixed 8×8 patterns on the 8-bit grid in [−1, 1]: a checkerboard and its left/right split.</summary>
    public static Tensor Patterns()
    {
        var a = zeros(1, 8, 8);
        var b = zeros(1, 8, 8);
        for (int y = 0; y < 8; y++)
        {
            for (int x = 0; x < 8; x++)
            {
                a[0, y, x] = ((x / 2) + (y / 2)) % 2 == 0 ? 1f : -1f;
                b[0, y, x] = x < 4 ? 1f : -1f;
            }
        }

        return stack(new[] { a, b });
    }

    /// <summary>
    /// Runs libtorch's kernels on one thread until disposed. Networks this small gain nothing from a second thread, and on a
    /// busy machine every parallel kernel waits until both of its threads get a core (measured: a 150-step learning test
    /// took 19 minutes with two threads under a load of 28, 26 s with one).
    /// </summary>
    public static System.IDisposable OneThread()
    {
        int before = get_num_threads();
        set_num_threads(1);
        return new ThreadCount(before);
    }

    public static long LiveTensors()
    {
        var stats = TorchSharp.DisposeScopeManager.Statistics.TensorStatistics;
        return stats.ThreadTotalLiveCount + stats.CreatedOutsideScopeCount - stats.DisposedOutsideScopeCount;
    }
}

/// <summary>Reports synchronously on the calling thread (System.Progress posts to a thread pool).</summary>
internal sealed class SyncProgress<T> : System.IProgress<T>
{
    private readonly System.Action<T> action;

    public SyncProgress(System.Action<T> action) => this.action = action;

    public void Report(T value) => action(value);
}

internal sealed class ThreadCount : System.IDisposable
{
    private readonly int threads;

    public ThreadCount(int threads) => this.threads = threads;

    public void Dispose() => set_num_threads(threads);
}
