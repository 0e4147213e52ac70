using System;
using System.Collections.Generic;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// A collective operation failed: a rank died, hung past <see cref="Communicator.Timeout"/>, disagreed (other options,
/// other data, diverged weights) or failed at work the others waited for. The message names the rank(s).
/// </summary>
public sealed class CollectiveException : Exception
{
    /// <summary>Initializes a new instance of the <see cref="CollectiveException"/> class.</summary>
    public CollectiveException()
        : this("A collective operation failed.")
    {
    }

    /// <summary>Initializes a new instance of the <see cref="CollectiveException"/> class.</summary>
    /// <param name="message">What failed.</param>
    public CollectiveException(string message)
        : base(message)
    {
        Ranks = Array.Empty<int>();
    }

    /// <summary>Initializes a new instance of the <see cref="CollectiveException"/> class.</summary>
    /// <param name="message">What failed.</param>
    /// <param name="innerException">The cause.</param>
    public CollectiveException(string message, Exception innerException)
        : base(message, innerException)
    {
        Ranks = Array.Empty<int>();
    }

    /// <summary>Initializes a new instance of the <see cref="CollectiveException"/> class naming the ranks at fault.</summary>
    /// <param name="message">What failed, naming the ranks.</param>
    /// <param name="ranks">The ranks at fault.</param>
    public CollectiveException(string message, IReadOnlyList<int> ranks)
        : base(message)
    {
        Ranks = ranks;
    }

    /// <summary>Gets the ranks at fault (empty when not known).</summary>
    public IReadOnlyList<int> Ranks { get; }
}
