using System;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using static TorchSharp.torch;

namespace FolderTrainer;

/// <summary>
/// Inception FID of the final model against the folder's images (<c>--inception FILE</c>): N generated images (seeds
/// 2,000,000 + i, the saved model's sampler) against the first N images of the folder as training read them (resized to
/// --size, grayscale or RGB; grayscale repeated to RGB as pytorch-fid reads a grayscale PNG), in pytorch-fid's FID
/// InceptionV3. Equal to pytorch-fid's number on the same files when the folder's images are already --size pixels.
/// </summary>
internal static class FolderFid
{
    /// <summary>The most images compared.</summary>
    public const int MaxImages = 50_000;

    public static void Measure(DiffusionSampler sampler, IDataView data, FolderOptions options, FidInception inception, TextWriter console)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int channels = sampler.Model.Channels;
        int size = options.Size;
        int wanted = options.FidImages ?? (options.Device == "cpu" ? 200 : 1000);
        var rows = data.GetColumn<VBuffer<float>>("Pixels").Take(wanted).Select(v => v.DenseValues().ToArray()).ToArray();
        if (rows.Length < 4)
        {
            console.WriteLine($"Inception FID skipped: the folder has {rows.Length} images, fewer than 4.");
            return;
        }

        using var scope = NewDisposeScope();
        var real = ImageConversion.PixelsToModel(tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Length, channels, size, size }));
        int count = rows.Length;
        var seeds = Enumerable.Range(0, count).Select(i => 2_000_000L + i).ToArray();
        int classCount = sampler.Model.ClassCount;
        var labels = classCount > 0 ? tensor(Enumerable.Range(0, count).Select(i => (long)(i % classCount)).ToArray()) : null;
        var generated = sampler.Options.CreateSamplingLoop().Sample(sampler.Model.Diffusion, seeds, labels);
        var report = InceptionFidReport.MeasureImages(inception, real, generated);
        console.WriteLine(FormattableString.Invariant($"{report} — pytorch-fid's FID InceptionV3 ({inception.Source}), {clock.Elapsed:mm\\:ss}."));
    }
}
