using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Distributed;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>
/// The training loop: shuffled epochs over in-memory images, AdamW with linear warm-up, gradient accumulation, global
/// gradient-norm clipping, an EMA of the weights, a guard that skips (never applies) steps whose loss or gradients are not
/// finite, progress reports and cancellation between steps. Every step runs in its own dispose scope.
/// </summary>
/// <remarks>
/// <para>Data-parallel over the ranks of a <see cref="Communicator"/> (<see cref="Collective.World"/>): the global batch and
/// the data order are those of one process, whatever the number of ranks N. Every rank draws what one process would draw
/// for the whole global batch (the row indices, flips, label drops, and per chunk the timesteps and noise) from the same
/// generators, and computes the loss and gradient of its own contiguous share of it, weighted by 1/B; one all-reduce (sum) of
/// the optimizer's flat gradient buffer per step then gives every rank the gradient of the whole batch, so that N ranks
/// end at the weights of one within float rounding. Weights start from rank 0's (broadcast); the options and the data are
/// compared at the start (refused when they differ); a hash of weights, optimizer, EMA, generators and data position is
/// compared every <see cref="TrainingSettings.ConsistencyCheckEvery"/> steps and before every checkpoint (a divergence
/// stops the run); rank 0 alone writes checkpoints and reports progress, while the others wait for it. A resume is read by
/// rank 0 and its bytes broadcast, so the other ranks need not see the checkpoint folder. One process (N = 1) runs exactly
/// the code it ran before the loop became distributed.</para>
/// </remarks>
internal sealed class DiffusionTrainingLoop
{
    private readonly GaussianDiffusion diffusion;
    private readonly TrainingSettings options;
    private readonly Action<TrainingProgress> report;
    private readonly Action<string> log;
    private readonly Communicator communicator;
    private MixedPrecision? precision; // MIXED PRECISION: set in Run (docs/mixed-precision.md)

    public DiffusionTrainingLoop(GaussianDiffusion diffusion, TrainingSettings options, Action<TrainingProgress> report, Action<string> log, Communicator? communicator = null)
    {
        this.diffusion = diffusion;
        this.options = options;
        this.communicator = communicator ?? new SingleProcessCommunicator();
        this.report = this.communicator.IsRoot ? report : _ => { };
        this.log = this.communicator.IsRoot ? log : _ => { };
    }

    /// <summary>Test hook: runs after every optimizer step with the step count done and the rank (a test kills or stalls a rank there).</summary>
    internal static Action<int, int>? AfterStep { get; set; }

    /// <summary>Gets the number of steps skipped by the non-finite guard.</summary>
    public int SkippedSteps { get; private set; }

    /// <summary>Gets the number of optimizer steps done when training ended (less than planned when the time budget ran out).</summary>
    public int CompletedSteps { get; private set; }

    /// <summary>The learning rate at step k (0-based): linear warm-up to the peak, then constant.</summary>
    public static double LearningRateAt(int step, double peak, int warmup) => warmup <= 0 || step >= warmup ? peak : peak * (step + 1) / warmup;

