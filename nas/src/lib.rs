//! The libtorch engine of darts-prime: DARTS search and evaluation training, for CIFAR (CNN
//! cells) and Penn Treebank (recurrent cells).
//!
//! One training loop serves every kind of run: [`run`] owns the run directory, start and
//! resume, the epoch and step counters, the observer's requests, checkpoint decisions and IO;
//! each kind of run is a [`run::Task`]: [`search::task`] (CNN search), [`eval::task`] (CNN
//! evaluation), [`rnn::search`] and [`rnn::eval`] (Penn Treebank). Every failure is a
//! [`error::RunError`] that says its [`error::ErrorKind`] (invalid, transient, diverged).
//!
//! Below the tasks: [`cnn`] (ops, search and evaluation networks, their cost), [`rnn`] (the
//! recurrent cell, model and corpus), [`optim`] (optimizers checked bitwise against PyTorch,
//! checkpointable), [`data`] (CIFAR files, augmentation, keyed batch streams), [`train_step`]
//! (what every trainer's step shares), [`cudnn`] (the cuDNN settings chosen), [`checkpoint`] (atomic, verified checkpoints),
//! [`fingerprint`] (the data a run read), [`keyed`] and [`torch_rng`] (reproducible draws).

pub mod build_info;
pub mod checkpoint;
pub mod cnn;
#[allow(unsafe_code)]
pub mod cuda_stream;
pub mod cudnn;
pub mod data;
pub mod error;
pub mod eval;
pub mod fingerprint;
pub mod hardware;
pub mod keyed;
pub mod optim;
pub mod parallel;
pub mod rnn;
pub mod run;
pub mod search;
pub mod torch_rng;
pub mod train_step;
