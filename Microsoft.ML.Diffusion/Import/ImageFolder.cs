using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>
/// Loads a folder of PNG/JPEG/BMP images (recursively) through ML.NET's image transforms — LoadImages, ResizeImages
/// (resize or crop to the model size), ExtractPixels (grayscale or RGB, planar, [0, 255]) — into an <see cref="IDataView"/>
/// with a "Pixels" column (and a "Label" key column from sub-folder names when asked).
/// </summary>
public static class ImageFolder
{
    private static readonly string[] Extensions = { ".png", ".jpg", ".jpeg", ".bmp" };

    /// <summary>Loads the images of a folder.</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="folder">The folder (searched recursively).</param>
    /// <param name="imageSize">The side the images are resized to.</param>
    /// <param name="channels">1 (grayscale) or 3 (RGB).</param>
    /// <param name="labelsFromSubfolders">Whether the name of each image's first-level sub-folder becomes its label.</param>
    /// <param name="crop">Crop to the target aspect ratio (centre) instead of stretching.</param>
    /// <returns>The data: "Path", "Pixels" (Single vector C·H·W) and, with labels, "Label" (key).</returns>
    /// <exception cref="InvalidDataException">An image file cannot be decoded; the message names it.</exception>
    public static IDataView Load(MLContext mlContext, string folder, int imageSize, int channels = 1, bool labelsFromSubfolders = false, bool crop = true)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Image folder '{folder}' does not exist.");
        }

        if (channels is not (1 or 3) || imageSize < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(channels), "Channels must be 1 or 3 and the image size positive.");
        }

        string root = Path.GetFullPath(folder);
        var files = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToArray();
        if (files.Length == 0)
        {
            throw new InvalidOperationException($"Image folder '{folder}' holds no PNG, JPEG or BMP files.");
        }

        foreach (string file in files)
        {
            try
            {
                using var image = MLImage.CreateFromFile(file);
                if (image.Width < 1 || image.Height < 1)
                {
                    throw new InvalidDataException("it has no pixels");
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                throw new InvalidDataException($"Image file '{file}' cannot be decoded: {ex.Message}", ex);
            }
        }

        var rows = files.Select(f => new FileRow { Path = f, Class = labelsFromSubfolders ? FirstFolder(root, f) : string.Empty }).ToArray();
        IDataView data = mlContext.Data.LoadFromEnumerable(rows);
        var colors = channels == 1 ? ImagePixelExtractingEstimator.ColorBits.Red : ImagePixelExtractingEstimator.ColorBits.Rgb;
        IEstimator<ITransformer> pipeline = mlContext.Transforms.LoadImages("Image", root, nameof(FileRow.Path))
            .Append(mlContext.Transforms.ResizeImages("Image", imageSize, imageSize, resizing: crop ? ImageResizingEstimator.ResizingKind.IsoCrop : ImageResizingEstimator.ResizingKind.Fill));
        if (channels == 1)
        {
            pipeline = pipeline.Append(mlContext.Transforms.ConvertToGrayscale("Image"));
        }

        pipeline = pipeline.Append(mlContext.Transforms.ExtractPixels("Pixels", "Image", colorsToExtract: colors));
        if (labelsFromSubfolders)
        {
            pipeline = pipeline.Append(mlContext.Transforms.Conversion.MapValueToKey("Label", nameof(FileRow.Class)));
        }

        return pipeline.Fit(data).Transform(data);
    }

    private static string FirstFolder(string root, string file)
    {
        string relative = Path.GetRelativePath(root, file);
        int separator = relative.IndexOfAny(new[] { Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar });
        return separator < 0 ? string.Empty : relative[..separator];
    }

    internal sealed class FileRow
    {
        public string Path { get; set; } = string.Empty;

        public string Class { get; set; } = string.Empty;
    }
}
