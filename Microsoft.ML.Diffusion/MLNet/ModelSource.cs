using System;
using System.IO;
using System.Linq;
using System.Reflection;

namespace Microsoft.ML.Diffusion;

/// <summary>Names the file a model is being loaded from, for error messages (best effort: ML.NET does not expose it).</summary>
internal static class ModelSource
{
    public const string Unknown = "The model file";

    public static string Describe(object loadContext)
    {
        try
        {
            object? repository = loadContext.GetType().GetField("Repository", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)?.GetValue(loadContext);
            if (repository is null)
            {
                return Unknown;
            }

            foreach (var field in repository.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
            {
                object? value = field.GetValue(repository);
                if (value is FileStream file)
                {
                    return $"Model file '{file.Name}'";
                }

                if (value is System.IO.Compression.ZipArchive)
                {
                    var stream = value.GetType().GetField("_archiveStream", BindingFlags.Instance | BindingFlags.NonPublic)?.GetValue(value);
                    if (stream is FileStream zipFile)
                    {
                        return $"Model file '{zipFile.Name}'";
                    }
                }
            }
        }
        catch (Exception ex) when (ex is FieldAccessException or TargetException or ArgumentException)
        {
            // fall through: the name is only for messages
        }

        return Unknown;
    }
}
