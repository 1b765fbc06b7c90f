//! The GPU tier: CPU vs CUDA agreement of the search, evaluation and recurrent networks
//! (forward and gradients; the search network also in bf16), short searches and evaluations on CUDA, checkpoints moving between
//! CUDA and the CPU, CRB pruning on CUDA, and the NCCL back-end of data-parallel runs (one
//! rank; every GPU, a dying rank and a two-GPU evaluation where the machine has two or more),
//! and threads on CUDA streams of their own (trials sharing a GPU, `worker --own-streams`).
//!
//! Every test here is ignored by default (the reason shows in the test output) and runs with
//! `--ignored` on a machine whose libtorch sees a CUDA device, as `scripts/gpu-check.sh` does;
//! run there without one, each fails saying so. The float32 bounds assume TF32 is off
//! (`NVIDIA_TF32_OVERRIDE=0`, which the check script sets): cuDNN uses TF32 for float32
//! convolutions by default on Ampere and newer.

use prime_core::config::{LayeredConfig, SearchConfig, SearchPrecision};
use prime_core::dataset::ImageDataset;
use prime_core::eval_config::EvalConfig;
use prime_core::genotype::Genotype;
use prime_core::observer::NullObserver;
use prime_core::primitives::Activation;
use prime_nas::cnn::eval_net::{EvalNetShape, EvalNetwork};
use prime_nas::cnn::search_net::{SearchNetShape, SearchNetwork};
use prime_nas::cuda_stream::{self, OwnStream};
use prime_nas::data::{write_synthetic, DownloadPolicy};
use prime_nas::eval::precision::ComputeCopy;
use prime_nas::eval::trainer::EvalTrainer;
use prime_nas::eval::{run_eval, run_eval_data_parallel};
use prime_nas::parallel::backend::{connect, Collectives};
use prime_nas::parallel::nccl::NcclCommunicator;
use prime_nas::parallel::rank::DataParallel;
use prime_nas::parallel::{CommError, Communicator};
use prime_nas::rnn::model::{ModelCell, RnnModel};
use prime_nas::run::manifest::RunManifest;
use prime_nas::run::RunOptions;
use prime_nas::search::run_search;
use std::path::Path;
use std::time::Duration;
use tch::{nn, Device, Kind, Tensor};

mod common;

use common::StopAtEpochStart;

/// Float32 agreement between the CPU and CUDA (relative L2 error).
const FLOAT32_BOUND: f64 = 1e-4;
/// Reduced precision on CUDA: the evaluation's bf16 compute copy against float32 on the CPU;
/// a bf16 search network on CUDA against the same on the CPU.
const BF16_BOUND: f64 = 1e-2;

/// The first CUDA device; panics with a clear message where there is none.
fn cuda() -> Device {
    assert!(
        tch::Cuda::is_available(),
        "the GPU tier was asked to run, but libtorch sees no CUDA device"
    );
    Device::Cuda(0)
}

/// ||a - b|| / ||b||, both brought to the CPU in float32.
fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_device(Device::Cpu).to_kind(Kind::Float);
    let b = b.to_device(Device::Cpu).to_kind(Kind::Float);
    let difference = (&a - &b).norm().double_value(&[]);
    difference / b.norm().double_value(&[]).max(f64::MIN_POSITIVE)
}

/// A tensor moved to `device` as a fresh leaf that collects gradients.
fn leaf_on(tensor: &Tensor, device: Device) -> Tensor {
    tensor.to_device(device).detach().set_requires_grad(true)
}

fn tiny_search_shape() -> SearchNetShape {
    SearchNetShape {
        channels: 4,
        classes: 10,
        layers: 3,
        steps: 2,
        multiplier: 2,
        stem_multiplier: 3,
        activation: Activation::Softmax,
    }
}

/// The search network drawn with `seed` on the CPU, then moved to `device` (so both copies
/// hold the same numbers).
fn search_network(seed: i64, device: Device) -> (nn::VarStore, SearchNetwork) {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut net = SearchNetwork::new(&vs, tiny_search_shape());
    vs.set_device(device);
    net.arch.normal = leaf_on(&net.arch.normal, device);
    net.arch.reduce = leaf_on(&net.arch.reduce, device);
    net.arch.normal_mask = net.arch.normal_mask.to_device(device);
    net.arch.reduce_mask = net.arch.reduce_mask.to_device(device);
    (vs, net)
}

