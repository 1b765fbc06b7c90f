//! The NCCL back-end of `Communicator`: the ranks are threads of one process, one per GPU,
//! whose communicators are created together (`ncclCommInitAll`). Collectives run in place
//! on the device, on the device's default stream, which is the stream libtorch computes on
//! (tch offers no stream API, so libtorch never leaves it): a collective is ordered after
//! the kernels that produced its buffer without any wait on the host.
//!
//! Each collective then waits until the device has finished it, under a watchdog
//! (`super::watchdog`) that aborts the communicator when the group's timeout passes or when
//! another rank has left the group before reaching this collective, so a dead or hung rank
//! fails the attempt instead of hanging it. The wait costs little: the data-parallel step
//! reads its reduced metrics on the host right after the gradients anyway.
//!
//! The library is loaded at run time, so the same binary runs where there is none: from
//! this process when libtorch links it (the CUDA wheels do: `nvidia-nccl`), else as
//! `libnccl.so.2`, NCCL's soname, or `libnccl.so`. (cudarc's loader, which the design
//! named, looks for `libnccl.so` and `libnccl.so.{13,12,11,10,9,1}` but not `.so.2`, the only
//! name the wheel and Debian's `libnccl2` ship, and it panics when it finds nothing.)

use super::watchdog::{watch, Watched};
use super::{panic_message, CommError, Communicator};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

type NcclResult = c_int;
type RawComm = *mut c_void;
type Stream = *mut c_void;
/// `ncclAllReduce` and `ncclBroadcast`: send and receive buffers, count, data type, the
/// reduction (or the root), communicator and stream.
type Collective = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    RawComm,
    Stream,
) -> NcclResult;

/// `ncclSuccess` and `ncclInProgress` of `nccl.h`.
const SUCCESS: NcclResult = 0;
const IN_PROGRESS: NcclResult = 7;
/// `ncclFloat32` and `ncclSum` of `nccl.h`.
const FLOAT32: c_int = 7;
const SUM: c_int = 0;
/// The device's legacy default stream: libtorch's current stream on every device.
const DEFAULT_STREAM: Stream = std::ptr::null_mut();

/// The entry points of a loaded NCCL (and `cudaSetDevice`, when the CUDA runtime is loaded).
struct Library {
    _handle: libloading::Library,
    source: String,
    get_version: unsafe extern "C" fn(*mut c_int) -> NcclResult,
    error_string: unsafe extern "C" fn(NcclResult) -> *const c_char,
    last_error: unsafe extern "C" fn(RawComm) -> *const c_char,
    comm_init_all: unsafe extern "C" fn(*mut RawComm, c_int, *const c_int) -> NcclResult,
    comm_abort: unsafe extern "C" fn(RawComm) -> NcclResult,
    comm_get_async_error: unsafe extern "C" fn(RawComm, *mut NcclResult) -> NcclResult,
    all_reduce: Collective,
    broadcast: Collective,
    set_device: Option<unsafe extern "C" fn(c_int) -> c_int>,
}

impl Library {
    /// The entry points of `handle`, or the first one it lacks.
    fn bind(handle: libloading::Library, source: String) -> Result<Self, String> {
        /// Safety: `T` is the entry point's C signature in `nccl.h`; the pointer is used
        /// only while `handle`, kept in the `Library`, is loaded.
        unsafe fn entry<T: Copy>(handle: &libloading::Library, name: &str) -> Result<T, String> {
            let symbol = format!("{name}\0");
            handle
                .get::<T>(symbol.as_bytes())
                .map(|symbol| *symbol)
                .map_err(|error| format!("{name}: {error}"))
        }
        // Safety: each signature below is the one `nccl.h` (2.x) and `cuda_runtime_api.h`
        // declare for the symbol.
        unsafe {
            Ok(Self {
                get_version: entry(&handle, "ncclGetVersion")?,
                error_string: entry(&handle, "ncclGetErrorString")?,
                last_error: entry(&handle, "ncclGetLastError")?,
                comm_init_all: entry(&handle, "ncclCommInitAll")?,
                comm_abort: entry(&handle, "ncclCommAbort")?,
                comm_get_async_error: entry(&handle, "ncclCommGetAsyncError")?,
                all_reduce: entry(&handle, "ncclAllReduce")?,
                broadcast: entry(&handle, "ncclBroadcast")?,
                set_device: entry(&handle, "cudaSetDevice").ok(),
                _handle: handle,
                source,
            })
        }
    }

