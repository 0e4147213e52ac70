// QuickStart: the smallest complete use of Microsoft.ML.Diffusion's core, in the shape of denoising-diffusion-pytorch's
// README. It builds a U-Net, wraps it in a Gaussian diffusion, trains it for a few hundred steps on generated 16×16
// pictures of bars, samples 4 images and writes them to quickstart.png. Runs in well under a minute on 2 CPU cores.
using System;
using System.Diagnostics;
using System.IO;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using TorchSharp;
using static TorchSharp.torch;

string output = args.Length > 0 ? args[0] : "quickstart.png";
int steps = 200;
if (args.Length > 2 || (args.Length > 1 && !(int.TryParse(args[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out steps) && steps is >= 1 and <= 1_000_000)))
{
    // One line, as every program here: the step count is bounded (a million steps of this example take days).
    Console.WriteLine("usage: QuickStart [OUTPUT.png] [STEPS: an integer in [1, 1000000], default 200]");
    return 2;
}

manual_seed(0);
torch.set_num_threads(Math.Max(1, Environment.ProcessorCount));

var unet = new UNet(new UNetOptions { Dim = 16, DimMults = new[] { 1, 2 }, Channels = 1 });
using var diffusion = new GaussianDiffusion(unet, imageSize: 16, timesteps: 200, loss: DiffusionLoss.MeanSquaredError, schedule: BetaSchedule.Cosine);
Console.WriteLine($"U-Net with {unet.ParameterCount:N0} parameters, T = {diffusion.Timesteps}");

using var optimizer = optim.AdamW(diffusion.parameters(), lr: 2e-3);
using var generator = new Generator(1, CPU);
var clock = Stopwatch.StartNew();
for (int step = 1; step <= steps; step++)
{
    using var scope = NewDisposeScope();
    var images = Bars(batch: 32, generator);       // training images in [−1, 1], N×1×16×16
    optimizer.zero_grad();
    var loss = diffusion.Loss(images, generator: generator);
    loss.backward();
    optimizer.step();
    if (step == 1 || step % 50 == 0)
    {
        Console.WriteLine($"step {step,4}  loss {loss.item<float>():F4}  ({clock.Elapsed.TotalSeconds:F1} s)");
    }
}

diffusion.eval();
using var samples = diffusion.Sample(batchSize: 4, sampler: new DdimScheduler { Steps = 50 }, seed: 7);
ImageConversion.SavePng(ImageConversion.Grid(samples, columns: 4, scale: 4), output);
Console.WriteLine($"wrote 4 samples to {Path.GetFullPath(output)} in {clock.Elapsed.TotalSeconds:F1} s");
return 0;

// Each picture holds 1 to 3 bright bars, all horizontal or all vertical, on a dark background.
static Tensor Bars(int batch, Generator generator)
{
    var images = -ones(new long[] { batch, 1, 16, 16 });
    var vertical = randint(0, 2, new long[] { batch }, generator: generator).data<long>().ToArray();
    var positions = randint(0, 14, new long[] { batch, 3 }, generator: generator).data<long>().ToArray();
    var counts = randint(1, 4, new long[] { batch }, generator: generator).data<long>().ToArray();
    for (int i = 0; i < batch; i++)
    {
        for (int b = 0; b < counts[i]; b++)
        {
            long p = positions[(i * 3) + b];
            if (vertical[i] == 1)
            {
                images[i, 0, .., TensorIndex.Slice(p, p + 2)] = 1f;
            }
            else
            {
                images[i, 0, TensorIndex.Slice(p, p + 2), ..] = 1f;
            }
        }
    }

    return images;
}
