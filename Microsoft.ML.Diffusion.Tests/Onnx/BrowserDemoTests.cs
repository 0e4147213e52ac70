using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Onnx;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Onnx;

/// <summary>
/// The browser demo (samples/BrowserDemo, issue #21): headless Chromium loads the page from a local server, the page
/// draws x_T in JavaScript and runs the exported sampler with onnxruntime-web, and the screenshot of its grid must show
/// the pixels the TorchSharp sampler gives for the same seeds (docs/onnx.md's tolerance). Needs Chromium and the page's
/// npm package (eng/check-browser-demo.sh installs both); reports inconclusive, with the reason, where either is missing.
/// Nothing is downloaded here.
/// </summary>
[TestClass]
public sealed class BrowserDemoTests
{
    private const int Count = 6, Scale = 4, Gap = 2, Seed = 7, Label = 1;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void TheBrowserDemoDrawsTheSamplersPixelsForTheSameSeeds()
    {
        string demo = Path.Combine(Devices.DeviceGuardTests.RepositoryRoot(), "samples", "BrowserDemo");
        if (!File.Exists(Path.Combine(demo, "node_modules", "onnxruntime-web", "dist", "ort.wasm.min.js")))
        {
            Assert.Inconclusive($"Not run: onnxruntime-web is not installed in {demo} (run `npm ci` there, or eng/check-browser-demo.sh).");
        }

        string? chromium = FindChromium();
        if (chromium is null)
        {
            Assert.Inconclusive("Not run: no Chromium (chromium, chromium-browser or google-chrome on PATH, or MLDIFFUSION_CHROMIUM). Debian/Ubuntu: apt-get install chromium.");
        }

        using var one = TinyModels.OneThread();
        var clock = Stopwatch.StartNew();
        string work = Directory.CreateTempSubdirectory("mldiffusion-browser-").FullName;
        try
        {
            // A tiny class-conditional model (8×8 gray, 3 classes, perturbed weights), DDIM-10 with guidance 2, exported whole.
            var config = OnnxDeployTests.Config(new DdimScheduler { Steps = 10 }, guidance: 2);
            var diffusion = config.Diffusion.CreateDiffusion();
            OnnxTestModels.Perturb(diffusion.Model, 9);
            diffusion.eval();
            using var sampler = new DiffusionSampler(new MLContext(seed: 1), new DiffusionModel(config, diffusion));
            string model = Path.Combine(work, "model.onnx");
            sampler.ExportOnnx(model);
            var seeds = Enumerable.Range(0, Count).Select(i => TorchNoise.DeriveSeed(Seed, i)).ToArray();
            byte[][] expected = sampler.Model.GeneratePixels(seeds, Enumerable.Repeat(Label, Count).ToArray(), sampler.Options);
            Assert.IsTrue(expected.SelectMany(p => p).Distinct().Count() > 20, "the reference images are nearly flat: the comparison would show little");

            string shot = Path.Combine(work, "screenshot.png");
            using (var server = new DemoServer(demo, model))
            {
                string url = $"{server.Address}index.html?model=model.onnx&auto=1&class={Label}&seed={Seed}&count={Count}&guidance=2&scale={Scale}";
                var before = clock.Elapsed;
                RunChromium(chromium, url, shot, Path.Combine(work, "profile"));
                TestContext.WriteLine($"model, export and TorchSharp's pixels {before.TotalSeconds:F1} s; Chromium {(clock.Elapsed - before).TotalSeconds:F1} s");
            }

            Assert.IsTrue(File.Exists(shot), "Chromium wrote no screenshot");
            using var screenshot = MLImage.CreateFromFile(shot);
            Compare(expected, screenshot, height: 8, width: 8);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    // The page draws image n at x = n·(8·Scale + Gap), each pixel a Scale×Scale block, gray as R = G = B, at the top-left.
    private void Compare(byte[][] expected, MLImage screenshot, int height, int width)
    {
        ReadOnlySpan<byte> pixels = screenshot.Pixels;
        bool bgra = screenshot.PixelFormat == MLPixelFormat.Bgra32;
        int different = 0, worst = 0, total = 0;
        for (int n = 0; n < Count; n++)
        {
            for (int y = 0; y < height; y++)
            {
                for (int x = 0; x < width; x++)
                {
                    int want = expected[n][(y * width) + x];
                    // The centre of the block (the edges would show any resampling first).
                    int px = (n * ((width * Scale) + Gap)) + (x * Scale) + (Scale / 2), py = (y * Scale) + (Scale / 2);
                    int at = 4 * ((py * screenshot.Width) + px);
                    int r = pixels[at + (bgra ? 2 : 0)], g = pixels[at + 1], b = pixels[at + (bgra ? 0 : 2)];
                    int d = Math.Max(Math.Abs(r - want), Math.Max(Math.Abs(g - want), Math.Abs(b - want)));
                    different += d > 0 ? 1 : 0;
                    worst = Math.Max(worst, d);
                    total++;
                }
            }
        }

        TestContext.WriteLine($"{total} pixels, {different} differ from TorchSharp's, by at most {worst}");
        Assert.IsTrue(worst <= 1, $"a pixel of the page's grid differs by {worst} of 255 from TorchSharp's ({different} of {total} differ): the page failed or draws other images");
        Assert.IsTrue(different <= total / 50, $"{different} of {total} pixels differ");
    }

    private static void RunChromium(string chromium, string url, string shot, string profile)
    {
        // Virtual time lets the page's fetches, WebAssembly start-up and inference finish before the screenshot.
        var start = new ProcessStartInfo(chromium)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (string argument in new[]
        {
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--force-color-profile=srgb", "--hide-scrollbars",
            "--force-device-scale-factor=1", "--window-size=400,200", "--virtual-time-budget=60000", $"--user-data-dir={profile}", $"--screenshot={shot}", url,
        })
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"Chromium did not finish within 120 s:\n{errors.Result}");
        }

        Assert.AreEqual(0, process.ExitCode, $"Chromium failed:\n{output.Result}\n{errors.Result}");
    }

