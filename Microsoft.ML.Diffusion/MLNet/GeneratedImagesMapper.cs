using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// <see cref="DiffusionSampler"/> as a row-to-row mapper (what <c>CreatePredictionEngine</c> and a chain's
/// <c>GetRowToRowMapper</c> use): each output row generates its image alone, when a generated column is first read for
/// the input row's position, and keeps it until the input moves to another row.
/// </summary>
/// <remarks>
/// <para>A row's image is the one <see cref="DiffusionSampler.Transform"/> gives for the same seed and label: both go
/// through <see cref="GenerationBinding"/>, and on the CPU the network runs on a whole padded micro-batch whatever the
/// number of rows, so one row costs as much as one micro-batch. Rows without a seed column get the seed derived from the
/// run seed and the row's position, as in <c>Transform</c> (a prediction engine's n-th prediction is position n − 1).</para>
/// <para>Threads: the mapper is immutable and may be shared; each row it makes holds its own cache and is used by one
/// thread at a time, as ML.NET's prediction engines (one per thread, e.g. from a <c>PredictionEnginePool</c>) use rows.
/// Rows of one mapper, or of several mappers of one sampler, may generate at the same time on different threads; they
/// share only the network, whose forward pass keeps no state.</para>
/// </remarks>
internal sealed class GeneratedImagesMapper : IRowToRowMapper
{
    private readonly GenerationBinding binding;

    public GeneratedImagesMapper(DiffusionSampler sampler, DataViewSchema inputSchema)
    {
        binding = GenerationBinding.Create(sampler, inputSchema);
    }

    public DataViewSchema InputSchema => binding.InputSchema;

    public DataViewSchema OutputSchema => binding.OutputSchema;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        ArgumentNullException.ThrowIfNull(dependingColumns);
        var needed = new HashSet<int>();
        foreach (var column in dependingColumns)
        {
            if (binding.IsGenerated(column.Index))
            {
                needed.UnionWith(binding.InputColumns.Select(c => c.Index));
            }
            else if (column.Index < InputSchema.Count)
            {
                needed.Add(column.Index);
            }
        }

        return InputSchema.Where(c => needed.Contains(c.Index)).ToArray();
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(activeColumns);
        if (input.Schema != InputSchema)
        {
            throw new ArgumentException("The row's schema is not the input schema this mapper was made for; make a mapper with GetRowToRowMapper(row.Schema).", nameof(input));
        }

        return new Row(binding, input, new HashSet<int>(activeColumns.Select(c => c.Index)));
    }

    private sealed class Row : DataViewRow
    {
        private readonly GenerationBinding binding;
        private readonly DataViewRow input;
        private readonly HashSet<int> active;
        private Func<GenerationRequest>? read;
        private byte[] cached = Array.Empty<byte>();
        private long cachedPosition = long.MinValue;

        public Row(GenerationBinding binding, DataViewRow input, HashSet<int> active)
        {
            this.binding = binding;
            this.input = input;
            this.active = active;
        }

        public override DataViewSchema Schema => binding.OutputSchema;

        public override long Position => input.Position;

        public override long Batch => input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            binding.IsGenerated(column.Index) ? active.Contains(column.Index) : input.IsColumnActive(binding.InputSchema[column.Index]);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!binding.IsGenerated(column.Index))
            {
                return input.GetGetter<TValue>(binding.InputSchema[column.Index]);
            }

            if (!active.Contains(column.Index))
            {
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when this row was made.");
            }

            return binding.MakeGetter<TValue>(column, Current);
        }

        private byte[] Current()
        {
            long position = input.Position;
            if (position != cachedPosition)
            {
                read ??= binding.CreateReader(input);
                cached = binding.Generate(new[] { read() })[0];
                cachedPosition = position;
            }

            return cached;
        }
    }
}
