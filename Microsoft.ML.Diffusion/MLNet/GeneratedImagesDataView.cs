using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// The output of <see cref="DiffusionSampler.Transform"/>: the input's columns plus a generated image (and its pixels) per
/// row, generated lazily by each cursor, one batch of rows at a time, as the cursor advances.
/// </summary>
/// <remarks>
/// <para>A cursor that asks for a generated column generates nothing on <c>MoveNext</c>: the first getter call on a row
/// outside its current batch reads the seeds and labels of that row and the next <see cref="GenerationBinding.RowsPerBatch"/>
/// − 1 rows through a second input cursor (only the seed and label columns active), generates them in one call and keeps
/// only that batch. Memory is bounded by one batch, not by the row count; rows skipped without reading a generated column
/// (e.g. by <c>SkipRows</c>) are never generated. A cursor that asks for no generated column generates nothing.</para>
/// <para>Cursors are independent (each has its own batch); images depend only on each row's seed and label, so every
/// cursor, whatever it skips, gives a row the same image. The input must give every cursor its rows in the same order
/// (ML.NET's data views do when not shuffled); this view does not shuffle (<see cref="CanShuffle"/> is false).</para>
/// </remarks>
internal sealed class GeneratedImagesDataView : IDataView
{
    private readonly IDataView input;
    private readonly GenerationBinding binding;

    public GeneratedImagesDataView(IDataView input, DiffusionSampler sampler)
    {
        this.input = input;
        binding = GenerationBinding.Create(sampler, input.Schema);
    }

    public bool CanShuffle => false;

    public DataViewSchema Schema => binding.OutputSchema;

    public long? GetRowCount() => input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        ArgumentNullException.ThrowIfNull(columnsNeeded);
        var needed = new HashSet<int>(columnsNeeded.Select(c => c.Index));
        var inputColumns = input.Schema.Where(c => needed.Contains(c.Index)).ToArray();
        return new Cursor(this, input.GetRowCursor(inputColumns), needed);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        new[] { GetRowCursor(columnsNeeded, rand) };

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly GeneratedImagesDataView parent;
        private readonly DataViewRowCursor inner;
        private readonly HashSet<int> active;
        private DataViewRowCursor? lookahead;
        private Func<GenerationRequest>? readLookahead;
        private byte[][] batch = Array.Empty<byte[]>();
        private long batchStart = -1;

        public Cursor(GeneratedImagesDataView parent, DataViewRowCursor inner, HashSet<int> active)
        {
            this.parent = parent;
            this.inner = inner;
            this.active = active;
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

            var binding = parent.binding;
            return binding.IsGenerated(column.Index)
                ? binding.MakeGetter<TValue>(column, Current)
                : inner.GetGetter<TValue>(parent.input.Schema[column.Index]);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                lookahead?.Dispose();
                inner.Dispose();
            }

            base.Dispose(disposing);
        }

        /// <summary>The current row's pixels, generating the batch that starts at this row if it is not in the current one.</summary>
        private byte[] Current()
        {
            long position = inner.Position;
            if (position < 0)
            {
                throw new InvalidOperationException("The cursor is not on a row: call MoveNext first.");
            }

            if (position < batchStart || position >= batchStart + batch.Length)
            {
                Generate(position);
            }

            return batch[position - batchStart];
        }

        private void Generate(long position)
        {
            var binding = parent.binding;
            if (lookahead is null)
            {
                lookahead = parent.input.GetRowCursor(binding.InputColumns);
                readLookahead = binding.CreateReader(lookahead);
            }

            // The second cursor only ever moves forward, as this one does; it may stand on the last row of the previous batch.
            while (lookahead.Position < position)
            {
                if (!lookahead.MoveNext())
                {
                    throw new InvalidOperationException(
                        $"The input data view gave a second cursor fewer rows than the first (row {position} is missing); generated images need an input that gives every cursor the same rows in the same order.");
                }
            }

            if (lookahead.Position != position)
            {
                throw new InvalidOperationException($"The input data view's second cursor skipped row {position}; generated images need an input that gives every cursor the same rows in the same order.");
            }

            int rows = binding.RowsPerBatch;
            var requests = new List<GenerationRequest>(rows);
            do
            {
                requests.Add(readLookahead!());
            }
            while (requests.Count < rows && lookahead.MoveNext());

            batch = Array.Empty<byte[]>(); // the previous batch can be collected while this one is generated
            batch = binding.Generate(requests);
            batchStart = position;
        }
    }
}
