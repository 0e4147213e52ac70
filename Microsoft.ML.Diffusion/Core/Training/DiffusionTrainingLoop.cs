using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
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
internal sealed class DiffusionTrainingLoop
{
    private readonly GaussianDiffusion diffusion;
    private readonly TrainingSettings options;
    private readonly Action<TrainingProgress> report;
    private readonly Action<string> log;
    private MixedPrecision? precision; // MIXED PRECISION: set in Run (docs/mixed-precision.md)

    public DiffusionTrainingLoop(GaussianDiffusion diffusion, TrainingSettings options, Action<TrainingProgress> report, Action<string> log)
    {
        this.diffusion = diffusion;
        this.options = options;
        this.report = report;
        this.log = log;
    }

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
        network.train();
        // One flat buffer for the parameters, one for the gradients: the optimizer, the gradient norm, the clipping and the
        // EMA are a few kernels per step instead of a few per parameter tensor (on a GPU, kernel launches bound the step).
        using var optimizer = new FusedAdamW(network.parameters(), options.LearningRate, beta1: 0.9, beta2: 0.99, weightDecay: options.WeightDecay);
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
        if (options.Resume && directory is not null
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
        if (directory is not null)
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
        for (int step = state.Step; step < options.TrainSteps; step++)
        {
            options.CancellationToken.ThrowIfCancellationRequested();
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
                    var indices = NextIndices(state, count);
                    var images = data.Images.index_select(0, indices).to(device);
                    if (options.RandomHorizontalFlip)
                    {
                        var flip = DeviceRandom.Uniform(new long[] { images.shape[0], 1, 1, 1 }, device, generator: orderGenerator) < Scalars.Half;
                        images = where(flip, images.flip(3), images);
                    }

                    Tensor? labels = null;
                    if (data.Labels is not null)
                    {
                        labels = data.Labels.index_select(0, indices);
                        if (options.ConditionDropout > 0)
                        {
                            using Scalar dropout = options.ConditionDropout.ToScalar(), nullClass = data.ClassCount.ToScalar();
                            var drop = DeviceRandom.Uniform(new long[] { labels.shape[0] }, CPU, generator: orderGenerator) < dropout;
                            labels = where(drop, full_like(labels, nullClass), labels);
                        }

                        labels = labels.to(device);
                    }

                    var batchLoss = BackwardInChunks(images, labels, DeviceRandom.ForTrainingStep(device, noiseGenerator, seed, ((long)step * options.GradientAccumulationSteps) + micro));
                    lossSum = lossSum is null ? batchLoss : lossSum.Plus(batchLoss);
                }

                // The step's one host synchronisation: the loss and the gradient norm, read together.
                var norm = optimizer.FlatGradients.norm().to(float64);
                var host = stack(new[] { lossSum!.to(float64), norm }).cpu().data<double>().ToArray();
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

            bool outOfTime = options.MaxTrainingTime is TimeSpan budget && clock.Elapsed >= budget && done < options.TrainSteps;
            if (directory is not null && (done % options.CheckpointEvery == 0 || done == options.TrainSteps || outOfTime))
            {
                Checkpoint.Write(directory, state, options.KeepCheckpoints, createDirectory: false);
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
