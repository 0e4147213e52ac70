using System;
using System.IO;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Persistence;

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
/// the weights would otherwise load silently as wrong weights).</item>
/// </list>
/// The weights are the EMA network's parameters in TorchSharp's <c>Module.save</c> format.
/// </summary>
internal static class DiffusionModelFile
{
    public const int FormatVersion = 1;
    public const string WeightsEntryName = "DiffusionWeights.bin";

    private static readonly JsonSerializerOptions Json = new()
    {
        Converters = { new JsonStringEnumConverter() },
        WriteIndented = false,
    };

    /// <summary>The configuration as JSON; for a fingerprint, without the fields that may change across a resume.</summary>
    public static string ConfigJson(DiffusionModelConfig config, bool forFingerprint = false)
    {
        if (!forFingerprint)
        {
            return JsonSerializer.Serialize(config, Json);
        }

        var node = System.Text.Json.Nodes.JsonNode.Parse(JsonSerializer.Serialize(config, Json))!.AsObject();
        node.Remove(nameof(DiffusionModelConfig.TrainedSteps));
        node.Remove(nameof(DiffusionModelConfig.Sampling));
        return node.ToJsonString();
    }

    public static void WriteHeader(BinaryWriter writer, DiffusionModelConfig config, byte[] weights, bool inline)
    {
        writer.Write(FormatVersion);
        writer.Write(ConfigJson(config));
        writer.Write(inline ? (byte)1 : (byte)0);
        writer.Write((long)weights.Length);
        writer.Write(SHA256.HashData(weights));
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
            DiffusionModelConfig config;
            try
            {
                config = JsonSerializer.Deserialize<DiffusionModelConfig>(json, Json)
                    ?? throw new InvalidDataException($"{source} has an empty diffusion model configuration.");
                config.Network.Validate();
                _ = NoiseSchedule.Restore(config.Schedule, config.Betas);
            }
            catch (Exception ex) when (ex is JsonException or ArgumentException or NotSupportedException)
            {
                throw new InvalidDataException($"{source} has a damaged diffusion model configuration: {ex.Message}", ex);
            }

            byte storage = reader.ReadByte();
            long length = reader.ReadInt64();
            byte[] hash = reader.ReadBytes(32);
            if (storage > 1 || length <= 0 || length > int.MaxValue || hash.Length != 32)
            {
                throw new InvalidDataException($"{source} has a damaged diffusion model header (weights storage {storage}, length {length}).");
            }

            return new Header(config, storage == 1, length, hash);
        }
        catch (EndOfStreamException ex)
        {
            throw new InvalidDataException($"{source} is truncated: the diffusion model header ends early.", ex);
        }
    }

    public static byte[] ReadWeights(BinaryReader reader, Header header, string source)
    {
        byte[] weights = reader.ReadBytes((int)header.WeightLength);
        if (weights.Length != header.WeightLength)
        {
            throw new InvalidDataException($"{source} is truncated: {weights.Length} of {header.WeightLength} weight bytes are present.");
        }

        if (!SHA256.HashData(weights).AsSpan().SequenceEqual(header.WeightHash))
        {
            throw new InvalidDataException($"{source} is damaged: the SHA-256 of the network weights does not match the one recorded when it was saved.");
        }

        return weights;
    }

    /// <summary>The parsed header.</summary>
    public sealed record Header(DiffusionModelConfig Config, bool Inline, long WeightLength, byte[] WeightHash);
}
