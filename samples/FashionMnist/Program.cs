namespace FashionMnist;

/// <summary>The entry point: see <see cref="FashionMnistJob"/>.</summary>
public static class Program
{
    /// <summary>Runs the job.</summary>
    /// <param name="args">Command-line arguments (--help lists them).</param>
    /// <returns>0 on success.</returns>
    public static int Main(string[] args) => FashionMnistJob.Run(args, System.Console.Out);
}
