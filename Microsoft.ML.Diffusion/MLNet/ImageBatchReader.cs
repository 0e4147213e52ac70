using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Transforms.Image;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion;

/// <summary>Validates an image column against the expected shape and reads it, with errors that name the column and the row.</summary>
internal static class ImageBatchReader
{
    /// <summary>Checks the image (and label) column before any data is read.</summary>
    public static void ValidateSchema(DataViewSchema schema, string imageColumn, string? labelColumn, int channels, int height, int width)
    {
        var column = schema.GetColumnOrNull(imageColumn) ?? throw new ArgumentOutOfRangeException(
            nameof(imageColumn), $"Image column '{imageColumn}' is not in the data. Columns: {string.Join(", ", schema.Select(c => $"'{c.Name}'"))}.");
        int expected = channels * height * width;
        switch (column.Type)
        {
            case ImageDataViewType image:
                if ((image.Height != 0 && image.Height != height) || (image.Width != 0 && image.Width != width))
                {
                    throw new ArgumentOutOfRangeException(
                        nameof(imageColumn), $"Image column '{imageColumn}' holds {image.Height}×{image.Width} images; the model expects {height}×{width}. Add ResizeImages before the trainer.");
                }

                break;
            case VectorDataViewType vector when vector.ItemType == NumberDataViewType.Single || vector.ItemType == NumberDataViewType.Byte:
                if (vector.Size != expected)
                {
                    throw new ArgumentOutOfRangeException(
                        nameof(imageColumn),
                        $"Image column '{imageColumn}' is a vector of {(vector.Size == 0 ? "variable" : vector.Size.ToString(System.Globalization.CultureInfo.InvariantCulture))} values; the model expects {expected} = {channels}×{height}×{width} (C·H·W, planar).");
                }

                break;
            default:
                throw new ArgumentOutOfRangeException(
                    nameof(imageColumn), $"Image column '{imageColumn}' has type {column.Type}; expected an image (MLImage) or a Single/Byte vector of {expected} = {channels}×{height}×{width} pixel values.");
        }

        if (labelColumn is not null)
        {
            var label = schema.GetColumnOrNull(labelColumn) ?? throw new ArgumentOutOfRangeException(
                nameof(labelColumn), $"Label column '{labelColumn}' is not in the data.");
            if (!LabelColumnReader.IsSupported(label.Type))
            {
                throw new ArgumentOutOfRangeException(nameof(labelColumn), $"Label column '{labelColumn}' has type {label.Type}; expected a key or an integer type.");
            }
        }
    }

    /// <summary>Reads every row; pixel values must be finite and in [0, 255].</summary>
    public static TrainingImages ReadAll(IDataView data, string imageColumn, string? labelColumn, int channels, int height, int width)
    {
        ValidateSchema(data.Schema, imageColumn, labelColumn, channels, height, width);
        var image = data.Schema[imageColumn];
        var labelCol = labelColumn is null ? (DataViewSchema.Column?)null : data.Schema[labelColumn];
        int size = channels * height * width;
        var pixels = new List<float[]>();
        var labels = new List<long>();
        var columns = labelCol is DataViewSchema.Column l ? new[] { image, l } : new[] { image };
        using (var cursor = data.GetRowCursor(columns))
        {
            var readPixels = PixelReader(cursor, image, channels, height, width);
            var readLabel = labelCol is DataViewSchema.Column lc ? LabelColumnReader.Create(cursor, lc) : null;
            while (cursor.MoveNext())
            {
                var row = new float[size];
                readPixels(row, cursor.Position);
                for (int i = 0; i < row.Length; i++)
                {
                    if (!(row[i] >= 0f && row[i] <= 255f))
                    {
                        throw new InvalidOperationException(
                            $"Image column '{imageColumn}', row {cursor.Position}: pixel {i} is {row[i]}; pixel values must be finite and in [0, 255].");
                    }
                }

                pixels.Add(row);
                if (readLabel is not null)
                {
                    labels.Add(readLabel() ?? -1);
                }
            }
        }

        if (pixels.Count == 0)
        {
            throw new InvalidOperationException($"The training data has no rows: column '{imageColumn}' holds no images.");
        }

        int classCount = 0;
        IReadOnlyList<string>? names = null;
        Tensor? labelTensor = null;
        if (labelCol is DataViewSchema.Column column)
        {
            classCount = column.Type is KeyDataViewType key ? checked((int)key.Count) : (int)(labels.Max() + 1);
            if (classCount < 1)
            {
                throw new InvalidOperationException($"Label column '{column.Name}' holds no labels.");
            }

            names = KeyNames(column, classCount);
            labelTensor = tensor(labels.Select(v => v < 0 ? classCount : v).ToArray(), dtype: int64);
        }

        var flat = new float[(long)pixels.Count * size];
        for (int i = 0; i < pixels.Count; i++)
        {
            Array.Copy(pixels[i], 0, flat, (long)i * size, size);
        }

        using var raw = tensor(flat, new long[] { pixels.Count, channels, height, width });
        return new TrainingImages(ImageConversion.PixelsToModel(raw), labelTensor, classCount, names);
    }

    internal static Action<float[], long> PixelReader(DataViewRow cursor, DataViewSchema.Column column, int channels, int height, int width)
    {
        string name = column.Name;
        if (column.Type is ImageDataViewType)
        {
            var getter = cursor.GetGetter<MLImage>(column);
            MLImage? image = null;
            return (row, position) =>
            {
                getter(ref image!);
                if (image is null)
                {
                    throw new InvalidOperationException($"Image column '{name}', row {position}: the image is missing (could not be loaded).");
                }

                if (image.Width != width || image.Height != height)
                {
                    throw new ArgumentOutOfRangeException(
                        nameof(column), $"Image column '{name}', row {position}: the image is {image.Height}×{image.Width}; the model expects {height}×{width}. Add ResizeImages before the trainer.");
                }

                PixelLayout.ToPlanar(image, channels, row);
            };
        }

        if (((VectorDataViewType)column.Type).ItemType == NumberDataViewType.Byte)
        {
            var getter = cursor.GetGetter<VBuffer<byte>>(column);
            var buffer = default(VBuffer<byte>);
            return (row, position) =>
            {
                getter(ref buffer);
                var dense = buffer.DenseValues().ToArray();
                for (int i = 0; i < row.Length; i++)
                {
                    row[i] = dense[i];
                }
            };
        }

        var floatGetter = cursor.GetGetter<VBuffer<float>>(column);
        var floats = default(VBuffer<float>);
        return (row, position) =>
        {
            floatGetter(ref floats);
            floats.CopyTo(row);
        };
    }

    private static IReadOnlyList<string>? KeyNames(DataViewSchema.Column column, int count)
    {
        if (column.Type is not KeyDataViewType || !column.HasKeyValues())
        {
            return null;
        }

        var values = default(VBuffer<ReadOnlyMemory<char>>);
        column.GetKeyValues(ref values);
        var names = values.DenseValues().Select(v => v.ToString()).ToArray();
        return names.Length == count ? names : null;
    }
}