    /// <summary>
    /// Trains (resuming from the newest checkpoint when asked), then folds the EMA weights into the network. With
    /// checkpointing on, a checkpoint is written every <see cref="TrainingSettings.CheckpointEvery"/> steps and at the end.
    /// </summary>
    public void Run(TrainingImages data, long seed, string fingerprint)
    {
        var device = diffusion.Device;
        var network = diffusion.Model;
        var comm = communicator;
        bool distributed = comm.WorldSize > 1;
        if (distributed)
        {
            comm.RequireSame(System.Text.Encoding.UTF8.GetBytes(SettingsText(seed, fingerprint)), "the training options", DescribeSettings);
            comm.RequireSame(DataHash(data), "the training data (a SHA-256 of the images and labels)");
        }

        network.train();
        // One flat buffer for the parameters, one for the gradients: the optimizer, the gradient norm, the clipping and the
        // EMA are a few kernels per step instead of a few per parameter tensor (on a GPU, kernel launches bound the step).
        using var optimizer = new FusedAdamW(network.parameters(), options.LearningRate, beta1: 0.9, beta2: 0.99, weightDecay: options.WeightDecay);
        if (distributed)
        {
            comm.Broadcast(optimizer.FlatParameters, 0);
        }

        using var ema = options.EmaDecay > 0 ? new ExponentialMovingAverage(optimizer, options.EmaDecay) : null;
        using var mixed = precision = MixedPrecision.ForTraining(diffusion, optimizer, options, log); // MIXED PRECISION: the 16-bit copy over the float32 master weights
        // CPU generators (TorchSharp makes no others), saved in checkpoints: the data order, flips and label dropout come
        // from them on every device; t and ε too on the CPU, while a GPU draws them itself from its global generator seeded
        // per step (DeviceRandom.ForTrainingStep): reproducible and exactly resumable on each device.
        using var noiseGenerator = new Generator(unchecked((ulong)seed), CPU);
        using var orderGenerator = new Generator(unchecked((ulong)(seed ^ 0x5DEECE66DL)), CPU);
        long count = data.Count;
        using var state = new TrainingState(network, optimizer, ema, noiseGenerator, orderGenerator, DeviceRandom.Permutation(count, CPU, orderGenerator).DetachFromDisposeScope(), fingerprint);
        state.MixedPrecision = mixed; // MIXED PRECISION: its loss scale is checkpointed
        string? directory = options.CheckpointDirectory;
        // A damaged newest checkpoint (the atomic writes rule out a crash as the cause: a disk fault, a copy cut short) is
        // reported and the newest intact one is used: the older checkpoints are kept for exactly this. Only damaged ones
        // left: refused (InvalidDataException), never a silent start from step 0.
        if (distributed)
        {
            ResumeFromRoot(state, directory);
        }
        else if (options.Resume && directory is not null
            && Checkpoint.FindLatestIntact(directory, (path, reason) => log($"Skipped the damaged checkpoint '{path}': {reason}")) is string latest)
        {
            Checkpoint.Read(latest, state);
            log($"Resumed from '{latest}' at step {state.Step}.");
        }

        if (state.Step < options.RequiredResumeStep)
        {
            throw new InvalidOperationException(
                $"The checkpoint of step {options.RequiredResumeStep} is gone from '{directory}' (the folder or its files were deleted or moved during the run): "
                + "stopping rather than starting again from an earlier step. Put it back and resume, or start again in a new output folder.");
        }

        // Created now, so that a checkpoint folder deleted or moved during the run stops it (Checkpoint.Write) instead of
        // being silently created again.
        if (directory is not null && comm.IsRoot)
        {
            Directory.CreateDirectory(directory);
        }

        int warmup = options.EffectiveWarmupSteps;
        int consecutiveBad = 0;
        var clock = Stopwatch.StartNew();
        double windowLoss = 0;
        int windowSteps = 0;
        long windowImages = 0;
        double windowStart = 0;
        bool rootOutOfTime = false;
        for (int step = state.Step; step < options.TrainSteps; step++)
        {
            if (!distributed)
            {
                options.CancellationToken.ThrowIfCancellationRequested();
            }

            double lr = LearningRateAt(step, options.LearningRate, warmup);
            optimizer.LearningRate = lr;

            double stepLoss;
            bool finite;
            using (var scope = NewDisposeScope())
            {
                optimizer.ZeroGrad();
                mixed.BeginStep(); // MIXED PRECISION: refresh the 16-bit weights from the float32 master weights
                Tensor? lossSum = null;
                for (int micro = 0; micro < options.GradientAccumulationSteps; micro++)
                {
                    var generator = DeviceRandom.ForTrainingStep(device, noiseGenerator, seed, ((long)step * options.GradientAccumulationSteps) + micro);
                    var share = distributed ? BackwardShare(data, state, count, generator) : BackwardBatch(data, state, count, generator);
                    lossSum = lossSum is null ? share : lossSum.Plus(share);
                }

                double[] host;
                if (distributed)
                {
                    // The ranks meet (a missing one is named), agree on cancellation and rank 0's clock, then the gradients are
                    // summed: one all-reduce of the flat buffer per step, after accumulation.
                    double local = lossSum!.to(float64).cpu().item<double>();
                    bool late = options.MaxTrainingTime is TimeSpan allowed && clock.Elapsed >= allowed;
                    var met = Meet(comm, step + 1, local, options.CancellationToken.IsCancellationRequested, late);
                    if (met.Cancelled)
                    {
                        throw new OperationCanceledException(options.CancellationToken.IsCancellationRequested ? options.CancellationToken : CancellationToken.None);
                    }

                    rootOutOfTime = met.RootOutOfTime;
                    comm.AllReduce(optimizer.FlatGradients, ReduceOperation.Sum);
                    host = new[] { met.Loss, optimizer.FlatGradients.norm().to(float64).cpu().item<double>() };
                }
                else
                {
                    // The step's one host synchronisation: the loss and the gradient norm, read together.
                    var norm = optimizer.FlatGradients.norm().to(float64);
                    host = stack(new[] { lossSum!.to(float64), norm }).cpu().data<double>().ToArray();
                }

                stepLoss = host[0];
                finite = mixed.EndStep(double.IsFinite(host[0]), double.IsFinite(host[1])); // MIXED PRECISION: the loss scale backs off or grows
                if (finite)
                {
                    ClipGradients(optimizer, host[1], options.GradientClip);
                    optimizer.Step();
                    ema?.Update();
                }
                else
                {
                    optimizer.ZeroGrad();
                }
            }

            // Measured on the CPU: although every tensor of a step is disposed, the resident set grows step after step until
            // the GC runs (the benchmark's config A, batch 32: 1.0 → 1.9 GiB over 30 steps); a generation-0 collection per
            // step keeps it at 1.1 GiB for ~1 % of the step time. Some finalizable managed objects hold native memory (which
            // ones was not pinned down), and the heap fragments around it. On a GPU the activations are not in that heap
            // and the host is the bottleneck, so the collection is left to the runtime there.
            if (device.type == DeviceType.CPU)
            {
                GC.Collect(0);
            }
            state.Step = step + 1;
            AfterStep?.Invoke(state.Step, comm.Rank);
            if (!finite)
            {
                SkippedSteps++;
                if (!mixed.LastStepOverflowed && ++consecutiveBad >= options.MaxConsecutiveNonFiniteSteps) // MIXED PRECISION: an fp16 overflow the loss scale handles is no error
                {
                    throw new InvalidOperationException(
                        $"Training stopped at step {step + 1}: {consecutiveBad} steps in a row had a non-finite loss or gradient (they were skipped, never applied). "
                        + "Check the data for NaN/Inf pixels, or lower the learning rate.");
                }
            }
            else
            {
                consecutiveBad = 0;
                windowLoss += stepLoss;
                windowSteps++;
            }

            windowImages += (long)options.BatchSize * options.GradientAccumulationSteps;
            int done = step + 1;
            if (done % options.LogEvery == 0 || done == options.TrainSteps)
            {
                double now = clock.Elapsed.TotalSeconds;
                double rate = windowImages / Math.Max(1e-9, now - windowStart);
                double stepsPerSecond = (double)windowImages / (options.BatchSize * options.GradientAccumulationSteps) / Math.Max(1e-9, now - windowStart);
                var remaining = TimeSpan.FromSeconds((options.TrainSteps - done) / Math.Max(1e-9, stepsPerSecond));
                if (options.MaxTrainingTime is TimeSpan limit && limit - clock.Elapsed < remaining)
                {
                    remaining = limit > clock.Elapsed ? limit - clock.Elapsed : TimeSpan.Zero;
                }

                report(new TrainingProgress(done, options.TrainSteps, windowSteps > 0 ? windowLoss / windowSteps : double.NaN, lr, rate, clock.Elapsed, remaining, SkippedSteps));
                windowLoss = 0;
                windowSteps = 0;
                windowImages = 0;
                windowStart = now;
            }

            bool outOfTime = (distributed ? rootOutOfTime : options.MaxTrainingTime is TimeSpan budget && clock.Elapsed >= budget) && done < options.TrainSteps;
            bool checkpoint = directory is not null && (done % options.CheckpointEvery == 0 || done == options.TrainSteps || outOfTime);
            if (distributed && (checkpoint || done % options.ConsistencyCheckEvery == 0 || done == options.TrainSteps || outOfTime))
            {
                comm.RequireSame(StateHash(state), FormattableString.Invariant($"the weights, optimizer, EMA and data position after step {done} (the ranks diverged)"));
            }

            if (checkpoint && distributed)
            {
                comm.RunOnRoot(() => Checkpoint.Write(directory!, state, options.KeepCheckpoints, createDirectory: false), FormattableString.Invariant($"write the checkpoint of step {done}"));
            }
            else if (checkpoint)
            {
                Checkpoint.Write(directory!, state, options.KeepCheckpoints, createDirectory: false);
            }

            if (outOfTime)
            {
                log(FormattableString.Invariant($"The training time budget of {options.MaxTrainingTime} is used up: stopping after step {done} of {options.TrainSteps}."));
                break;
            }
        }

        CompletedSteps = state.Step;

        ema?.CopyTo(network);
        network.eval();
    }