    /// NCCL from this process if libtorch brought it, else from the dynamic loader's paths.
    fn load() -> Result<Self, String> {
        let mut tried = Vec::new();
        let this: libloading::Library = libloading::os::unix::Library::this().into();
        match Self::bind(this, "linked by libtorch".into()) {
            Ok(library) => return Ok(library),
            Err(error) => tried.push(format!("this process ({error})")),
        }
        for name in ["libnccl.so.2", "libnccl.so"] {
            // Safety: loading NCCL runs no initialiser with preconditions.
            match unsafe { libloading::Library::new(name) } {
                Ok(handle) => match Self::bind(handle, name.into()) {
                    Ok(library) => return Ok(library),
                    Err(error) => tried.push(format!("{name} ({error})")),
                },
                Err(error) => tried.push(format!("{name} ({error})")),
            }
        }
        Err(format!("NCCL is not available; tried {}", tried.join("; ")))
    }

    /// NCCL's text for `code`, with the last error it recorded.
    fn describe(&self, code: NcclResult, comm: RawComm) -> String {
        // Safety: both return static or thread-local C strings (or null).
        let text = |pointer: *const c_char| {
            (!pointer.is_null())
                .then(|| {
                    unsafe { CStr::from_ptr(pointer) }
                        .to_string_lossy()
                        .into_owned()
                })
                .filter(|text| !text.is_empty())
        };
        let what = text(unsafe { (self.error_string)(code) }).unwrap_or_default();
        match text(unsafe { (self.last_error)(comm) }) {
            Some(last) if last != what => format!("{what} ({last})"),
            _ => what,
        }
    }

    /// `Ok` for `ncclSuccess`, else the back-end error of `operation`.
    fn check(&self, code: NcclResult, operation: &str, comm: RawComm) -> Result<(), CommError> {
        if code == SUCCESS {
            return Ok(());
        }
        Err(CommError::Backend {
            reason: format!(
                "NCCL {operation} failed: {} (code {code})",
                self.describe(code, comm)
            ),
        })
    }
}

/// The process's NCCL, loaded on first use.
fn library() -> Result<&'static Library, CommError> {
    static LIBRARY: OnceLock<Result<Library, String>> = OnceLock::new();
    LIBRARY
        .get_or_init(Library::load)
        .as_ref()
        .map_err(|reason| CommError::Backend {
            reason: reason.clone(),
        })
}

/// The loaded NCCL's version, as `2.28.9`, and where it was loaded from.
pub fn version() -> Result<(String, String), CommError> {
    let library = library()?;
    let mut code = 0;
    // Safety: writes one int.
    library.check(
        unsafe { (library.get_version)(&mut code) },
        "version",
        std::ptr::null_mut(),
    )?;
    let (major, minor, patch) = (code / 10_000, code % 10_000 / 100, code % 100);
    Ok((format!("{major}.{minor}.{patch}"), library.source.clone()))
}

/// A communicator handle that the watchdog's thread may abort.
#[derive(Clone, Copy)]
struct Handle(RawComm);

impl Handle {
    /// The raw handle (a method, so that a closure captures the `Send` wrapper).
    fn raw(self) -> RawComm {
        self.0
    }
}

// Safety: NCCL allows `ncclCommAbort` from any thread, and each communicator is otherwise
// used by one rank's thread at a time.
unsafe impl Send for Handle {}

/// When each rank left the group: after how many collectives, and why.
#[derive(Debug)]
struct Group {
    world_size: usize,
    timeout: Duration,
    left: Mutex<Vec<Option<(u64, String)>>>,
}

impl Group {
    /// Why collective number `sequence` (from 1) can never complete: the lowest rank that
    /// left before taking part in it.
    fn left_before(&self, sequence: u64) -> Option<CommError> {
        let left = self.left.lock().unwrap_or_else(PoisonError::into_inner);
        left.iter()
            .enumerate()
            .find_map(|(rank, entry)| match entry {
                Some((completed, reason)) if *completed < sequence => Some(CommError::RankFailed {
                    rank,
                    reason: reason.clone(),
                }),
                _ => None,
            })
    }
}

/// One rank of a group of GPUs in this process.
pub struct NcclCommunicator {
    rank: usize,
    device: usize,
    comm: Option<Handle>,
    library: &'static Library,
    group: Arc<Group>,
    completed: u64,
    device_set: bool,
}

impl std::fmt::Debug for NcclCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCommunicator")
            .field("rank", &self.rank)
            .field("device", &self.device)
            .field("completed", &self.completed)
            .finish()
    }
}

