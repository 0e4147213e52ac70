using System;
using System.IO;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Core.Diffusion;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// The one place that owns the format of a diffusion model inside an ML.NET model file. The model stream (after ML.NET's
/// own entry header) holds, in order:
/// <list type="number">
/// <item>int32 — format version (<see cref="FormatVersion"/>);</item>
/// <item>string — the configuration as JSON (BinaryWriter's length-prefixed UTF-8): the schedule's exact β values, the
/// objective, loss, variance, U-Net shape, image size, columns, class names and sampler defaults;</item>
/// <item>byte — where the weights are: 0 = their own repository entry <see cref="WeightsEntryName"/>, 1 = inline, right
/// after this header;</item>
/// <item>int64 — the weights' length in bytes;</item>
/// <item>32 bytes — the SHA-256 of the weights (ML.NET's zip reader checks neither CRC nor deflate data, so damage inside
/// the weights would otherwise load silently as wrong weights);</item>
/// <item>32 bytes (format 2 and later) — the SHA-256 of the configuration's UTF-8 JSON, so that damage to a β, a layer
/// width or a sampler setting is refused instead of loading as another model.</item>
/// </list>
/// Format 3 stores the sampler as a scheduler object ("Sampling.Scheduler": its registered name and its own settings);
/// formats 1 and 2 stored one method and shared steps, η and spacing, which <see cref="LegacySamplingSettings"/> maps onto
/// the same scheduler when they are read.
/// The weights are the EMA network's parameters in TorchSharp's <c>Module.save</c> format.
/// </summary>
/// <remarks>
/// Reading trusts nothing before it is checked: the configuration's hash first, then every field against
/// <see cref="ModelLimits"/>, then the weights' declared length against the parameter count the configuration implies
/// (so that no network is built that the file's weights could not fill), then the weights' hash — all before a tensor is
/// allocated. Formats 1 (no configuration hash) and 2 (the old sampler settings) are still read.
/// </remarks>
internal static class DiffusionModelFile
{
    public const int FormatVersion = 3;
    public const string WeightsEntryName = "DiffusionWeights.bin";

    private static readonly JsonSerializerOptions Json = new()
    {
        Converters = { new JsonStringEnumConverter() },
        WriteIndented = false,
    };

    /// <summary>
    /// The configuration as JSON — one flat object, the description's fields (<see cref="GaussianDiffusionOptions"/>) then the
    /// file's own — and, for a fingerprint, without the fields that may change across a resume.
    /// </summary>
    public static string ConfigJson(DiffusionModelConfig config, bool forFingerprint = false)
    {
        var json = JsonSerializer.SerializeToNode(config.Diffusion, Json)!.AsObject();
        foreach (var (name, value) in JsonSerializer.SerializeToNode(config, Json)!.AsObject())
        {
            json.Add(name, value?.DeepClone());
        }

        if (!forFingerprint)
        {
            return json.ToJsonString(Json);
        }

        var node = JsonNode.Parse(json.ToJsonString(Json))!.AsObject();
        node.Remove(nameof(DiffusionModelConfig.TrainedSteps));
        node.Remove(nameof(DiffusionModelConfig.Sampling));
        return node.ToJsonString();
    }

    public static void WriteHeader(BinaryWriter writer, DiffusionModelConfig config, byte[] weights, bool inline) =>
        WriteHeader(writer, ConfigJson(config), weights, inline);

    /// <summary>Writes the header around a configuration already in JSON (the hostile-file tests write JSON of their own).</summary>
    internal static void WriteHeader(BinaryWriter writer, string json, byte[] weights, bool inline)
    {
        writer.Write(FormatVersion);
        writer.Write(json);
        writer.Write(inline ? (byte)1 : (byte)0);
        writer.Write((long)weights.Length);
        writer.Write(SHA256.HashData(weights));
        writer.Write(SHA256.HashData(Encoding.UTF8.GetBytes(json)));
        if (inline)
        {
            writer.Write(weights);
        }
    }