    // Forward and backward of one batch, split into chunks of MicroBatchSize images (the gradient of the batch mean is
    // the size-weighted sum of the chunks' gradients); returns the batch's loss divided by the accumulation steps, as a
    // tensor on the device (read once per step, with the gradient norm).
    private Tensor BackwardInChunks(Tensor images, Tensor? labels, Generator? generator)
    {
        long n = images.shape[0];
        long chunk = options.MicroBatchSize is int m && m < n ? m : n;
        Tensor? total = null;
        for (long start = 0; start < n; start += chunk)
        {
            using var scope = NewDisposeScope();
            long end = Math.Min(n, start + chunk);
            double weight = (double)(end - start) / n / options.GradientAccumulationSteps;
            var part = chunk == n ? images : images[TensorIndex.Slice(start, end)];
            var partLabels = labels is null || chunk == n ? labels : labels[TensorIndex.Slice(start, end)];
            using Scalar share = weight.ToScalar();
            var loss = precision!.Diffusion.Loss(part, partLabels, generator) * share; // MIXED PRECISION: the 16-bit network's diffusion (the given one in float32)
            precision.Backward(loss); // MIXED PRECISION: loss.backward(); in 16 bits scaled, the gradients added into the float32 buffer
            var value = loss.detach().to(float64);
            total = (total is null ? value : total.Plus(value)).MoveToOuterDisposeScope();
        }

        return total!;
    }

