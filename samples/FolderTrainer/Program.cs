namespace FolderTrainer;

/// <summary>The entry point: see <see cref="FolderTrainerJob"/>.</summary>
public static class Program
{
    /// <summary>Runs the folder trainer.</summary>
    /// <param name="args">Command-line arguments (--help lists them).</param>
    /// <returns>0 on success, 1 when training failed, 2 for a bad command line.</returns>
    public static int Main(string[] args)
    {
        // Under mpirun, ranks other than 0 write nothing (RankLaunch); one plain process runs unchanged.
        var (arguments, console) = DiffusionSamples.RankLaunch.Prepare(args, System.Console.Out);
        return FolderTrainerJob.Run(arguments, console);
    }
}