    private static string? FindChromium()
    {
        if (Environment.GetEnvironmentVariable("MLDIFFUSION_CHROMIUM") is { Length: > 0 } named)
        {
            return File.Exists(named) ? named : null;
        }

        var folders = (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        return new[] { "chromium", "chromium-browser", "google-chrome" }
            .SelectMany(name => folders.Select(folder => Path.Combine(folder, name)))
            .FirstOrDefault(File.Exists);
    }

    /// <summary>Serves the demo's folder and the model on a free port of 127.0.0.1 (the page fetches both; file:// would not do).</summary>
    private sealed class DemoServer : IDisposable
    {
        private readonly HttpListener listener = new();
        private readonly string root;
        private readonly string model;
        private readonly Task loop;

        public DemoServer(string root, string model)
        {
            this.root = Path.GetFullPath(root);
            this.model = model;
            using (var probe = new TcpListener(IPAddress.Loopback, 0))
            {
                probe.Start();
                Address = $"http://127.0.0.1:{((IPEndPoint)probe.LocalEndpoint).Port}/";
                probe.Stop();
            }

            listener.Prefixes.Add(Address);
            listener.Start();
            loop = Task.Run(Serve);
        }

        public string Address { get; }

        public void Dispose()
        {
            listener.Stop();
            try
            {
                loop.Wait(TimeSpan.FromSeconds(5));
            }
            catch (AggregateException)
            {
            }

            listener.Close();
        }

        private async Task Serve()
        {
            while (listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await listener.GetContextAsync();
                }
                catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }

                string relative = Uri.UnescapeDataString(context.Request.Url!.AbsolutePath.TrimStart('/'));
                string path = relative == "model.onnx" ? model : Path.GetFullPath(Path.Combine(root, relative.Length == 0 ? "index.html" : relative));
                using var response = context.Response;
                if ((path != model && !path.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal)) || !File.Exists(path))
                {
                    response.StatusCode = 404;
                    continue;
                }

                response.ContentType = Path.GetExtension(path) switch
                {
                    ".html" => "text/html; charset=utf-8",
                    ".js" or ".mjs" => "text/javascript",
                    ".wasm" => "application/wasm",
                    _ => "application/octet-stream",
                };
                byte[] bytes = await File.ReadAllBytesAsync(path);
                response.ContentLength64 = bytes.Length;
                await response.OutputStream.WriteAsync(bytes, CancellationToken.None);
            }
        }
    }
}