    // One process's batch: its rows, flips and label drops from the order generator, then its forward and backward
    // (BackwardInChunks). Returns the batch's loss divided by the accumulation steps, on the device.
    private Tensor BackwardBatch(TrainingImages data, TrainingState state, long count, Generator? generator)
    {
        var device = diffusion.Device;
        var indices = NextIndices(state, count);
        var images = data.Images.index_select(0, indices).to(device);
        if (options.RandomHorizontalFlip)
        {
            var flip = DeviceRandom.Uniform(new long[] { images.shape[0], 1, 1, 1 }, device, generator: state.OrderGenerator) < Scalars.Half;
            images = where(flip, images.flip(3), images);
        }

        Tensor? labels = null;
        if (data.Labels is not null)
        {
            labels = data.Labels.index_select(0, indices);
            if (options.ConditionDropout > 0)
            {
                using Scalar dropout = options.ConditionDropout.ToScalar(), nullClass = data.ClassCount.ToScalar();
                var drop = DeviceRandom.Uniform(new long[] { labels.shape[0] }, CPU, generator: state.OrderGenerator) < dropout;
                labels = where(drop, full_like(labels, nullClass), labels);
            }

            labels = labels.to(device);
        }

        return BackwardInChunks(images, labels, generator);
    }

    // One rank's share of a global batch: the same draws as one process (the batch's rows, flips and label drops from the
    // order generator; per chunk of MicroBatchSize, t then ε from the noise generator, GaussianDiffusion.Loss's order) for the
    // whole batch, then the forward and backward of rows [lo, hi) only, each sample weighted 1/(B·accumulation) so that the
    // sum over the ranks is the one-process gradient. Returns this rank's part of the loss, on the device.
    private Tensor BackwardShare(TrainingImages data, TrainingState state, long count, Generator? generator)
    {
        var device = diffusion.Device;
        var indices = NextIndices(state, count);
        long n = indices.shape[0];
        long lo = n * communicator.Rank / communicator.WorldSize;
        long hi = n * (communicator.Rank + 1) / communicator.WorldSize;
        var mine = indices[TensorIndex.Slice(lo, hi)];
        var images = data.Images.index_select(0, mine).to(device);
        if (options.RandomHorizontalFlip)
        {
            using var half = 0.5.ToScalar();
            var flip = DeviceRandom.Uniform(new long[] { n, 1, 1, 1 }, device, generator: state.OrderGenerator).lt(half)[TensorIndex.Slice(lo, hi)];
            images = where(flip, images.flip(3), images);
        }

        Tensor? labels = null;
        if (data.Labels is not null)
        {
            labels = data.Labels.index_select(0, mine);
            if (options.ConditionDropout > 0)
            {
                using Scalar probability = options.ConditionDropout.ToScalar(), nullClass = data.ClassCount.ToScalar();
                var drop = DeviceRandom.Uniform(new long[] { n }, CPU, generator: state.OrderGenerator).lt(probability)[TensorIndex.Slice(lo, hi)];
                labels = where(drop, full_like(labels, nullClass), labels);
            }

            labels = labels.to(device);
        }

        long chunk = options.MicroBatchSize is int m && m < n ? m : n;
        long[] shape = data.Images.shape;
        using var weight = (1.0 / n / options.GradientAccumulationSteps).ToScalar();
        Tensor total = zeros(1, dtype: float64, device: device).squeeze();
        for (long start = 0; start < n; start += chunk)
        {
            using var scope = NewDisposeScope();
            long end = Math.Min(n, start + chunk);
            var t = DeviceRandom.Integers(0, diffusion.Timesteps, new[] { end - start }, device, generator);
            var noise = DeviceRandom.Normal(new[] { end - start, shape[1], shape[2], shape[3] }, device, images.dtype, generator);
            long a = Math.Max(start, lo), b = Math.Min(end, hi);
            if (a >= b)
            {
                continue;
            }

            var part = images[TensorIndex.Slice(a - lo, b - lo)];
            var partLabels = labels?[TensorIndex.Slice(a - lo, b - lo)];
            var loss = precision!.Diffusion.LossPerSample(part, t[TensorIndex.Slice(a - start, b - start)], noise[TensorIndex.Slice(a - start, b - start)], partLabels).sum().mul(weight); // MIXED PRECISION
            precision.Backward(loss); // MIXED PRECISION: loss.backward(); in 16 bits scaled, the gradients added into the float32 buffer
            total.add_(loss.detach().to(float64), Scalars.One);
        }

        return total;
    }

