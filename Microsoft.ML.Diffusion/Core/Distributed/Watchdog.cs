using System;
using System.Threading;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// Bounds a blocking collective that cannot be abandoned (an MPI all-reduce, an NCCL kernel): if it has not returned when
/// the time is up, the message goes to standard error and the job is stopped through <see cref="Communicator.Abort"/>.
/// </summary>
internal sealed class Watchdog : IDisposable
{
    private readonly Timer timer;

    public Watchdog(TimeSpan timeout, Func<string> message, Communicator communicator) =>
        timer = new Timer(_ => communicator.Abort(3, message()), null, timeout, System.Threading.Timeout.InfiniteTimeSpan);

    public void Dispose() => timer.Dispose();
}