impl NcclCommunicator {
    /// The ranks of a new group, rank r on `cuda:devices[r]`; hand one to each thread.
    /// Collectives fail after waiting `timeout` for the others.
    pub fn group(devices: &[usize], timeout: Duration) -> Result<Vec<Self>, CommError> {
        let backend = |reason: String| CommError::Backend { reason };
        let visible = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
        if devices.is_empty() {
            return Err(backend("an NCCL group needs at least one device".into()));
        }
        if let Some(device) = devices.iter().find(|device| **device >= visible) {
            return Err(backend(format!(
                "NCCL cannot use cuda:{device}: this process sees {visible} CUDA device(s)"
            )));
        }
        let mut sorted = devices.to_vec();
        sorted.sort_unstable();
        if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(backend(format!(
                "NCCL takes each GPU once in a group, not {devices:?}"
            )));
        }
        let library = library()?;
        let list: Vec<c_int> = devices.iter().map(|device| *device as c_int).collect();
        let mut comms: Vec<RawComm> = vec![std::ptr::null_mut(); devices.len()];
        // Safety: `comms` has room for one handle per device of `list`.
        let code = unsafe {
            (library.comm_init_all)(comms.as_mut_ptr(), list.len() as c_int, list.as_ptr())
        };
        library.check(code, "communicator creation", std::ptr::null_mut())?;
        let group = Arc::new(Group {
            world_size: devices.len(),
            timeout,
            left: Mutex::new(vec![None; devices.len()]),
        });
        Ok(comms
            .into_iter()
            .zip(devices)
            .enumerate()
            .map(|(rank, (comm, device))| Self {
                rank,
                device: *device,
                comm: Some(Handle(comm)),
                library,
                group: group.clone(),
                completed: 0,
                device_set: false,
            })
            .collect())
    }

    /// This rank's GPU.
    pub fn device(&self) -> Device {
        Device::Cuda(self.device)
    }

    /// Launches a collective with `launch` on this rank's communicator and waits, watched,
    /// until the device has finished it.
    fn run(
        &mut self,
        operation: &str,
        launch: impl FnOnce(&Library, RawComm) -> NcclResult,
    ) -> Result<(), CommError> {
        let sequence = self.completed + 1;
        if let Some(error) = self.group.left_before(sequence) {
            return Err(error);
        }
        let Some(handle) = self.comm else {
            return Err(CommError::Backend {
                reason: "this rank's NCCL communicator was aborted by an earlier failure".into(),
            });
        };
        let library = self.library;
        if !self.device_set {
            // NCCL launches on the communicator's device itself; the calling thread's
            // current device is set too, for the CUDA calls around it.
            if let Some(set_device) = library.set_device {
                // Safety: plain CUDA runtime call on a visible device index.
                unsafe { set_device(self.device as c_int) };
            }
            self.device_set = true;
        }
        library.check(launch(library, handle.0), operation, handle.0)?;
        let device = self.device as i64;
        let group = &self.group;
        let outcome = watch(
            group.timeout,
            || group.left_before(sequence),
            || catch_unwind(AssertUnwindSafe(|| tch::Cuda::synchronize(device))),
            move || {
                // Safety: aborting a communicator from another thread is what NCCL
                // provides it for; the handle is not used again (`comm` is cleared below).
                unsafe { (library.comm_abort)(handle.raw()) };
            },
        );
        match outcome {
            Watched::Aborted(reason) => {
                self.comm = None;
                Err(reason)
            }
            Watched::Finished(Err(payload)) => Err(CommError::Backend {
                reason: format!(
                    "the device failed while running NCCL {operation} ({}): {}",
                    panic_message(payload.as_ref()),
                    self.async_error(handle)
                ),
            }),
            Watched::Finished(Ok(())) => {
                let mut state = SUCCESS;
                // Safety: writes one result code.
                unsafe { (library.comm_get_async_error)(handle.0, &mut state) };
                if state != SUCCESS && state != IN_PROGRESS {
                    return library.check(state, operation, handle.0);
                }
                self.completed = sequence;
                Ok(())
            }
        }
    }

    /// NCCL's asynchronous error on `handle`, as text.
    fn async_error(&self, handle: Handle) -> String {
        let mut state = SUCCESS;
        // Safety: writes one result code.
        unsafe { (self.library.comm_get_async_error)(handle.0, &mut state) };
        if state == SUCCESS {
            "NCCL reports no error of its own".into()
        } else {
            self.library.describe(state, handle.0)
        }
    }

    /// Refuses a tensor NCCL cannot work on in place for this rank.
    fn check_tensor(&self, flat: &Tensor) -> Result<(), CommError> {
        if flat.kind() != Kind::Float || !flat.is_contiguous() || flat.device() != self.device() {
            return Err(CommError::Backend {
                reason: format!(
                    "NCCL reduces contiguous float32 tensors on cuda:{}, not a {:?} tensor on {:?}",
                    self.device,
                    flat.kind(),
                    flat.device()
                ),
            });
        }
        Ok(())
    }
}