    private readonly record struct Meeting(double Loss, bool Cancelled, bool RootOutOfTime);

    // The step's host exchange: every rank's loss share, cancellation request and (rank 0's) time budget; a rank that does
    // not arrive within the communicator's timeout is named.
    private static Meeting Meet(Communicator comm, int step, double loss, bool cancelled, bool outOfTime)
    {
        var mine = new byte[sizeof(double) + 2];
        BitConverter.TryWriteBytes(mine, loss);
        mine[8] = cancelled ? (byte)1 : (byte)0;
        mine[9] = outOfTime ? (byte)1 : (byte)0;
        var all = comm.AllGather(mine, FormattableString.Invariant($"step {step}"));
        double sum = 0;
        bool anyCancelled = false;
        foreach (var m in all)
        {
            sum += BitConverter.ToDouble(m);
            anyCancelled |= m[8] != 0;
        }

        return new Meeting(sum, anyCancelled, all[0][9] != 0);
    }

    // Rank 0 finds the newest intact checkpoint and reads its bytes; every rank restores them (none: all start at step 0).
    private void ResumeFromRoot(TrainingState state, string? directory)
    {
        byte[]? bytes = null;
        string? latest = null;
        if (communicator.IsRoot && options.Resume && directory is not null)
        {
            latest = Checkpoint.FindLatestIntact(directory, (path, reason) => log($"Skipped the damaged checkpoint '{path}': {reason}"));
            bytes = latest is null ? null : File.ReadAllBytes(latest);
        }

        byte[] name = communicator.BroadcastBytes(latest is null ? null : System.Text.Encoding.UTF8.GetBytes(latest), 0, "agree on the checkpoint to resume from");
        if (name.Length == 0)
        {
            return;
        }

        latest = System.Text.Encoding.UTF8.GetString(name);
        bytes = communicator.BroadcastBytes(bytes, 0, "broadcast the checkpoint to resume from");
        using var stream = new MemoryStream(bytes, writable: false);
        Checkpoint.ReadFrom(stream, latest, state);
        log($"Resumed from '{latest}' at step {state.Step} on {communicator.WorldSize} ranks.");
    }

