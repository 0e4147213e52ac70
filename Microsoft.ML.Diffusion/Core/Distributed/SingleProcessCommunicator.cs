using System;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>A world of one process: every collective is the identity; nothing native is loaded.</summary>
internal sealed class SingleProcessCommunicator : Communicator
{
    public override int Rank => 0;

    public override int WorldSize => 1;

    public override int LocalRank => 0;

    public override string Backend => "single process";

    public override void AllReduce(Tensor tensor, ReduceOperation operation = ReduceOperation.Sum) => ArgumentNullException.ThrowIfNull(tensor);

    public override void Broadcast(Tensor tensor, int root = 0) => ArgumentNullException.ThrowIfNull(tensor);

    public override byte[][] AllGather(byte[] message, string what, TimeSpan? timeout = null) => new[] { message };

    public override byte[] BroadcastBytes(byte[]? data, int root, string what) => data ?? Array.Empty<byte>();

    public override void Abort(int code, string message)
    {
        Console.Error.WriteLine(message);
        NativeLoader.ExitNow(code);
    }
}
