using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Transforms.Image;
using TorchSharp;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// A <see cref="DiffusionSampler"/> bound to one input schema with a snapshot of its options: which input columns give
/// each row's seed and label, the output schema, how a row's inputs are read and how generated pixels become column
/// values. Shared by the streaming data view (<see cref="GeneratedImagesDataView"/>) and the row-to-row mapper
/// (<see cref="GeneratedImagesMapper"/>) so that both give a row the same image. Immutable: safe to share between threads.
/// </summary>
internal sealed class GenerationBinding
{
    private GenerationBinding(DiffusionSampler sampler, DiffusionSamplerOptions options, DataViewSchema inputSchema)
    {
        Sampler = sampler;
        Options = options;
        InputSchema = inputSchema;
        var model = sampler.Model;
        if (inputSchema.GetColumnOrNull(options.SeedColumnName) is DataViewSchema.Column seed)
        {
            if (!IsSeedType(seed.Type))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(inputSchema), $"Seed column '{seed.Name}' has type {seed.Type}; expected Int32, UInt32 or Int64.");
            }

            SeedColumn = seed;
        }

        string? labelName = options.LabelColumnName ?? model.Config.LabelColumnName;
        if (model.ClassCount > 0 && labelName is not null && inputSchema.GetColumnOrNull(labelName) is DataViewSchema.Column label)
        {
            if (!LabelColumnReader.IsSupported(label.Type))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(inputSchema), $"Label column '{label.Name}' has type {label.Type}; expected a key or an integer type.");
            }

            LabelColumn = label;
        }

        if (options.InputImageColumnName is string inputName)
        {
            var input = inputSchema.GetColumnOrNull(inputName) ?? throw new ArgumentOutOfRangeException(
                nameof(inputSchema), $"Input image column '{inputName}' (DiffusionSamplerOptions.InputImageColumnName) is not in the data.");
            ImageBatchReader.ValidateSchema(inputSchema, inputName, null, model.Channels, model.ImageHeight, model.ImageWidth);
            InputImageColumn = input;
        }

        if (options.MaskColumnName is string maskName)
        {
            var mask = inputSchema.GetColumnOrNull(maskName) ?? throw new ArgumentOutOfRangeException(
                nameof(inputSchema), $"Mask column '{maskName}' (DiffusionSamplerOptions.MaskColumnName) is not in the data.");
            long plane = (long)model.ImageHeight * model.ImageWidth;
            if (mask.Type is not VectorDataViewType vector || (vector.ItemType != NumberDataViewType.Single && vector.ItemType != NumberDataViewType.Byte)
                || (vector.Size != plane && vector.Size != plane * model.Channels))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(inputSchema), $"Mask column '{maskName}' has type {mask.Type}; expected a Single or Byte vector of {plane} = H·W (or {plane * model.Channels} = C·H·W) values, non-zero where a pixel is kept.");
            }

            MaskColumn = mask;
        }

        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        builder.AddColumn(options.OutputImageColumnName, new ImageDataViewType(model.ImageHeight, model.ImageWidth));
        builder.AddColumn(options.OutputPixelsColumnName, new VectorDataViewType(NumberDataViewType.Single, model.Channels, model.ImageHeight, model.ImageWidth));
        OutputSchema = builder.ToSchema();
        InputColumns = new[] { SeedColumn, LabelColumn, InputImageColumn, MaskColumn }.Where(c => c is not null).Select(c => c!.Value).ToArray();
    }

    public DiffusionSampler Sampler { get; }

    /// <summary>Gets the options snapshot taken when the binding was made (later changes to the sampler's options do not apply).</summary>
    public DiffusionSamplerOptions Options { get; }

    public DataViewSchema InputSchema { get; }

    /// <summary>Gets the input schema plus the generated image and pixel columns.</summary>
    public DataViewSchema OutputSchema { get; }

    public DataViewSchema.Column? SeedColumn { get; }

    public DataViewSchema.Column? LabelColumn { get; }

    /// <summary>Gets the column of images to edit, or null.</summary>
    public DataViewSchema.Column? InputImageColumn { get; }

    /// <summary>Gets the column of inpainting masks, or null.</summary>
    public DataViewSchema.Column? MaskColumn { get; }

    /// <summary>Gets the input columns generation reads (the seed and label columns that exist; possibly none).</summary>
    public IReadOnlyList<DataViewSchema.Column> InputColumns { get; }

    /// <summary>Gets the index of the generated image column in <see cref="OutputSchema"/>.</summary>
    public int ImageIndex => InputSchema.Count;

    /// <summary>Gets the index of the generated pixels column in <see cref="OutputSchema"/>.</summary>
    public int PixelsIndex => InputSchema.Count + 1;

    /// <summary>
    /// Gets how many rows a streaming cursor generates at once: one micro-batch on the CPU (the network runs on whole
    /// micro-batches anyway, so fewer rows would cost the same), at least 64 rows (by default 256) on other devices.
    /// </summary>
    public int RowsPerBatch => Sampler.Model.Diffusion.Device.type == DeviceType.CPU
        ? Options.MicroBatchSize ?? SamplingLoop.CpuMicroBatchSize
        : Math.Max(64, Options.MicroBatchSize ?? SamplingLoop.DeviceMicroBatchSize);

    /// <summary>Binds a sampler to an input schema; throws, naming the column, if the seed or label column has the wrong type.</summary>
    public static GenerationBinding Create(DiffusionSampler sampler, DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var options = sampler.Options.Clone();
        options.Validate();
        return new GenerationBinding(sampler, options, inputSchema);
    }

    /// <summary>Whether a column of the output schema is one of the two generated columns.</summary>
    public bool IsGenerated(int outputIndex) => outputIndex == ImageIndex || outputIndex == PixelsIndex;

    /// <summary>
    /// Makes a reader of the current row's seed and label. The row must have <see cref="InputColumns"/> active. Rows
    /// without a seed column get <c>DeriveSeed(Options.Seed, row.Position)</c>; rows without a label (or a missing key) get −1.
    /// </summary>
    public Func<GenerationRequest> CreateReader(DataViewRow row)
    {
        Func<long>? seed = SeedColumn is DataViewSchema.Column s ? SeedReader(row, s) : null;
        Func<long?>? label = LabelColumn is DataViewSchema.Column l ? LabelColumnReader.Create(row, l) : null;
        var model = Sampler.Model;
        var image = InputImageColumn is DataViewSchema.Column i ? ImageBatchReader.PixelReader(row, i, model.Channels, model.ImageHeight, model.ImageWidth) : null;
        int imageSize = model.Channels * model.ImageHeight * model.ImageWidth;
        var mask = MaskColumn is DataViewSchema.Column m ? ImageBatchReader.PixelReader(row, m, 1, 1, ((VectorDataViewType)m.Type).Size) : null;
        int maskSize = MaskColumn is DataViewSchema.Column mc ? ((VectorDataViewType)mc.Type).Size : 0;
        long runSeed = Options.Seed;
        return () =>
        {
            float[]? pixels = null, keep = null;
            if (image is not null)
            {
                pixels = new float[imageSize];
                image(pixels, row.Position);
            }

            if (mask is not null)
            {
                keep = new float[maskSize];
                mask(keep, row.Position);
            }

            return new GenerationRequest(seed?.Invoke() ?? SeededNoise.DeriveSeed(runSeed, row.Position), CheckLabel(label?.Invoke()), pixels, keep);
        };
    }

    /// <summary>Generates the images of the given requests (8-bit planar pixels, one array per image).</summary>
    public byte[][] Generate(IReadOnlyList<GenerationRequest> requests) => Sampler.GeneratePixels(
        requests.Select(r => r.Seed).ToArray(),
        requests.Select(r => r.Label).ToArray(),
        Options,
        InputImageColumn is null ? null : requests.Select(r => r.Image!).ToArray(),
        MaskColumn is null ? null : requests.Select(r => r.Mask!).ToArray());

    /// <summary>A getter of a generated column that reads the current row's pixels from <paramref name="current"/>.</summary>
    public ValueGetter<TValue> MakeGetter<TValue>(DataViewSchema.Column column, Func<byte[]> current)
    {
        var model = Sampler.Model;
        if (column.Index == ImageIndex)
        {
            ValueGetter<MLImage> image = (ref MLImage value) => value = PixelLayout.ToMLImage(current(), model.Channels, model.ImageHeight, model.ImageWidth);
            return image as ValueGetter<TValue>
                ?? throw new InvalidOperationException($"Column '{column.Name}' holds MLImage values, not {typeof(TValue).Name}.");
        }

        ValueGetter<VBuffer<float>> pixels = (ref VBuffer<float> value) =>
        {
            byte[] source = current();
            var editor = VBufferEditor.Create(ref value, source.Length);
            for (int i = 0; i < source.Length; i++)
            {
                editor.Values[i] = source[i];
            }

            value = editor.Commit();
        };
        return pixels as ValueGetter<TValue>
            ?? throw new InvalidOperationException($"Column '{column.Name}' holds VBuffer<Single> values, not {typeof(TValue).Name}.");
    }

    private static bool IsSeedType(DataViewType type) =>
        type == NumberDataViewType.Int32 || type == NumberDataViewType.UInt32 || type == NumberDataViewType.Int64;

    private static Func<long> SeedReader(DataViewRow row, DataViewSchema.Column column)
    {
        if (column.Type == NumberDataViewType.Int32)
        {
            var getter = row.GetGetter<int>(column);
            int value = 0;
            return () => { getter(ref value); return value; };
        }

        if (column.Type == NumberDataViewType.UInt32)
        {
            var getter = row.GetGetter<uint>(column);
            uint value = 0;
            return () => { getter(ref value); return value; };
        }

        var longGetter = row.GetGetter<long>(column);
        long longValue = 0;
        return () => { longGetter(ref longValue); return longValue; };
    }

    private int CheckLabel(long? label)
    {
        if (label is not long value)
        {
            return -1;
        }

        int classes = Sampler.Model.ClassCount;
        if (value >= classes)
        {
            throw new ArgumentOutOfRangeException(
                "input", value, $"Label column '{LabelColumn!.Value.Name}' holds the label {value}; this model has {classes} classes (labels 0 to {classes - 1}).");
        }

        return (int)value;
    }
}

/// <summary>What one row asks for: its seed, its label (−1 = none) and, when editing, its image and mask.</summary>
internal readonly record struct GenerationRequest(long Seed, int Label, float[]? Image, float[]? Mask);
