// The deploy-only check: "generate MODEL.onnx" runs a sampler exported by eng/consumer with Microsoft.ML.Diffusion.Onnx
// and ONNX Runtime alone, for seeds 1 to 8, and compares its pixels with MODEL.onnx.pixels, the ones TorchSharp generated
// for the same seeds. The tolerance is docs/onnx.md's: every pixel within one level of 255, at most 2 % of them
// different (x_T agrees to 1e-6 and the graph to 1e-5, so only a value within 1e-5 of a rounding boundary may move).
// It also fails if any assembly named *Torch* was loaded. Prints the runtime and what it found.
using System.Runtime.InteropServices;
using Microsoft.ML.Diffusion.Onnx;

if (args is not ["generate", string onnx])
{
    Console.Error.WriteLine("usage: OnnxConsumer generate MODEL.onnx (with MODEL.onnx.pixels beside it)");
    return 2;
}

byte[] expected = File.ReadAllBytes(onnx + ".pixels");
using var generator = new OnnxDiffusionGenerator(onnx);
byte[] pixels = generator.GeneratePixels(Enumerable.Range(1, 8).Select(s => (long)s).ToArray()).SelectMany(p => p).ToArray();
if (pixels.Length != expected.Length)
{
    Console.Error.WriteLine($"ONNX Runtime generated {pixels.Length} pixels; TorchSharp {expected.Length}");
    return 1;
}

int different = pixels.Where((p, i) => p != expected[i]).Count();
int largest = pixels.Select((p, i) => Math.Abs(p - expected[i])).Max();
string[] torch = AppDomain.CurrentDomain.GetAssemblies().Select(a => a.GetName().Name ?? string.Empty).Where(n => n.Contains("Torch", StringComparison.OrdinalIgnoreCase)).ToArray();
Console.WriteLine($"{RuntimeInformation.FrameworkDescription} {pixels.Length - different} of {pixels.Length} pixels equal to TorchSharp's, largest difference {largest}");
if (largest > 1 || different > pixels.Length / 50)
{
    Console.Error.WriteLine($"the deploy-only pixels are outside docs/onnx.md's tolerance (within 1 level, at most 2 % different): {different} differ, by up to {largest}");
    return 1;
}

if (torch.Length > 0)
{
    Console.Error.WriteLine($"the deploy-only application loaded {string.Join(", ", torch)}");
    return 1;
}

return 0;
