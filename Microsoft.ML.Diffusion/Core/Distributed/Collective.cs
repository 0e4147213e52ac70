using System;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// The process's place in a data-parallel job. <see cref="World"/> is created on first use from what the launcher put in
/// the environment (<c>mpirun</c>: <c>OMPI_COMM_WORLD_*</c>; MPICH/Hydra: <c>PMI_*</c>): without a launcher it is a world
/// of one process and no MPI library is loaded at all; with one, MPI is loaded and initialized (one line naming what to
/// install when it is missing).
/// </summary>
public static class Collective
{
    private static readonly object Gate = new();
    private static Communicator? world;

    /// <summary>Gets the process's communicator (created on first use; lives until the process ends).</summary>
    /// <exception cref="DllNotFoundException">The environment says there are several ranks and no MPI library loads.</exception>
    public static Communicator World
    {
        get
        {
            lock (Gate)
            {
                return world ??= Create(RankEnvironment.Read());
            }
        }
    }

    /// <summary>Gets the number of ranks the launcher announced, without loading MPI (1 for a plain process).</summary>
    public static int AnnouncedWorldSize => RankEnvironment.Read().WorldSize;

    /// <summary>Gets this process's rank as the launcher announced it, without loading MPI (0 for a plain process).</summary>
    public static int AnnouncedRank => RankEnvironment.Read().Rank;

    internal static Communicator Create(RankEnvironment environment) =>
        environment.WorldSize <= 1 ? new SingleProcessCommunicator() : MpiCommunicator.Start(environment);
}
