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
    /// <summary>The largest width or height of an image accepted: 16,384 pixels, twice the largest side a model has.</summary>
    public const int MaxImageSide = 16_384;

    /// <summary>The most pixels of an image accepted: 2²⁶ (64 megapixels, 256 MiB once decoded to 32-bit pixels).</summary>
    public const long MaxImagePixels = 64L * 1024 * 1024;

    private const int MaxDepth = 256;

    private static readonly string[] Extensions = { ".png", ".jpg", ".jpeg", ".bmp" };

    /// <summary>
    /// Lists and checks the images of a folder, without following links to folders: each file whose name ends in .png,
    /// .jpg, .jpeg or .bmp (any case) must be a regular file (or a link to one) whose header is a PNG, JPEG or BMP of at
    /// most <see cref="MaxImageSide"/> pixels a side and <see cref="MaxImagePixels"/> pixels, that is whole (a PNG up to
    /// its IEND chunk, a JPEG up to its end-of-image marker, a BMP's pixel rows), and that decodes to the size its header
    /// declares. The header is checked before the image is decoded, and the file's type before it is opened: a FIFO,
    /// socket or device is never opened.
    /// </summary>
    /// <param name="folder">The folder (searched recursively; links to folders are listed in
    /// <see cref="ImageFolderListing.LinksNotFollowed"/>, not followed).</param>
    /// <returns>The files in ordinal order, each file once (a second path to the same file, a link or a hard link, is
    /// listed in <see cref="ImageFolderListing.Duplicates"/>).</returns>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="InvalidOperationException">The folder holds no image files.</exception>
    /// <exception cref="InvalidDataException">An image file is empty, not a regular file, not an image, truncated, too
    /// large, a loop of links, or cannot be decoded; the message names the file and what is wrong.</exception>
    /// <exception cref="IOException">An image file is a broken link (<see cref="FileNotFoundException"/>) or cannot be read;
    /// the message names it.</exception>
    /// <exception cref="UnauthorizedAccessException">An image file or a folder may not be read; the message names it.</exception>
    public static ImageFolderListing ListImages(string folder) => ListImages(folder, useFileStatus: true);

    /// <summary>As <see cref="ListImages(string)"/>; without <paramref name="useFileStatus"/>, as on a system without
    /// <c>statx</c> (so that tests reach that path on Linux too).</summary>
    internal static ImageFolderListing ListImages(string folder, bool useFileStatus)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Image folder '{folder}' does not exist.");
        }

        string root = Path.GetFullPath(folder);
        var candidates = new List<string>();
        var linksNotFollowed = new List<string>();
        var pending = new Stack<(string Path, int Depth)>();
        pending.Push((root, 0));
        var options = new EnumerationOptions { RecurseSubdirectories = false, AttributesToSkip = 0, IgnoreInaccessible = false };
        while (pending.Count > 0)
        {
            var (directory, depth) = pending.Pop();
            foreach (var entry in new DirectoryInfo(directory).EnumerateFileSystemInfos("*", options))
            {
                if (entry is DirectoryInfo)
                {
                    if (entry.LinkTarget is not null)
                    {
                        linksNotFollowed.Add(entry.FullName); // a link to a folder: never followed, so no loop
                    }
                    else if (depth + 1 > MaxDepth)
                    {
                        throw new InvalidDataException($"Image folder '{folder}' is nested more than {MaxDepth} folders deep at '{entry.FullName}'.");
                    }
                    else
                    {
                        pending.Push((entry.FullName, depth + 1));
                    }
                }
                else if (Extensions.Contains(Path.GetExtension(entry.Name).ToLowerInvariant()))
                {
                    candidates.Add(entry.FullName);
                }
            }
        }

        if (candidates.Count == 0)
        {
            throw new InvalidOperationException($"Image folder '{folder}' holds no PNG, JPEG or BMP files.");
        }

        candidates.Sort(StringComparer.Ordinal);
        // Each file once: of the paths to one file, the one that is not a link (else the first) is kept.
        var examined = candidates.Select(f => (File: f, Status: Examine(f, useFileStatus))).ToList();
        var kept = examined
            .GroupBy(e => e.Status.Identity, StringComparer.Ordinal)
            .Select(g => g.OrderBy(e => e.Status.IsLink).ThenBy(e => e.File, StringComparer.Ordinal).First().File)
            .ToHashSet(StringComparer.Ordinal);
        var files = candidates.Where(kept.Contains).ToList();
        var duplicates = candidates.Where(f => !kept.Contains(f)).ToList();
        foreach (string file in files)
        {
            CheckImage(file);
        }

        linksNotFollowed.Sort(StringComparer.Ordinal);
        return new ImageFolderListing(files, linksNotFollowed, duplicates);
    }

    /// <summary>Loads the images of a folder.</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="folder">The folder (searched recursively).</param>
    /// <param name="imageSize">The side the images are resized to.</param>
    /// <param name="channels">1 (grayscale) or 3 (RGB).</param>
    /// <param name="labelsFromSubfolders">Whether the name of each image's first-level sub-folder becomes its label.</param>
    /// <param name="crop">Crop to the target aspect ratio (centre) instead of stretching.</param>
    /// <returns>The data: "Path", "Pixels" (Single vector C·H·W) and, with labels, "Label" (key).</returns>
    /// <exception cref="InvalidDataException">An image file is refused (see <see cref="ListImages(string)"/>); the message names it.</exception>
    /// <exception cref="IOException">An image file cannot be read, or is a broken link; the message names it.</exception>
    /// <exception cref="UnauthorizedAccessException">An image file or a folder may not be read; the message names it.</exception>
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
        string[] files = ListImages(root).Files.ToArray();
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

    // What the path names, without opening it: a regular file (or a link to one) passes and gets an identity that two paths
    // of the same file share; anything else is refused naming the file.
    private static (string Identity, bool IsLink) Examine(string file, bool useFileStatus)
    {
        string? target = null;
        try
        {
            target = new FileInfo(file).LinkTarget;
        }
        catch (IOException)
        {
        }

        if (useFileStatus && FileStatus.TryGet(file, out var kind, out var id, out int errno))
        {
            switch (errno)
            {
                case 0:
                    break;
                case 2 when target is not null:
                    throw new FileNotFoundException($"Image file '{file}' is a broken link: its target '{target}' does not exist.", file);
                case 40:
                    throw new InvalidDataException($"Image file '{file}' is a loop of symbolic links.");
                case 13:
                    throw new UnauthorizedAccessException($"Image file '{file}' cannot be examined: permission denied (on it or on the folders of its link target).");
                default:
                    throw new IOException($"Image file '{file}' cannot be examined (error {errno}).");
            }

            if (kind != FileStatus.Kind.Regular)
            {
                string what = kind switch
                {
                    FileStatus.Kind.Fifo => "a FIFO (named pipe)",
                    FileStatus.Kind.Socket => "a socket",
                    FileStatus.Kind.CharacterDevice => "a character device",
                    FileStatus.Kind.BlockDevice => "a block device",
                    _ => "not a regular file",
                };
                throw new InvalidDataException($"Image file '{file}' is {what}{(target is null ? string.Empty : $" (through a link to '{target}')")}, not a regular file; it was not opened.");
            }

            return ($"{id.Device}:{id.Inode}", target is not null);
        }

        // No statx (not Linux): what .NET reports. A FIFO, socket or device has a length of 0, so it is refused unopened.
        FileSystemInfo? final;
        try
        {
            final = target is null ? new FileInfo(file) : new FileInfo(file).ResolveLinkTarget(returnFinalTarget: true);
        }
        catch (IOException ex)
        {
            throw new InvalidDataException($"Image file '{file}' is a link that cannot be resolved (a loop of links?): {ex.Message}", ex);
        }

        if (final is null || !final.Exists)
        {
            throw new FileNotFoundException($"Image file '{file}' is a broken link: its target '{target}' does not exist.", file);
        }

        if (((FileInfo)final).Length == 0)
        {
            throw new InvalidDataException($"Image file '{file}' is empty (0 bytes), or not a regular file (a FIFO, socket or device); it was not opened.");
        }

        return (Path.GetFullPath(final.FullName), target is not null);
    }

    // Opens a file already examined, checks its header and ends, then decodes it and compares the size with the header.
    private static void CheckImage(string file)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 4096);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new UnauthorizedAccessException($"Image file '{file}' cannot be read: permission denied.", ex);
        }
        catch (IOException ex)
        {
            throw new IOException($"Image file '{file}' cannot be read: {ex.Message}", ex);
        }

        using (stream)
        {
            var (format, width, height) = ImageHeader.Check(file, stream, MaxImageSide, MaxImagePixels);
            stream.Position = 0;
            MLImage image;
            try
            {
                image = MLImage.CreateFromStream(stream);
            }
            catch (IOException ex)
            {
                throw new IOException($"Image file '{file}' cannot be read: {ex.Message}", ex);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Not the decoder's own message: MLImage says "Invalid path (Parameter 'imagePath')" or the like.
                throw new InvalidDataException($"Image file '{file}' has the header of a {format} of {width} × {height} pixels, but its data cannot be decoded.", ex);
            }

            using (image)
            {
                if (image.Width != width || image.Height != height)
                {
                    throw new InvalidDataException($"Image file '{file}' decodes to {image.Width} × {image.Height} pixels, not the {width} × {height} of its header.");
                }
            }
        }
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
