namespace FashionMnist;

/// <summary>The entry point: see <see cref="FashionMnistJob"/>.</summary>
public static class Program
{
    /// <summary>Runs the job.</summary>
    /// <param name="args">Command-line arguments (--help lists them).</param>
    /// <returns>0 on success.</returns>
    public static int Main(string[] args)
    {
        // Under mpirun, ranks other than 0 write nothing (RankLaunch); one plain process runs unchanged.
        var (arguments, console) = DiffusionSamples.RankLaunch.Prepare(args, System.Console.Out);
        return FashionMnistJob.Run(arguments, console);
    }
}
