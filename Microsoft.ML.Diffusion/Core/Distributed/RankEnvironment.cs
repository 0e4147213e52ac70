using System;
using System.Globalization;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// What the launcher says about this process, read from the environment before any MPI library is loaded: Open MPI's
/// <c>mpirun</c> sets <c>OMPI_COMM_WORLD_RANK</c>, <c>_SIZE</c> and <c>_LOCAL_RANK</c>; MPICH's Hydra and Intel MPI set
/// <c>PMI_RANK</c>, <c>PMI_SIZE</c> and <c>MPI_LOCALRANKID</c>; PMIx launchers set <c>PMIX_RANK</c>. No variable: one
/// process, a world of 1.
/// </summary>
internal readonly record struct RankEnvironment(int Rank, int WorldSize, int LocalRank, string Source)
{
    public static RankEnvironment Read() => Read(Environment.GetEnvironmentVariable);

    public static RankEnvironment Read(Func<string, string?> variable)
    {
        ArgumentNullException.ThrowIfNull(variable);
        if (Int(variable, "OMPI_COMM_WORLD_SIZE") is int openMpiSize)
        {
            return new RankEnvironment(
                Int(variable, "OMPI_COMM_WORLD_RANK") ?? 0, openMpiSize, Int(variable, "OMPI_COMM_WORLD_LOCAL_RANK") ?? 0, "OMPI_COMM_WORLD_SIZE");
        }

        if (Int(variable, "PMI_SIZE") is int pmiSize)
        {
            return new RankEnvironment(Int(variable, "PMI_RANK") ?? 0, pmiSize, Int(variable, "MPI_LOCALRANKID") ?? Int(variable, "PMI_LOCAL_RANK") ?? 0, "PMI_SIZE");
        }

        if (Int(variable, "PMIX_RANK") is int pmixRank)
        {
            // PMIx gives no size variable: the size is learnt from MPI itself (MPI is then needed even for one rank).
            return new RankEnvironment(pmixRank, Math.Max(2, pmixRank + 1), Int(variable, "PMIX_LOCAL_RANK") ?? 0, "PMIX_RANK");
        }

        return new RankEnvironment(0, 1, 0, "none");
    }

    private static int? Int(Func<string, string?> variable, string name) =>
        int.TryParse(variable(name), NumberStyles.None, CultureInfo.InvariantCulture, out int value) ? value : null;
}
