namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>How <see cref="Communicator.AllReduce"/> combines the ranks' tensors.</summary>
public enum ReduceOperation
{
    /// <summary>The element-wise sum over the ranks.</summary>
    Sum,

    /// <summary>The element-wise mean over the ranks (the sum divided by the world size).</summary>
    Average,
}
