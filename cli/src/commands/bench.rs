//! `prime bench`: micro-benchmarks that print one JSON line each, in the shape of the
//! eager-PyTorch yardstick (`bench/pytorch_search_step.py`).

use crate::device::{apply_threads, parse_device};
use clap::{Args, Subcommand};
use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::eval_config::EvalConfig;
use prime_core::primitives::Activation;
use prime_core::rnn_config::RnnSearchConfig;
use prime_nas::cuda_stream::OwnStream;
use prime_nas::data::IMAGE_SIDE;
use prime_nas::eval::resolve_genotype;
use prime_nas::eval::trainer::EvalTrainer;
use prime_nas::optim::read_scalar;
use prime_nas::parallel::backend::{connect, Collectives};
use prime_nas::parallel::rank::DataParallel;
use prime_nas::parallel::DEFAULT_COLLECTIVE_TIMEOUT;
use prime_nas::rnn::corpus::get_batch;
use prime_nas::rnn::dropout::{DropoutMasks, DropoutRates};
use prime_nas::rnn::search_trainer::RnnSearchTrainer;
use prime_nas::rnn::trainer::scaled_lr;
use prime_nas::rnn::{draw_key, DrawStream};
use prime_nas::search::trainer::SearchTrainer;
use std::sync::Barrier;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Subcommands of `prime bench`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// One first-order search iteration (alpha step + weight step) of the search network.
    SearchStep(SearchStepArgs),
    /// One training step of the evaluation network (forward, backward, clip, SGD).
    EvalStep(EvalStepArgs),
    /// One first-order recurrent search iteration (alpha step + weight step) on PTB-shaped data.
    RnnSearchStep(RnnSearchStepArgs),
    /// Assignment latency and metric ingestion of a coordinator on loopback.
    Coordinator(crate::commands::cluster::bench::CoordinatorBenchArgs),
}

/// Arguments of `prime bench search-step`.
#[derive(Debug, Args)]
pub struct SearchStepArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Images per batch (both the alpha and the weight batch).
    #[arg(long, default_value_t = 64)]
    batch: i64,
    /// Initial channels C.
    #[arg(long, default_value_t = 16)]
    channels: i64,
    /// Number of cells.
    #[arg(long, default_value_t = 8)]
    layers: i64,
    /// Side of the square input images.
    #[arg(long, default_value_t = 32)]
    image_size: i64,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
    /// Timed iterations.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Activation of the architecture parameters (softmax or crb).
    #[arg(long, default_value = "softmax")]
    activation: Activation,
    /// With crb: the fraction of ops pruned before timing (pruned ops never run).
    #[arg(long, default_value_t = 0.0)]
    pruned: f64,
    /// Override a search config value, e.g. --set speed.search_precision=bf16. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Searches sharing the device at once, each its own network on its own thread, as a
    /// worker runs the trials of a `gpu_share = K` slot; the line gives their summed rate
    /// (median_s is over every trial's steps).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    trials: u16,
    /// Each trial on a CUDA stream of its own (as `worker --own-streams`), not all on the
    /// device's default stream.
    #[arg(long)]
    own_streams: bool,
}

/// Arguments of `prime bench eval-step`.
#[derive(Debug, Args)]
pub struct EvalStepArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The genotype: a built-in name, a genotype file or a run directory.
    #[arg(long, default_value = "DARTS_V2")]
    genotype: String,
    /// Images per batch.
    #[arg(long, default_value_t = 96)]
    batch: i64,
    /// Initial channels C.
    #[arg(long, default_value_t = 36)]
    channels: i64,
    /// Number of cells.
    #[arg(long, default_value_t = 20)]
    layers: i64,
    /// Drop-path probability of the timed steps.
    #[arg(long, default_value_t = 0.2)]
    drop_path: f64,
    /// Override an evaluation config value, e.g. --set speed.autocast=bf16. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
    /// Timed iterations.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Data-parallel ranks sharing each batch (--batch is the global batch): on the CPU,
    /// threads of this process; on cuda:N, the GPUs N, N+1, ...
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    ranks: u16,
    /// The back-end connecting the ranks: auto (NCCL between GPUs, else through host
    /// memory), nccl or cpu. Given with --ranks 1, the single rank still goes through its
    /// collectives, which times their cost; omitted, one rank runs without a group.
    #[arg(long)]
    collectives: Option<Collectives>,
}