    // What every rank must agree on: the model and data fingerprint, the seed and every setting that changes the numbers
    // (not the checkpoint folder, the resume flag or the time budget: rank 0 decides those).
    private string SettingsText(long seed, string fingerprint) => FormattableString.Invariant(
        $"seed {seed}|device {diffusion.Device.type}|steps {options.TrainSteps}|lr {options.LearningRate:R}|weight decay {options.WeightDecay:R}|warm-up {options.EffectiveWarmupSteps}|clip {options.GradientClip:R}|ema {options.EmaDecay:R}|micro-batch {options.MicroBatchSize}|non-finite {options.MaxConsecutiveNonFiniteSteps}|checkpoint every {options.CheckpointEvery}|check every {options.ConsistencyCheckEvery}|checkpoints {options.CheckpointDirectory is not null}|{fingerprint}");

    // The settings that differ from rank 0's, for the refusal message.
    private static string DescribeSettings(byte[] root, byte[] other)
    {
        string[] mine = System.Text.Encoding.UTF8.GetString(root).Split('|');
        string[] theirs = System.Text.Encoding.UTF8.GetString(other).Split('|');
        var differing = Enumerable.Range(0, Math.Max(mine.Length, theirs.Length))
            .Where(i => i >= mine.Length || i >= theirs.Length || mine[i] != theirs[i])
            .Select(i => $"'{(i < mine.Length ? Shorten(mine[i]) : "-")}' on rank 0, '{(i < theirs.Length ? Shorten(theirs[i]) : "-")}'");
        return string.Join(", ", differing);
    }

    private static string Shorten(string text) => text.Length <= 120 ? text : text[..117] + "...";

    private static byte[] DataHash(TrainingImages data)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes<float>(data.Images.contiguous().data<float>().ToArray()));
        if (data.Labels is not null)
        {
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes<long>(data.Labels.contiguous().data<long>().ToArray()));
        }

        return hash.GetHashAndReset();
    }

    // A SHA-256 of everything that must be identical on every rank: weights, AdamW moments, EMA, step counts, generator
    // states and the data position. Exact (bytes, not sums), so it does not depend on how a reduction is split into threads.
    private static byte[] StateHash(TrainingState state)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var t in state.Optimizer.StateTensors.Concat(state.Ema?.Shadow ?? Array.Empty<Tensor>()))
        {
            using var scope = NewDisposeScope();
            var host = t.detach().cpu().contiguous().to(float32);
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes<float>(host.data<float>().ToArray()));
        }

        hash.AppendData(BitConverter.GetBytes(state.Step));
        hash.AppendData(BitConverter.GetBytes(state.Cursor));
        hash.AppendData(BitConverter.GetBytes(state.Optimizer.Steps));
        hash.AppendData(BitConverter.GetBytes(state.Ema?.Updates ?? 0));
        using (var noise = state.NoiseGenerator.get_state())
        {
            hash.AppendData(noise.data<byte>().ToArray());
        }

        using (var order = state.OrderGenerator.get_state())
        {
            hash.AppendData(order.data<byte>().ToArray());
        }

        return hash.GetHashAndReset();
    }

    private Tensor NextIndices(TrainingState state, long count)
    {
        var parts = new System.Collections.Generic.List<Tensor>();
        long needed = options.BatchSize;
        while (needed > 0)
        {
            if (state.Cursor >= count)
            {
                state.ReplaceOrder(DeviceRandom.Permutation(count, CPU, state.OrderGenerator).DetachFromDisposeScope(), 0);
            }

            long take = Math.Min(needed, count - state.Cursor);
            parts.Add(state.Order[TensorIndex.Slice(state.Cursor, state.Cursor + take)]);
            state.Cursor += take;
            needed -= take;
        }

        return parts.Count == 1 ? parts[0] : cat(parts.ToArray(), 0);
    }

    // Scales the gradients by max / (norm + 1e-6) when that is below 1 (clip_grad_norm_'s rule); max ≤ 0 means no clipping.
    private static void ClipGradients(FusedAdamW optimizer, double norm, double max)
    {
        double coefficient = max / (norm + 1e-6);
        if (max <= 0 || coefficient >= 1)
        {
            return;
        }

        using var noGrad = no_grad();
        using Scalar scale = coefficient.ToScalar();
        optimizer.FlatGradients.mul_(scale);
    }
}
