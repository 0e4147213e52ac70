using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace Microsoft.ML.Diffusion.Data;

/// <summary>
/// The output of <see cref="DiffusionSampler.Transform"/>: the input's columns plus a generated image (and its pixels) per
/// row. Images are generated on the first cursor that asks for them, all rows at once in batches, and kept.
/// </summary>
internal sealed class GeneratedImagesDataView : IDataView
{
    private const int RowsPerCall = 64;
    private readonly IDataView input;
    private readonly DiffusionSampler sampler;
    private readonly DiffusionSamplerOptions options;
    private readonly Lazy<byte[][]> generated;

    public GeneratedImagesDataView(IDataView input, DiffusionSampler sampler)
    {
        this.input = input;
        this.sampler = sampler;
        options = sampler.Options.Clone();
        Schema = BuildSchema(input.Schema, sampler);
        generated = new Lazy<byte[][]>(Generate, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public bool CanShuffle => false;

    public DataViewSchema Schema { get; }

    private int ImageIndex => input.Schema.Count;

    private int PixelsIndex => input.Schema.Count + 1;

    /// <summary>The input schema plus the two generated columns; checks the optional seed and label columns' types.</summary>
    public static DataViewSchema BuildSchema(DataViewSchema inputSchema, DiffusionSampler sampler)
    {
        var options = sampler.Options;
        var model = sampler.Model;
        if (inputSchema.GetColumnOrNull(options.SeedColumnName) is DataViewSchema.Column seed && !IsSeedType(seed.Type))
        {
            throw new ArgumentOutOfRangeException(
                nameof(inputSchema), $"Seed column '{seed.Name}' has type {seed.Type}; expected Int32, UInt32 or Int64.");
        }

        if (model.ClassCount > 0 && LabelColumn(inputSchema, sampler) is DataViewSchema.Column label && !LabelColumnReader.IsSupported(label.Type))
        {
            throw new ArgumentOutOfRangeException(
                nameof(inputSchema), $"Label column '{label.Name}' has type {label.Type}; expected a key or an integer type.");
        }

        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        builder.AddColumn(options.OutputImageColumnName, new ImageDataViewType(model.ImageHeight, model.ImageWidth));
        builder.AddColumn(options.OutputPixelsColumnName, new VectorDataViewType(NumberDataViewType.Single, model.Channels, model.ImageHeight, model.ImageWidth));
        return builder.ToSchema();
    }

    public long? GetRowCount() => input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = new HashSet<int>(columnsNeeded.Select(c => c.Index));
        var inputColumns = input.Schema.Where(c => needed.Contains(c.Index)).ToArray();
        byte[][]? images = needed.Contains(ImageIndex) || needed.Contains(PixelsIndex) ? generated.Value : null;
        return new Cursor(this, input.GetRowCursor(inputColumns), needed, images);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        new[] { GetRowCursor(columnsNeeded, rand) };

    private static DataViewSchema.Column? LabelColumn(DataViewSchema schema, DiffusionSampler sampler)
    {
        string? name = sampler.Options.LabelColumnName ?? sampler.Model.Config.LabelColumnName;
        return name is null ? null : schema.GetColumnOrNull(name);
    }

    private static bool IsSeedType(DataViewType type) =>
        type == NumberDataViewType.Int32 || type == NumberDataViewType.UInt32 || type == NumberDataViewType.Int64;

    private byte[][] Generate()
    {
        var seedColumn = input.Schema.GetColumnOrNull(options.SeedColumnName);
        var labelColumn = sampler.Model.ClassCount > 0 ? LabelColumn(input.Schema, sampler) : null;
        var seeds = new List<long>();
        var labels = new List<int>();
        var columns = new[] { seedColumn, labelColumn }.Where(c => c is not null).Select(c => c!.Value);
        using (var cursor = input.GetRowCursor(columns))
        {
            Func<long>? readSeed = seedColumn is DataViewSchema.Column s ? SeedReader(cursor, s) : null;
            Func<int>? readLabel = labelColumn is DataViewSchema.Column l ? LabelReader(cursor, l) : null;
            while (cursor.MoveNext())
            {
                seeds.Add(readSeed?.Invoke() ?? SeededNoise.DeriveSeed(options.Seed, cursor.Position));
                int label = readLabel?.Invoke() ?? -1;
                sampler.CheckLabel(label);
                labels.Add(label);
            }
        }

        var result = new byte[seeds.Count][];
        for (int start = 0; start < seeds.Count; start += RowsPerCall)
        {
            int count = Math.Min(RowsPerCall, seeds.Count - start);
            var chunk = sampler.Model.GeneratePixels(seeds.GetRange(start, count), labels.GetRange(start, count), options);
            Array.Copy(chunk, 0, result, start, count);
        }

        return result;
    }

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

    private static Func<int> LabelReader(DataViewRow row, DataViewSchema.Column column)
    {
        var read = LabelColumnReader.Create(row, column);
        return () => read() is long v ? checked((int)v) : -1;
    }

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly GeneratedImagesDataView parent;
        private readonly DataViewRowCursor inner;
        private readonly HashSet<int> active;
        private readonly byte[][]? images;

        public Cursor(GeneratedImagesDataView parent, DataViewRowCursor inner, HashSet<int> active, byte[][]? images)
        {
            this.parent = parent;
            this.inner = inner;
            this.active = active;
            this.images = images;
        }

        public override DataViewSchema Schema => parent.Schema;

        public override long Position => inner.Position;

        public override long Batch => inner.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => inner.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => active.Contains(column.Index);

        public override bool MoveNext() => inner.MoveNext();

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!active.Contains(column.Index))
            {
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when this cursor was made.");
            }

            if (column.Index < parent.ImageIndex)
            {
                return inner.GetGetter<TValue>(parent.input.Schema[column.Index]);
            }

            var model = parent.sampler.Model;
            if (column.Index == parent.ImageIndex)
            {
                ValueGetter<MLImage> image = (ref MLImage value) =>
                    value = PixelLayout.ToMLImage(images![inner.Position], model.Channels, model.ImageHeight, model.ImageWidth);
                return image as ValueGetter<TValue> ?? throw new InvalidOperationException($"Column '{column.Name}' holds MLImage values, not {typeof(TValue).Name}.");
            }

            ValueGetter<VBuffer<float>> pixels = (ref VBuffer<float> value) =>
            {
                byte[] source = images![inner.Position];
                var editor = VBufferEditor.Create(ref value, source.Length);
                for (int i = 0; i < source.Length; i++)
                {
                    editor.Values[i] = source[i];
                }

                value = editor.Commit();
            };
            return pixels as ValueGetter<TValue> ?? throw new InvalidOperationException($"Column '{column.Name}' holds VBuffer<Single> values, not {typeof(TValue).Name}.");
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
