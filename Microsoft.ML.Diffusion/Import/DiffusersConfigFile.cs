using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>
/// One diffusers configuration file (<c>config.json</c>, <c>scheduler_config.json</c>, <c>model_index.json</c>): typed
/// reads of its keys, each failing with an <see cref="InvalidDataException"/> that names the file, the key and what it
/// expected, and the list of keys nothing read (so that an unknown setting is refused, not silently ignored).
/// </summary>
internal sealed class DiffusersConfigFile
{
    // A config file is a few hundred bytes; a trained_betas list of 100 000 values is about 2 MB.
    private const long MaxBytes = 16L << 20;
    private readonly Dictionary<string, JsonElement> keys;
    private readonly HashSet<string> read = new(StringComparer.Ordinal);

    private DiffusersConfigFile(string path, Dictionary<string, JsonElement> keys)
    {
        Path = path;
        this.keys = keys;
    }

    /// <summary>Gets the file's path, for messages.</summary>
    public string Path { get; }

    /// <summary>Reads a file that must hold one JSON object.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The file's keys.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a JSON object.</exception>
    public static DiffusersConfigFile Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The diffusers configuration file '{path}' does not exist.", path);
        }

        long length = new FileInfo(path).Length;
        if (length > MaxBytes)
        {
            throw new InvalidDataException(Invariant($"'{path}' is {length} bytes long: not a diffusers configuration file (at most {MaxBytes} bytes)."));
        }

        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"'{path}' holds a JSON {document.RootElement.ValueKind}, not the object of a diffusers configuration file.");
            }

            var keys = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                keys[property.Name] = property.Value.Clone();
            }

            return new DiffusersConfigFile(path, keys);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON, so not a diffusers configuration file: {ex.Message}", ex);
        }
    }

    /// <summary>Gets a value indicating whether the key is present with a value other than null.</summary>
    /// <param name="key">The key.</param>
    /// <returns>True when set.</returns>
    public bool Has(string key) => keys.TryGetValue(key, out var value) && value.ValueKind != JsonValueKind.Null;

    /// <summary>Gets a value indicating whether the key is present with the value null (not merely absent).</summary>
    /// <param name="key">The key.</param>
    /// <returns>True when null.</returns>
    public bool IsNull(string key)
    {
        read.Add(key);
        return keys.TryGetValue(key, out var value) && value.ValueKind == JsonValueKind.Null;
    }

    /// <summary>Marks keys as understood without reading them (legacy or irrelevant keys).</summary>
    /// <param name="names">The keys.</param>
    public void Ignore(params string[] names)
    {
        foreach (var name in names)
        {
            read.Add(name);
        }
    }

    /// <summary>Reads a string, or <paramref name="fallback"/> when the key is absent or null.</summary>
    public string? String(string key, string? fallback)
    {
        var value = Get(key);
        return value is null ? fallback : value.Value.ValueKind == JsonValueKind.String ? value.Value.GetString() : throw Wrong(key, "a string", value.Value);
    }

    /// <summary>Reads a string that must be one of <paramref name="supported"/>.</summary>
    public string Choice(string key, string fallback, params string[] supported)
    {
        string value = String(key, fallback)!;
        return supported.Contains(value, StringComparer.Ordinal) ? value : throw Unsupported(key, Quote(value), string.Join(", ", supported.Select(Quote)));
    }

    /// <summary>Reads an integer, or <paramref name="fallback"/> when the key is absent or null.</summary>
    public int? Int(string key, int? fallback)
    {
        var value = Get(key);
        if (value is null)
        {
            return fallback;
        }

        return value.Value.ValueKind == JsonValueKind.Number && value.Value.TryGetInt32(out int result) ? result : throw Wrong(key, "an integer", value.Value);
    }

    /// <summary>Reads a number, or <paramref name="fallback"/> when the key is absent or null.</summary>
    public double Double(string key, double fallback)
    {
        var value = Get(key);
        if (value is null)
        {
            return fallback;
        }

        return value.Value.ValueKind == JsonValueKind.Number && value.Value.TryGetDouble(out double result) && double.IsFinite(result) ? result : throw Wrong(key, "a finite number", value.Value);
    }

    /// <summary>Reads true or false, or <paramref name="fallback"/> when the key is absent or null.</summary>
    public bool Bool(string key, bool fallback)
    {
        var value = Get(key);
        return value?.ValueKind switch
        {
            null => fallback,
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Wrong(key, "true or false", value!.Value),
        };
    }

    /// <summary>Reads a list of integers, or <paramref name="fallback"/> when the key is absent or null.</summary>
    public int[]? Ints(string key, int[]? fallback) => Array(key, fallback, "a list of integers", e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v) ? (true, v) : (false, 0));

    /// <summary>Reads a list of strings, or <paramref name="fallback"/> when the key is absent or null.</summary>
    public string[]? Strings(string key, string[]? fallback) => Array(key, fallback, "a list of strings", e => (e.ValueKind == JsonValueKind.String, e.ValueKind == JsonValueKind.String ? e.GetString()! : string.Empty));

    /// <summary>Reads a list of numbers, or <paramref name="fallback"/> when the key is absent or null.</summary>
    public double[]? Doubles(string key, double[]? fallback) =>
        Array(key, fallback, "a list of finite numbers", e => e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out double v) && double.IsFinite(v) ? (true, v) : (false, 0.0));

    /// <summary>Reads an integer or a list of integers (diffusers' <c>sample_size</c>), or null.</summary>
    public int[]? IntOrInts(string key)
    {
        var value = Get(key);
        if (value is null)
        {
            return null;
        }

        return value.Value.ValueKind == JsonValueKind.Number ? new[] { Int(key, null)!.Value } : Ints(key, null);
    }

    /// <summary>The keys present with a non-null value that nothing read or ignored.</summary>
    /// <returns>The keys, in file order.</returns>
    public IReadOnlyList<string> UnreadKeys() => keys.Where(k => !read.Contains(k.Key) && k.Value.ValueKind != JsonValueKind.Null).Select(k => k.Key).ToList();

    /// <summary>An exception for a key whose value this importer does not support.</summary>
    public InvalidDataException Unsupported(string key, string value, string supported) =>
        new($"'{Path}': {key} = {value} is not supported by the diffusers importer (supported: {supported}).");

    /// <summary>An exception for a key whose value disagrees with another file or key.</summary>
    public InvalidDataException Mismatch(string key, string message) => new($"'{Path}': {key}: {message}");

    private static string Quote(string value) => "\"" + value + "\"";

    private static string Invariant(FormattableString message) => message.ToString(CultureInfo.InvariantCulture);

    private JsonElement? Get(string key)
    {
        read.Add(key);
        return keys.TryGetValue(key, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;
    }

    private T[]? Array<T>(string key, T[]? fallback, string what, Func<JsonElement, (bool Ok, T Value)> item)
    {
        var value = Get(key);
        if (value is null)
        {
            return fallback;
        }

        if (value.Value.ValueKind != JsonValueKind.Array)
        {
            throw Wrong(key, what, value.Value);
        }

        var result = new List<T>();
        foreach (var element in value.Value.EnumerateArray())
        {
            var (ok, parsed) = item(element);
            result.Add(ok ? parsed : throw Wrong(key, what, value.Value));
        }

        return result.ToArray();
    }

    private InvalidDataException Wrong(string key, string what, JsonElement value)
    {
        string text = value.GetRawText();
        return new InvalidDataException($"'{Path}': {key} must be {what}; got {(text.Length > 80 ? text[..80] + "…" : text)}.");
    }
}