impl Communicator for NcclCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.group.world_size
    }

    fn backend(&self) -> String {
        match version() {
            Ok((version, _)) => format!("nccl {version}"),
            Err(_) => "nccl".to_string(),
        }
    }

    fn all_reduce_sum(&mut self, buffer: &mut [f32]) -> Result<(), CommError> {
        let flat = Tensor::from_slice(buffer).to_device(self.device());
        self.all_reduce_sum_tensor(&flat)?;
        flat.to_device(Device::Cpu).copy_data(buffer, buffer.len());
        Ok(())
    }

    fn broadcast(&mut self, buffer: &mut [f32], root: usize) -> Result<(), CommError> {
        let flat = Tensor::from_slice(buffer).to_device(self.device());
        self.broadcast_tensor(&flat, root)?;
        flat.to_device(Device::Cpu).copy_data(buffer, buffer.len());
        Ok(())
    }

    fn all_reduce_sum_tensor(&mut self, flat: &Tensor) -> Result<(), CommError> {
        self.check_tensor(flat)?;
        let (pointer, count) = (flat.data_ptr(), flat.numel());
        self.run("all-reduce", |library, comm| {
            // Safety: `flat` is a contiguous float32 tensor of `count` values on this
            // communicator's device, alive until the collective has finished.
            unsafe {
                (library.all_reduce)(pointer, pointer, count, FLOAT32, SUM, comm, DEFAULT_STREAM)
            }
        })
    }

    fn broadcast_tensor(&mut self, flat: &Tensor, root: usize) -> Result<(), CommError> {
        if root >= self.group.world_size {
            return Err(CommError::Mismatch {
                rank: self.rank,
                expected: self.group.world_size,
                got: root,
            });
        }
        self.check_tensor(flat)?;
        let (pointer, count) = (flat.data_ptr(), flat.numel());
        self.run("broadcast", |library, comm| {
            // Safety: as in `all_reduce_sum_tensor`.
            unsafe {
                (library.broadcast)(
                    pointer,
                    pointer,
                    count,
                    FLOAT32,
                    root as c_int,
                    comm,
                    DEFAULT_STREAM,
                )
            }
        })
    }
}

impl Drop for NcclCommunicator {
    /// A rank that leaves records how many collectives it took part in, so that a rank
    /// still waiting on a later one is aborted at once rather than at the timeout, and
    /// frees its communicator. Abort, not destroy: destroying finalises, which waits on
    /// the other ranks; every collective of this rank has finished by now.
    fn drop(&mut self) {
        let reason = if std::thread::panicking() {
            "it panicked"
        } else {
            "it left the group"
        };
        self.group
            .left
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[self.rank] =
            Some((self.completed, reason.to_string()));
        if let Some(handle) = self.comm.take() {
            // Safety: the handle is not used after this.
            unsafe { (self.library.comm_abort)(handle.0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nccl_loads_from_the_process_when_libtorch_links_it() {
        let cuda_build = crate::build_info::torch_build().variant.starts_with("cu");
        match version() {
            Ok((version, source)) => {
                assert!(version.starts_with("2."), "{version}");
                if cuda_build {
                    assert_eq!(source, "linked by libtorch");
                }
            }
            Err(error) => {
                assert!(!cuda_build, "the CUDA wheels link NCCL: {error}");
                assert!(error.to_string().contains("libnccl.so.2"), "{error}");
            }
        }
    }

    #[test]
    fn a_group_on_gpus_this_process_cannot_see_is_refused_before_nccl_is_called() {
        let visible = tch::Cuda::device_count() as usize;
        let error = NcclCommunicator::group(&[visible], Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the collectives' back-end failed: NCCL cannot use cuda:{visible}: this \
                 process sees {visible} CUDA device(s)"
            )
        );
        let error = NcclCommunicator::group(&[], Duration::from_secs(1)).unwrap_err();
        assert!(error.to_string().contains("at least one device"), "{error}");
    }

    #[test]
    fn a_rank_that_left_fails_the_collectives_it_never_reached() {
        let group = Group {
            world_size: 3,
            timeout: Duration::from_secs(1),
            left: Mutex::new(vec![None, Some((4, "it panicked".into())), None]),
        };
        assert_eq!(
            group.left_before(4),
            None,
            "rank 1 took part in collective 4"
        );
        assert_eq!(
            group.left_before(5),
            Some(CommError::RankFailed {
                rank: 1,
                reason: "it panicked".into()
            })
        );
    }
}