/// Checks that `loss` of the CPU and CUDA copies and the gradients of `parameters` agree.
fn assert_agree(what: &str, cpu: (&Tensor, Vec<Tensor>), gpu: (&Tensor, Vec<Tensor>), bound: f64) {
    let error = relative_error(gpu.0, cpu.0);
    assert!(
        error < bound,
        "{what}: forward differs by {error:e} (bound {bound:e})"
    );
    assert_eq!(cpu.1.len(), gpu.1.len());
    for (index, (cpu_param, gpu_param)) in cpu.1.iter().zip(&gpu.1).enumerate() {
        let error = relative_error(&gpu_param.grad(), &cpu_param.grad());
        assert!(
            error < bound,
            "{what}: gradient of parameter {index} differs by {error:e} (bound {bound:e})"
        );
    }
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn search_network_agrees_between_cpu_and_cuda() {
    let device = cuda();
    let images = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
    let run = |device: Device| {
        let (vs, net) = search_network(11, device);
        let logits = net.forward_t(&images.to_device(device), false);
        logits.square().mean(Kind::Float).backward();
        let mut parameters = vs.trainable_variables();
        parameters.push(net.arch.normal.shallow_clone());
        parameters.push(net.arch.reduce.shallow_clone());
        (logits, parameters)
    };
    let (cpu_logits, cpu_parameters) = run(Device::Cpu);
    let (gpu_logits, gpu_parameters) = run(device);
    assert_agree(
        "search network",
        (&cpu_logits, cpu_parameters),
        (&gpu_logits, gpu_parameters),
        FLOAT32_BOUND,
    );
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn bf16_search_network_agrees_between_cpu_and_cuda() {
    let device = cuda();
    let images = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
    let run = |device: Device| {
        let (_vs, mut net) = search_network(14, device);
        net.set_precision(SearchPrecision::Bf16);
        let logits = net.forward_t(&images.to_device(device), false);
        assert_eq!(logits.kind(), Kind::Float);
        logits.square().mean(Kind::Float).backward();
        assert_eq!(net.arch.normal.grad().kind(), Kind::Float);
        logits
    };
    let cpu_logits = run(Device::Cpu);
    let gpu_logits = run(device);
    let error = relative_error(&gpu_logits, &cpu_logits);
    assert!(error < BF16_BOUND, "bf16 search network: {error:e}");
}

const EVAL_SHAPE: EvalNetShape = EvalNetShape {
    channels: 4,
    classes: 10,
    layers: 3,
    auxiliary: false,
};

fn eval_genotype() -> Genotype {
    Genotype::builtin("DARTS_V2").unwrap()
}

fn eval_network(device: Device) -> (nn::VarStore, EvalNetwork) {
    tch::manual_seed(12);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = EvalNetwork::new(&vs, EVAL_SHAPE, &eval_genotype()).unwrap();
    vs.set_device(device);
    (vs, net)
}

/// The bf16 bound holds for the evaluation's bf16 option as training runs it: the bfloat16
/// compute copy of the float32 master weights (`speed.autocast = "bf16"`), not torch's CUDA
/// autocast, whose default type is float16.
#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn evaluation_network_agrees_between_cpu_and_cuda_in_float32_and_bf16() {
    let device = cuda();
    let images = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
    let run = |device: Device| {
        let (vs, net) = eval_network(device);
        let logits = net.forward_t(&images.to_device(device), false, None).logits;
        logits.square().mean(Kind::Float).backward();
        (logits, vs.trainable_variables())
    };
    let (cpu_logits, cpu_parameters) = run(Device::Cpu);
    let (gpu_logits, gpu_parameters) = run(device);
    assert_agree(
        "evaluation network, float32",
        (&cpu_logits, cpu_parameters),
        (&gpu_logits, gpu_parameters),
        FLOAT32_BOUND,
    );
    let (master, _) = eval_network(device);
    let copy =
        ComputeCopy::new(&master, EVAL_SHAPE, &eval_genotype(), Kind::BFloat16, false).unwrap();
    let bf16_logits = tch::no_grad(|| {
        copy.net()
            .forward_t(&copy.prepare(&images.to_device(device)), false, None)
            .logits
    });
    assert_eq!(bf16_logits.kind(), Kind::BFloat16);
    let error = relative_error(&bf16_logits, &cpu_logits);
    assert!(
        error < BF16_BOUND,
        "evaluation network, bf16 compute copy: {error:e}"
    );
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn recurrent_search_model_agrees_between_cpu_and_cuda() {
    let device = cuda();
    let tokens = Tensor::randint(50, [6, 3], (Kind::Int64, Device::Cpu));
    let run = |device: Device| {
        tch::manual_seed(13);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let mut model = RnnModel::search(&vs.root(), 50, 16, Activation::Softmax);
        vs.set_device(device);
        let alphas = match &mut model.cell {
            ModelCell::Search { alphas, .. } => {
                *alphas = leaf_on(alphas, device);
                alphas.shallow_clone()
            }
            ModelCell::Fixed(_) => unreachable!("a search model has alphas"),
        };
        let hidden = model.init_hidden(3);
        let output = model.forward(&tokens.to_device(device), &hidden, None);
        output.log_probs.mean(Kind::Float).backward();
        let mut parameters = vs.trainable_variables();
        parameters.push(alphas);
        (output.log_probs, parameters)
    };
    let (cpu_out, cpu_parameters) = run(Device::Cpu);
    let (gpu_out, gpu_parameters) = run(device);
    assert_agree(
        "recurrent search model",
        (&cpu_out, cpu_parameters),
        (&gpu_out, gpu_parameters),
        FLOAT32_BOUND,
    );
}

fn tiny_search_config(method: &str) -> SearchConfig {
    let overrides: Vec<String> = [
        "epochs=2",
        "data.batch_size=16",
        "data.limit=128",
        "network.init_channels=4",
        "network.layers=3",
        "network.steps=2",
        "network.multiplier=2",
        "seed=7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    prime_core::presets::method_config(method, &overrides).unwrap()
}

/// A two-epoch evaluation of a tiny network on 128 images.
fn tiny_eval_config() -> EvalConfig {
    let overrides: Vec<String> = [
        "epochs=2",
        "data.batch_size=16",
        "data.limit=128",
        "network.init_channels=4",
        "network.layers=3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    EvalConfig::from_overrides(&overrides).unwrap()
}

fn options(run_dir: &Path, data_dir: &Path, device: Device, resume: bool) -> RunOptions {
    RunOptions {
        run_dir: run_dir.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        device,
        resume,
        download: DownloadPolicy::Never,
    }
}

fn synthetic_data() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar10, 256, 32, 3).unwrap();
    data
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn short_searches_in_float32_and_bf16_and_an_evaluation_run_on_cuda() {
    let device = cuda();
    let data = synthetic_data();
    let search = tempfile::tempdir().unwrap();
    let outcome = run_search(
        &tiny_search_config("darts-prime"),
        &options(search.path(), data.path(), device, false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    let manifest = RunManifest::read(search.path()).unwrap().unwrap();
    assert_eq!(manifest.machine.device, "cuda:0");
    assert!(manifest.machine.cudnn_version.is_some());

    let mut bf16 = tiny_search_config("darts-prime");
    bf16.speed.search_precision = SearchPrecision::Bf16;
    let bf16_search = tempfile::tempdir().unwrap();
    let outcome = run_search(
        &bf16,
        &options(bf16_search.path(), data.path(), device, false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    let manifest = RunManifest::read(bf16_search.path()).unwrap().unwrap();
    assert_eq!(manifest.precision.as_deref(), Some("bf16"));

    let config = tiny_eval_config();
    let evaluation = tempfile::tempdir().unwrap();
    let outcome = run_eval(
        &config,
        &options(evaluation.path(), data.path(), device, false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
}

/// A search stopped at the start of epoch 1 on `first` and resumed on `second` runs to its end;
/// the manifest records the move as not bitwise.
fn resume_across(first: Device, second: Device) {
    let data = synthetic_data();
    let run = tempfile::tempdir().unwrap();
    let config = tiny_search_config("darts-prime");
    let stopped = run_search(
        &config,
        &options(run.path(), data.path(), first, false),
        &mut StopAtEpochStart { epoch: 1 },
    )
    .unwrap();
    assert!(!stopped.finished);
    let outcome = run_search(
        &config,
        &options(run.path(), data.path(), second, true),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    let manifest = RunManifest::read(run.path()).unwrap().unwrap();
    let notice = manifest.resumes[0].notice.clone().unwrap_or_default();
    assert!(
        notice.contains("device") && notice.contains("not bitwise"),
        "{notice}"
    );
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn a_checkpoint_written_on_cuda_resumes_on_the_cpu() {
    resume_across(cuda(), Device::Cpu);
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn a_checkpoint_written_on_the_cpu_resumes_on_cuda() {
    resume_across(Device::Cpu, cuda());
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn crb_pruning_runs_on_cuda() {
    let device = cuda();
    let data = synthetic_data();
    let run = tempfile::tempdir().unwrap();
    let outcome = run_search(
        &tiny_search_config("admm-fimt-crb"),
        &options(run.path(), data.path(), device, false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
}

/// Float32 values `0..n` plus `offset`, on `device`.
fn ramp(n: i64, offset: f64, device: Device) -> Tensor {
    Tensor::arange(n, (Kind::Float, device)) + offset
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn nccl_reduces_and_broadcasts_on_the_device_with_one_rank_and_with_every_gpu() {
    let device = cuda();
    let (version, source) = prime_nas::parallel::nccl::version().unwrap();
    println!("NCCL {version} ({source})");
    let mut one = NcclCommunicator::group(&[0], Duration::from_secs(60)).unwrap();
    let rank = &mut one[0];
    let flat = ramp(1000, 0.5, device);
    rank.all_reduce_sum_tensor(&flat).unwrap();
    assert_eq!(Vec::<f32>::try_from(&flat).unwrap()[999], 999.5);
    rank.broadcast_tensor(&flat, 0).unwrap();
    let mut host = vec![1.5f32, -2.0];
    rank.all_reduce_sum(&mut host).unwrap();
    assert_eq!(host, vec![1.5, -2.0]);
    let error = rank
        .all_reduce_sum_tensor(&ramp(3, 0.0, Device::Cpu))
        .unwrap_err();
    assert!(
        error.to_string().contains("not a Float tensor on Cpu"),
        "{error}"
    );
    drop(one);

    let gpus = tch::Cuda::device_count() as usize;
    if gpus < 2 {
        println!("one GPU: the group of every GPU is the group above");
        return;
    }
    let all: Vec<usize> = (0..gpus).collect();
    let ranks = NcclCommunicator::group(&all, Duration::from_secs(60)).unwrap();
    let threads: Vec<_> = ranks
        .into_iter()
        .map(|mut rank| {
            std::thread::spawn(move || {
                let device = rank.device();
                let flat = ramp(5, rank.rank() as f64, device);
                rank.all_reduce_sum_tensor(&flat).unwrap();
                let mut root = vec![rank.rank() as f32; 3];
                rank.broadcast(&mut root, 1).unwrap();
                (Vec::<f32>::try_from(&flat).unwrap(), root)
            })
        })
        .collect();
    let offsets: f32 = (0..gpus).map(|rank| rank as f32).sum();
    for thread in threads {
        let (sums, root) = thread.join().unwrap();
        let expected: Vec<f32> = (0..5).map(|i| gpus as f32 * i as f32 + offsets).collect();
        assert_eq!(sums, expected);
        assert_eq!(root, vec![1.0; 3]);
    }
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn a_rank_that_dies_fails_the_nccl_group_within_its_timeout() {
    cuda();
    if tch::Cuda::device_count() < 2 {
        println!("needs two GPUs: skipped on this machine");
        return;
    }
    let ranks = NcclCommunicator::group(&[0, 1], Duration::from_secs(20)).unwrap();
    let started = std::time::Instant::now();
    let threads: Vec<_> = ranks
        .into_iter()
        .map(|mut rank| {
            std::thread::spawn(move || {
                let flat = ramp(16, 0.0, rank.device());
                rank.all_reduce_sum_tensor(&flat)?;
                if rank.rank() == 1 {
                    panic!("rank 1 dies after its first collective");
                }
                rank.all_reduce_sum_tensor(&flat)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|thread| thread.join()).collect();
    assert!(results[1].is_err(), "rank 1 panicked");
    let error = results[0].as_ref().unwrap().clone().unwrap_err();
    assert_eq!(
        error,
        CommError::RankFailed {
            rank: 1,
            reason: "it panicked".into()
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "not at the timeout"
    );
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn an_evaluation_step_over_nccl_with_one_rank_equals_the_step_without_a_group() {
    let device = cuda();
    let overrides: Vec<String> = ["network.init_channels=8", "network.layers=3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let config = EvalConfig::from_overrides(&overrides).unwrap();
    let (x, y) = prime_nas::torch_rng::seeded(3, || {
        (
            Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu)).to_device(device),
            Tensor::randint(10, [8], (Kind::Int64, Device::Cpu)).to_device(device),
        )
    });
    let train = |ranks: Option<DataParallel>| {
        let mut ranks = ranks;
        let mut trainer =
            prime_nas::torch_rng::seeded(5, || EvalTrainer::new(&config, device).unwrap());
        if let Some(ranks) = &mut ranks {
            trainer.take_rank0_weights(ranks).unwrap();
        }
        for step in 0..3 {
            trainer
                .train_step(&x, &y, 0.025, 0.2, step, ranks.as_mut())
                .unwrap();
        }
        trainer.variables()
    };
    let connected = connect(&[device], Duration::from_secs(60), Collectives::Nccl).unwrap();
    assert!(
        connected.description.starts_with("NCCL 2."),
        "{}",
        connected.description
    );
    let comm = connected.ranks.into_iter().next().unwrap();
    let grouped = train(Some(DataParallel::new(comm)));
    let alone = train(None);
    assert_eq!(grouped.len(), alone.len());
    for ((name, a), (_, b)) in grouped.iter().zip(&alone) {
        let error = relative_error(a, b);
        assert!(error <= 1e-5, "{name}: relative error {error}");
    }
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn an_evaluation_on_two_gpus_runs_over_nccl_and_its_manifest_says_so() {
    cuda();
    if tch::Cuda::device_count() < 2 {
        println!("needs two GPUs: skipped on this machine");
        return;
    }
    let data = synthetic_data();
    let run = tempfile::tempdir().unwrap();
    let config = tiny_eval_config();
    let outcome = run_eval_data_parallel(
        &[Device::Cuda(0), Device::Cuda(1)],
        &config,
        &options(run.path(), data.path(), Device::Cuda(0), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    let manifest = RunManifest::read(run.path()).unwrap().unwrap();
    assert_eq!(manifest.machine.ranks, Some(2));
    let collectives = manifest.machine.collectives.unwrap_or_default();
    assert!(collectives.starts_with("nccl 2."), "{collectives}");
}

#[test]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored (scripts/gpu-check.sh)"]
fn threads_on_streams_of_their_own_compute_what_the_default_stream_computes() {
    let device = cuda();
    assert!(
        cuda_stream::current_handle(0).unwrap().is_null(),
        "default stream first"
    );
    let a =
        prime_nas::torch_rng::seeded(11, || Tensor::randn([256, 256], (Kind::Float, Device::Cpu)));
    let expected = a.matmul(&a).sum(Kind::Float).double_value(&[]);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let a = a.shallow_clone();
            std::thread::spawn(move || {
                let stream = OwnStream::enter(0).unwrap();
                let handle = stream.handle() as usize;
                assert_eq!(cuda_stream::current_handle(0).unwrap() as usize, handle);
                let on_device = a.to_device(device);
                let mut total = 0.0;
                for _ in 0..20 {
                    total = on_device
                        .matmul(&on_device)
                        .sum(Kind::Float)
                        .double_value(&[]);
                }
                drop(stream);
                assert!(
                    cuda_stream::current_handle(0).unwrap().is_null(),
                    "restored"
                );
                (handle, total)
            })
        })
        .collect();
    let results: Vec<(usize, f64)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_ne!(results[0].0, 0, "a stream of its own, not the default");
    assert_ne!(results[0].0, results[1].0, "each thread its own stream");
    for (_, total) in results {
        assert!(
            (total - expected).abs() <= 1e-3 * expected.abs().max(1.0),
            "{total} vs {expected}"
        );
    }
}
