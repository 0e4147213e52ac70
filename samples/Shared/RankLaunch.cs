using System;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Distributed;

namespace DiffusionSamples;

/// <summary>
/// Launch under <c>mpirun -np N</c>: every rank runs the same command line; the library trains each rank's share of every
/// batch and rank 0 alone writes checkpoints and calls the milestone callbacks. So that the other ranks write nothing in the
/// run's folder, their <c>--out</c> becomes a private scratch folder (deleted when they exit) and their console is silent.
/// One plain process: nothing changes. Only the launcher's environment variables are read here: MPI is loaded by the
/// library when training starts.
/// </summary>
internal static class RankLaunch
{
    public static (string[] Args, TextWriter Console) Prepare(string[] args, TextWriter console)
    {
        if (Collective.AnnouncedWorldSize <= 1 || Collective.AnnouncedRank == 0)
        {
            return (args, console);
        }

        string scratch = Directory.CreateTempSubdirectory($"mldiffusion-rank{Collective.AnnouncedRank}-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(scratch, recursive: true);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        };
        var list = args.ToList();
        int at = list.IndexOf("--out");
        if (at >= 0 && at + 1 < list.Count)
        {
            list[at + 1] = scratch;
        }
        else
        {
            list.AddRange(new[] { "--out", scratch });
        }

        return (list.ToArray(), TextWriter.Null);
    }
}
