using System.Collections.Generic;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>The images of a folder, as <see cref="ImageFolder.ListImages(string)"/> found and checked them.</summary>
public sealed class ImageFolderListing
{
    internal ImageFolderListing(IReadOnlyList<string> files, IReadOnlyList<string> linksNotFollowed, IReadOnlyList<string> duplicates)
    {
        Files = files;
        LinksNotFollowed = linksNotFollowed;
        Duplicates = duplicates;
    }

    /// <summary>Gets the image files (full paths, ordinal order), each checked and each file once.</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>Gets the links to folders met in the walk: not followed (so a link loop cannot make the walk endless).</summary>
    public IReadOnlyList<string> LinksNotFollowed { get; }

    /// <summary>Gets the image paths left out because they name a file already in <see cref="Files"/> (a link or a hard link to it).</summary>
    public IReadOnlyList<string> Duplicates { get; }
}