/// Arguments of `prime bench rnn-search-step` (the flags of
/// `bench/pytorch_rnn_search_step.py`).
#[derive(Debug, Args)]
pub struct RnnSearchStepArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Vocabulary size (synthetic token ids).
    #[arg(long, default_value_t = 10000)]
    vocab: i64,
    /// Embedding and hidden width.
    #[arg(long, default_value_t = 300)]
    nhid: i64,
    /// Sequences per batch (both the alpha and the weight batch).
    #[arg(long, default_value_t = 256)]
    batch: i64,
    /// Time steps per batch.
    #[arg(long, default_value_t = 35)]
    bptt: usize,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
    /// Timed iterations.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
}

/// Runs `prime bench`.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::SearchStep(args) => search_step(args),
        BenchCommand::EvalStep(args) => eval_step(args),
        BenchCommand::RnnSearchStep(args) => rnn_search_step(args),
        BenchCommand::Coordinator(args) => crate::commands::cluster::bench::run(args),
    }
}

fn search_step(args: SearchStepArgs) -> anyhow::Result<()> {
    apply_threads(args.threads)?;
    let device = parse_device(&args.device)?;
    if args.iters == 0 || args.batch < 1 || args.image_size < 4 {
        anyhow::bail!("expected --iters >= 1, --batch >= 1 and --image-size >= 4");
    }
    let mut overrides = vec![
        "seed=0".to_string(),
        format!("network.init_channels={}", args.channels),
        format!("network.layers={}", args.layers),
        format!("arch.activation=\"{}\"", args.activation.name()),
    ];
    overrides.extend(args.overrides.iter().cloned());
    let config = SearchConfig::from_overrides(&overrides)?;
    if !(0.0..=1.0).contains(&args.pruned)
        || (args.pruned > 0.0 && args.activation != Activation::Crb)
    {
        anyhow::bail!("--pruned expects a fraction in [0, 1], with --activation crb");
    }
    let images = |seed: i64| {
        tch::manual_seed(seed);
        let x = Tensor::randn(
            [args.batch, 3, args.image_size, args.image_size],
            (Kind::Float, device),
        );
        let y = Tensor::randint(10, [args.batch], (Kind::Int64, device));
        (x, y)
    };
    let (x, y) = images(1);
    let (xv, yv) = images(2);
    // Drawn on this thread's stream: done before trials on other streams read them.
    synchronize(device);
    let trials = usize::from(args.trials);
    // The trials start their timed iterations together, so that they overlap as a shared
    // slot's trials do.
    let timed_start = Barrier::new(trials);
    let own_stream = match (args.own_streams, device) {
        (false, _) => None,
        (true, Device::Cuda(index)) => Some(index),
        (true, _) => anyhow::bail!("--own-streams needs a CUDA --device"),
    };
    let lr = config.weights.lr;
    // One iteration, waited for on this thread's stream only (a value read back), so that
    // trials on streams of their own do not wait for each other.
    let iteration = |trainer: &mut SearchTrainer, (x, y, xv, yv): &Batches| {
        settle(x);
        let start = Instant::now();
        trainer.arch_step(xv, yv, None, None)?;
        trainer.weight_step(x, y, lr, false, None)?;
        settle(x);
        anyhow::Ok(start.elapsed().as_secs_f64())
    };
    let trial = |batches: Batches| {
        let warmed_up = (|| {
            let stream = own_stream
                .map(OwnStream::enter)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let mut trainer = SearchTrainer::new(&config, 10, device)?;
            if args.pruned > 0.0 {
                prune_fraction(&mut trainer, args.pruned)?;
            }
            for _ in 0..args.warmup {
                iteration(&mut trainer, &batches)?;
            }
            anyhow::Ok((stream, trainer))
        })();
        // Every trial reaches the start, even one that failed, so none waits forever.
        timed_start.wait();
        let (_stream, mut trainer) = warmed_up?;
        let times = (0..args.iters)
            .map(|_| iteration(&mut trainer, &batches))
            .collect::<anyhow::Result<Vec<f64>>>()?;
        anyhow::Ok((times, trainer.parameter_count()))
    };
    let results: Vec<anyhow::Result<(Vec<f64>, i64)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..trials)
            .map(|_| {
                let batches = (
                    x.shallow_clone(),
                    y.shallow_clone(),
                    xv.shallow_clone(),
                    yv.shallow_clone(),
                );
                let trial = &trial;
                scope.spawn(move || trial(batches))
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a trial of the benchmark panicked")))
            })
            .collect()
    });
    // Each trial's rate at its own median step, summed: the slot's throughput.
    let mut summed_rate = 0.0;
    let mut times = Vec::new();
    let mut params = 0;
    for result in results {
        let (mut trial_times, count) = result?;
        trial_times.sort_by(f64::total_cmp);
        summed_rate += 2.0 * args.batch as f64 / median(&trial_times);
        times.extend(trial_times);
        params = count;
    }
    times.sort_by(f64::total_cmp);
    let median = median(&times);
    let round = |value: f64| (value * 1e5).round() / 1e5;
    let line = serde_json::json!({
        "impl": "darts-prime-tch",
        "device": device_name(device),
        "trials": trials,
        "own_streams": args.own_streams,
        "threads": tch::get_num_threads(),
        "batch": args.batch,
        "channels": args.channels,
        "layers": args.layers,
        "image_size": args.image_size,
        "activation": args.activation.name(),
        "pruned": args.pruned,
        "search_precision": config.speed.search_precision,
        "params": params,
        "median_s": round(median),
        "min_s": round(times[0]),
        "max_s": round(times[times.len() - 1]),
        "images_per_s": (summed_rate * 100.0).round() / 100.0,
    });
    println!("{line}");
    Ok(())
}

