using System;
using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion;

/// <summary>Reads a key or integer label column as a 0-based class index (null for a missing key).</summary>
internal static class LabelColumnReader
{
    /// <summary>Whether a column of this type can hold class labels (a key or an integer type).</summary>
    public static bool IsSupported(DataViewType type) =>
        type is KeyDataViewType || type == NumberDataViewType.Int32 || type == NumberDataViewType.Int64 || type == NumberDataViewType.UInt32
        || type == NumberDataViewType.Byte || type == NumberDataViewType.Int16 || type == NumberDataViewType.UInt16;

    public static Func<long?> Create(DataViewRow row, DataViewSchema.Column column)
    {
        DataViewType type = column.Type;
        if (type is KeyDataViewType key)
        {
            if (key.RawType == typeof(uint))
            {
                var getter = row.GetGetter<uint>(column);
                uint v = 0;
                return () => { getter(ref v); return v == 0 ? null : v - 1; };
            }

            if (key.RawType == typeof(ulong))
            {
                var getter = row.GetGetter<ulong>(column);
                ulong v = 0;
                return () => { getter(ref v); return v == 0 ? null : (long)(v - 1); };
            }

            if (key.RawType == typeof(ushort))
            {
                var getter = row.GetGetter<ushort>(column);
                ushort v = 0;
                return () => { getter(ref v); return v == 0 ? null : v - 1; };
            }

            var byteGetter = row.GetGetter<byte>(column);
            byte b = 0;
            return () => { byteGetter(ref b); return b == 0 ? null : b - 1; };
        }

        if (type == NumberDataViewType.Int32)
        {
            var getter = row.GetGetter<int>(column);
            int v = 0;
            return () => { getter(ref v); return Check(v, column); };
        }

        if (type == NumberDataViewType.Int64)
        {
            var getter = row.GetGetter<long>(column);
            long v = 0;
            return () => { getter(ref v); return Check(v, column); };
        }

        if (type == NumberDataViewType.UInt32)
        {
            var getter = row.GetGetter<uint>(column);
            uint v = 0;
            return () => { getter(ref v); return v; };
        }

        if (type == NumberDataViewType.Int16)
        {
            var getter = row.GetGetter<short>(column);
            short v = 0;
            return () => { getter(ref v); return Check(v, column); };
        }

        if (type == NumberDataViewType.UInt16)
        {
            var getter = row.GetGetter<ushort>(column);
            ushort v = 0;
            return () => { getter(ref v); return v; };
        }

        if (type == NumberDataViewType.Byte)
        {
            var getter = row.GetGetter<byte>(column);
            byte v = 0;
            return () => { getter(ref v); return v; };
        }

        throw new ArgumentOutOfRangeException(nameof(column), $"Label column '{column.Name}' has type {type}; expected a key or an integer type.");
    }

    private static long Check(long value, DataViewSchema.Column column) =>
        value >= 0 ? value : throw new InvalidOperationException($"Label column '{column.Name}' holds the negative label {value}; labels must be 0, 1, 2, ….");
}