    public static Header ReadHeader(BinaryReader reader, string source)
    {
        try
        {
            int version = reader.ReadInt32();
            if (version > FormatVersion)
            {
                throw new InvalidDataException(
                    $"{source} was saved by a newer Microsoft.ML.Diffusion (model format {version}); this version reads format {FormatVersion} and older. Upgrade Microsoft.ML.Diffusion.");
            }

            if (version < 1)
            {
                throw new InvalidDataException($"{source} has an invalid diffusion model format number {version}.");
            }

            string json = reader.ReadString();
            byte storage = reader.ReadByte();
            long length = reader.ReadInt64();
            byte[] hash = ReadExactly(reader, 32);
            if (version >= 2 && !SHA256.HashData(Encoding.UTF8.GetBytes(json)).AsSpan().SequenceEqual(ReadExactly(reader, 32)))
            {
                throw new InvalidDataException($"{source} is damaged: the SHA-256 of the diffusion model configuration does not match the one recorded when it was saved.");
            }

            if (storage > 1 || length <= 0 || length > int.MaxValue)
            {
                throw new InvalidDataException($"{source} has a damaged diffusion model header (weights storage {storage}, length {length}).");
            }

            DiffusionModelConfig config;
            try
            {
                config = ParseConfig(json) ?? throw new InvalidDataException($"{source} has an empty diffusion model configuration.");
            }
            catch (Exception ex) when (ex is JsonException or ArgumentException or NotSupportedException or InvalidOperationException)
            {
                throw new InvalidDataException($"{source} has a damaged diffusion model configuration: {ex.Message}", ex);
            }

            ModelLimits.Check(config, source);

            // TorchSharp stores each float32 parameter in 4 bytes (plus names and shapes): a file whose weights are shorter
            // than 2 bytes per parameter cannot hold the network its configuration describes, so none is built.
            var network = config.Diffusion.Network;
            long parameters = network.CountParameters() ?? 0;
            if (parameters * 2 > length)
            {
                throw new InvalidDataException(
                    $"{source} describes a {network.Kind} of {parameters:N0} parameters but holds only {length:N0} bytes of weights: the configuration and the weights disagree.");
            }

            return new Header(config, storage == 1, length, hash);
        }
        catch (EndOfStreamException ex)
        {
            throw new InvalidDataException($"{source} is truncated: the diffusion model header ends early.", ex);
        }
    }

    public static byte[] ReadWeights(BinaryReader reader, Header header, string source, bool zipEntry = false)
    {
        // Read in slices: a damaged length must not allocate more than the bytes that are really there.
        using var weights = new MemoryStream();
        byte[] slice = new byte[1 << 20];
        long remaining = header.WeightLength;
        while (remaining > 0)
        {
            int read = reader.Read(slice, 0, (int)Math.Min(slice.Length, remaining));
            if (read == 0)
            {
                // In a zip entry the archive itself is whole (its directory, at its end, was read): an entry that ends early
                // has compressed data the decompressor stopped at (damaged), or was written short; inline weights end with
                // the file. The two zip cases read the same here, so the message says both, damage first (the common one).
                throw new InvalidDataException(zipEntry
                    ? $"{source} is damaged: its '{WeightsEntryName}' entry decompresses to {weights.Length} of the {header.WeightLength} weight bytes its header declares (the entry's compressed data is corrupt, or the entry was written truncated)."
                    : $"{source} is truncated: {weights.Length} of {header.WeightLength} weight bytes are present.");
            }

            weights.Write(slice, 0, read);
            remaining -= read;
        }

        byte[] bytes = weights.ToArray();
        if (!SHA256.HashData(bytes).AsSpan().SequenceEqual(header.WeightHash))
        {
            throw new InvalidDataException($"{source} is damaged: the SHA-256 of the network weights does not match the one recorded when it was saved.");
        }

        return bytes;
    }

    /// <summary>Builds the model a checked header and its checked weights describe; any failure names the source.</summary>
    public static DiffusionModel CreateModel(Header header, byte[] weights, string source)
    {
        try
        {
            return DiffusionModel.Load(header.Config, weights);
        }
        catch (Exception ex) when (ex is not InvalidDataException)
        {
            throw new InvalidDataException($"{source} has weights that do not fit its configuration: {ex.Message}", ex);
        }
    }

    // The flat object holds the description's fields and the file's own: each part reads its own (unknown names are ignored).
    private static DiffusionModelConfig? ParseConfig(string json)
    {
        if (JsonNode.Parse(json) is not JsonObject node)
        {
            return null;
        }

        LegacySamplingSettings.Upgrade(node[nameof(DiffusionModelConfig.Sampling)]);
        var config = node.Deserialize<DiffusionModelConfig>(Json);
        if (config is not null)
        {
            config.Diffusion = node.Deserialize<GaussianDiffusionOptions>(Json) ?? throw new JsonException("The diffusion settings are empty.");
        }

        return config;
    }

    private static byte[] ReadExactly(BinaryReader reader, int count)
    {
        byte[] bytes = reader.ReadBytes(count);
        return bytes.Length == count ? bytes : throw new EndOfStreamException();
    }

    /// <summary>The parsed header.</summary>
    public sealed record Header(DiffusionModelConfig Config, bool Inline, long WeightLength, byte[] WeightHash);
}