fn eval_step(args: EvalStepArgs) -> anyhow::Result<()> {
    apply_threads(args.threads)?;
    let device = parse_device(&args.device)?;
    if args.iters == 0 || args.batch < 1 || !(0.0..1.0).contains(&args.drop_path) {
        anyhow::bail!("expected --iters >= 1, --batch >= 1 and 0 <= --drop-path < 1");
    }
    let (genotype, label) = resolve_genotype(&args.genotype)?;
    let mut overrides = vec![
        format!("network.init_channels={}", args.channels),
        format!("network.layers={}", args.layers),
        format!("data.batch_size={}", args.batch),
    ];
    overrides.extend(args.overrides.iter().cloned());
    let mut config = EvalConfig::from_overrides(&overrides)?;
    config.genotype = genotype;
    config.validate("prime bench eval-step")?;
    let ranks = usize::from(args.ranks);
    if args.batch < ranks as i64 {
        anyhow::bail!(
            "--batch {} leaves a rank of {ranks} without images",
            args.batch
        );
    }
    let devices = rank_devices(device, ranks)?;
    let side = IMAGE_SIDE as i64;
    tch::manual_seed(1);
    let x = Tensor::randn([args.batch, 3, side, side], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(config.classes(), [args.batch], (Kind::Int64, Device::Cpu));
    let run = |device: Device, mut ranks: Option<DataParallel>, (x, y): (Tensor, Tensor)| {
        let mut trainer = EvalTrainer::new(&config, device)?;
        if let Some(ranks) = &mut ranks {
            trainer.take_rank0_weights(ranks)?;
        }
        let (x, y) = (x.to_device(device), y.to_device(device));
        let lr = config.weights.lr;
        let mut times = Vec::with_capacity(args.iters);
        for iteration in 0..args.warmup + args.iters {
            synchronize(device);
            let start = Instant::now();
            let key = iteration as u64;
            trainer.train_step(&x, &y, lr, args.drop_path, key, ranks.as_mut())?;
            synchronize(device);
            if iteration >= args.warmup {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        anyhow::Ok((times, trainer.parameter_counts()))
    };
    let grouped = ranks > 1 || args.collectives.is_some();
    let mut collectives = "none".to_string();
    let (mut times, params) = if !grouped {
        run(device, None, (x, y))?
    } else {
        let choice = args.collectives.unwrap_or_default();
        let connected = connect(&devices, DEFAULT_COLLECTIVE_TIMEOUT, choice)?;
        collectives = connected.description;
        std::thread::scope(|scope| {
            let threads: Vec<_> = connected
                .ranks
                .into_iter()
                .zip(&devices)
                .map(|(comm, device)| {
                    let (run, batch) = (&run, (x.shallow_clone(), y.shallow_clone()));
                    let ranks = Some(DataParallel::new(comm));
                    scope.spawn(move || run(*device, ranks, batch))
                })
                .collect();
            let mut results = threads.into_iter().map(|thread| {
                thread
                    .join()
                    .map_err(|_| anyhow::anyhow!("a rank of the benchmark panicked"))?
            });
            let rank0 = results.next().expect("one rank or more");
            results.collect::<anyhow::Result<Vec<_>>>()?;
            rank0
        })?
    };
    times.sort_by(f64::total_cmp);
    let median = median(&times);
    let round = |value: f64| (value * 1e5).round() / 1e5;
    let line = serde_json::json!({
        "impl": "darts-prime-tch",
        "bench": "eval-step",
        "device": device_name(device),
        "threads": tch::get_num_threads(),
        "batch": args.batch,
        "channels": args.channels,
        "layers": args.layers,
        "image_size": side,
        "genotype": label,
        "ranks": ranks,
        "collectives": collectives,
        "params": params.network,
        "aux_params": params.auxiliary,
        "autocast": config.speed.autocast,
        "channels_last": config.speed.channels_last,
        "cudnn_benchmark": config.speed.cudnn_benchmark,
        "median_s": round(median),
        "min_s": round(times[0]),
        "max_s": round(times[times.len() - 1]),
        "images_per_s": (args.batch as f64 / median * 100.0).round() / 100.0,
        "steps_per_s": (1.0 / median * 1000.0).round() / 1000.0,
    });
    println!("{line}");
    Ok(())
}

/// Times the iteration of `run_rnn_search` (SPEC 7.7 steps 6-9, schedule `alternate`, no
/// regularizer): masks, alpha step, masks, weight step at the scaled LR, and the two scalar
/// reads the loop makes (loss and FIMT); both hidden states are carried between iterations.
fn rnn_search_step(args: RnnSearchStepArgs) -> anyhow::Result<()> {
    apply_threads(args.threads)?;
    let device = parse_device(&args.device)?;
    if args.iters == 0 || args.batch < 1 || args.vocab < 2 || args.nhid < 1 || args.bptt < 2 {
        anyhow::bail!(
            "expected --iters >= 1, --batch >= 1, --vocab >= 2, --nhid >= 1 and --bptt >= 2"
        );
    }
    let mut config = RnnSearchConfig::default();
    config.network.nhid = args.nhid;
    config.data.batch_size = args.batch as usize;
    config.data.bptt = args.bptt;
    config.validate("prime bench rnn-search-step")?;
    let mut trainer = RnnSearchTrainer::new(&config, args.vocab, device)?;
    let tokens = |seed: i64| {
        tch::manual_seed(seed);
        let rows = Tensor::randint(
            args.vocab,
            [args.bptt as i64 + 1, args.batch],
            (Kind::Int64, device),
        );
        get_batch(&rows, 0, args.bptt)
    };
    let (input, targets) = tokens(1);
    let (alpha_input, alpha_targets) = tokens(2);
    let rates = DropoutRates::from(&config.network);
    let masks = |iteration: usize, stream: DrawStream| {
        DropoutMasks::draw(
            draw_key(config.seed, 1, iteration as u64, stream),
            &rates,
            args.vocab,
            args.batch,
            args.nhid,
            device,
        )
    };
    let lr = scaled_lr(config.weights.lr, args.bptt, args.bptt);
    let mut hidden = trainer.model().init_hidden(args.batch);
    let mut hidden_alpha = trainer.model().init_hidden(args.batch);
    let mut times = Vec::with_capacity(args.iters);
    for iteration in 0..args.warmup + args.iters {
        synchronize(device);
        let start = Instant::now();
        let alpha_masks = masks(iteration, DrawStream::AlphaMasks);
        let (alpha_loss, next_hidden) = trainer.arch_step(
            &alpha_input,
            &alpha_targets,
            &hidden_alpha,
            &alpha_masks,
            None,
        )?;
        hidden_alpha = next_hidden;
        let weight_masks = masks(iteration, DrawStream::WeightMasks);
        let step = trainer.weight_step(&input, &targets, &hidden, &weight_masks, lr)?;
        hidden = step.hidden;
        let losses = [
            alpha_loss.double_value(&[]),
            step.raw_loss.double_value(&[]),
        ];
        let fimt = read_scalar(&step.fimt)?;
        if !losses.iter().chain([&fimt]).all(|value| value.is_finite()) {
            anyhow::bail!("non-finite loss or FIMT at iteration {iteration}");
        }
        synchronize(device);
        if iteration >= args.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = median(&times);
    let round = |value: f64| (value * 1e5).round() / 1e5;
    let tokens_per_s = 2.0 * (args.batch * args.bptt as i64) as f64 / median;
    let line = serde_json::json!({
        "impl": "darts-prime-tch",
        "bench": "rnn-search-step",
        "device": device_name(device),
        "threads": tch::get_num_threads(),
        "vocab": args.vocab,
        "nhid": args.nhid,
        "batch": args.batch,
        "bptt": args.bptt,
        "params": trainer.parameter_count(),
        "median_s": round(median),
        "min_s": round(times[0]),
        "max_s": round(times[times.len() - 1]),
        "tokens_per_s": (tokens_per_s * 100.0).round() / 100.0,
    });
    println!("{line}");
    Ok(())
}

/// The median of sorted, non-empty `times`.
fn median(times: &[f64]) -> f64 {
    if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    }
}

/// Prunes the given fraction of (edge, op) entries of both alpha tensors, chosen in a fixed
/// scrambled order, as CRB's progressive pruning would.
fn prune_fraction(trainer: &mut SearchTrainer, fraction: f64) -> anyhow::Result<()> {
    for alpha in [&trainer.arch().normal, &trainer.arch().reduce] {
        let count = alpha.numel();
        let pruned = (fraction * count as f64).round() as usize;
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by_key(|index| (*index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32);
        let flat = alpha.view([-1]);
        tch::no_grad(|| {
            for index in &order[..pruned] {
                let _ = flat.get(*index as i64).fill_(-1.0);
            }
        });
    }
    trainer.mask_alphas(false)?;
    Ok(())
}

/// The devices of `ranks` ranks starting at `device`: the CPU for every rank, or
/// consecutive GPUs.
fn rank_devices(device: Device, ranks: usize) -> anyhow::Result<Vec<Device>> {
    match device {
        Device::Cuda(first) => (first..first + ranks)
            .map(|index| parse_device(&format!("cuda:{index}")))
            .collect(),
        _ => Ok(vec![device; ranks]),
    }
}

/// The four tensors of a search iteration: weight batch and labels, alpha batch and labels.
type Batches = (Tensor, Tensor, Tensor, Tensor);

/// Waits until the device has run the calling thread's work so far on its current stream,
/// by reading one value of `tensor` back.
fn settle(tensor: &Tensor) {
    let _ = tensor.flatten(0, -1).get(0).double_value(&[]);
}

fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".to_string(),
    }
}
