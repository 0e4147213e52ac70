namespace FolderTrainer;

/// <summary>The entry point: see <see cref="FolderTrainerJob"/>.</summary>
public static class Program
{
    /// <summary>Runs the folder trainer.</summary>
    /// <param name="args">Command-line arguments (--help lists them).</param>
    /// <returns>0 on success, 1 when training failed, 2 for a bad command line.</returns>
    public static int Main(string[] args) => FolderTrainerJob.Run(args, System.Console.Out);
}
