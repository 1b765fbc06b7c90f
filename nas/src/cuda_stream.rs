//! A CUDA stream of a thread's own, for trials that share a GPU: libtorch enqueues every
//! kernel and copy of a thread on that thread's current stream (per device), and tch offers
//! no call to change it. c10 does (`getStreamFromPool`, `setCurrentCUDAStream`); they are
//! exported by `libc10_cuda`, which the CUDA builds of libtorch load into this process, and
//! are looked up there at run time, so a CPU build runs without them.
//!
//! With a stream of its own, a trial's kernels can run beside those of the other trials on
//! the card instead of queueing behind them on the device's default stream. Everything a
//! trial thread does on the device then goes to its stream, its batch copies included, and
//! libtorch's caching allocator keeps the memory of each stream apart, so no other stream
//! reuses a block the trial still reads.
//!
//! The C++ signatures are those of PyTorch 2.11.0, the one libtorch this build links.
//! `CUDAStream` is trivially copyable (a `c10::Stream`: device type and index, one byte each,
//! and a 64-bit stream id), so it travels in two registers as the `#[repr(C)]` struct below.
//! The machine code of that release's `libc10_cuda.so` agrees: `getStreamFromPool` returns
//! `1 | index << 8` (CUDA, device index) in `rax` and the stream id in `rdx`, and
//! `setCurrentCUDAStream` takes the device index from the second byte of `rdi` and the id
//! from `rsi` (`objdump -d` of the two symbols below).

use std::ffi::c_void;
use std::sync::OnceLock;

/// `c10::cuda::CUDAStream`, as it travels by value.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawStream {
    device_type: i8,
    device_index: i8,
    id: i64,
}

/// The c10 entry points, from this process.
struct Api {
    _process: libloading::Library,
    /// `c10::cuda::getStreamFromPool(bool isHighPriority, DeviceIndex)`.
    from_pool: unsafe extern "C" fn(bool, i8) -> RawStream,
    /// `c10::cuda::getCurrentCUDAStream(DeviceIndex)`.
    current: unsafe extern "C" fn(i8) -> RawStream,
    /// `c10::cuda::setCurrentCUDAStream(CUDAStream)`.
    set_current: unsafe extern "C" fn(RawStream),
    /// `c10::cuda::CUDAStream::stream() const`: the `cudaStream_t`.
    handle: unsafe extern "C" fn(*const RawStream) -> *mut c_void,
}

impl Api {
    fn load() -> Result<Self, String> {
        let process: libloading::Library = libloading::os::unix::Library::this().into();
        /// Safety: `T` is the symbol's signature as this module's documentation gives it.
        unsafe fn entry<T: Copy>(process: &libloading::Library, name: &str) -> Result<T, String> {
            let symbol = format!("{name}\0");
            process
                .get::<T>(symbol.as_bytes())
                .map(|symbol| *symbol)
                .map_err(|_| {
                    format!("this libtorch exports no {name} (a CPU build has no CUDA streams)")
                })
        }
        // Safety: the mangled names are those of the signatures declared on the fields.
        unsafe {
            Ok(Self {
                from_pool: entry(&process, "_ZN3c104cuda17getStreamFromPoolEba")?,
                current: entry(&process, "_ZN3c104cuda20getCurrentCUDAStreamEa")?,
                set_current: entry(
                    &process,
                    "_ZN3c104cuda20setCurrentCUDAStreamENS0_10CUDAStreamE",
                )?,
                handle: entry(&process, "_ZNK3c104cuda10CUDAStream6streamEv")?,
                _process: process,
            })
        }
    }
}

/// The process's c10 stream calls, looked up on first use.
fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(Api::load).as_ref().map_err(Clone::clone)
}

/// Whether this process can give threads streams of their own (a CUDA libtorch), or why not.
pub fn available() -> Result<(), String> {
    api().map(drop)
}

/// The device index c10 takes, for a device this process sees.
fn device_index(device: usize) -> Result<i8, String> {
    let visible = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
    if device >= visible {
        return Err(format!(
            "no stream on cuda:{device}: this process sees {visible} CUDA device(s)"
        ));
    }
    i8::try_from(device).map_err(|_| format!("cuda:{device} is beyond c10's device indices"))
}

/// A stream of the calling thread's own on one GPU, current for the thread while this value
/// lives; dropping it makes the stream that was current before current again.
#[derive(Debug)]
pub struct OwnStream {
    stream: RawStream,
    before: RawStream,
}

impl OwnStream {
    /// Takes a stream from c10's pool for `cuda:device` and makes it the calling thread's
    /// current stream there.
    pub fn enter(device: usize) -> Result<Self, String> {
        let api = api()?;
        let index = device_index(device)?;
        // Safety: c10 calls on a device index checked to be visible (they would otherwise
        // throw a C++ exception, which aborts the process here).
        unsafe {
            let before = (api.current)(index);
            let stream = (api.from_pool)(false, index);
            (api.set_current)(stream);
            Ok(Self { stream, before })
        }
    }

    /// The stream's `cudaStream_t`.
    pub fn handle(&self) -> *mut c_void {
        current_handle_of(&self.stream)
    }
}

impl Drop for OwnStream {
    fn drop(&mut self) {
        if let Ok(api) = api() {
            // Safety: restores a stream c10 itself returned for this device.
            unsafe { (api.set_current)(self.before) };
        }
    }
}

/// The `cudaStream_t` of `stream` (null where c10 is absent).
fn current_handle_of(stream: &RawStream) -> *mut c_void {
    match api() {
        // Safety: `stream` is a value c10 returned.
        Ok(api) => unsafe { (api.handle)(stream) },
        Err(_) => std::ptr::null_mut(),
    }
}

/// The `cudaStream_t` the calling thread's libtorch work on `cuda:device` goes to.
pub fn current_handle(device: usize) -> Result<*mut c_void, String> {
    let api = api()?;
    let index = device_index(device)?;
    // Safety: a c10 call on a visible device index.
    let stream = unsafe { (api.current)(index) };
    Ok(current_handle_of(&stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cuda_libtorch_exports_the_stream_calls() {
        let cuda_build = crate::build_info::torch_build().variant.starts_with("cu");
        if let Err(reason) = available() {
            assert!(!cuda_build, "a CUDA libtorch exports them: {reason}");
            assert!(reason.contains("CPU build"), "{reason}");
        }
    }

    #[test]
    fn a_stream_on_a_gpu_this_process_cannot_see_is_refused_before_c10_is_called() {
        let visible = tch::Cuda::device_count() as usize;
        let error = OwnStream::enter(visible).unwrap_err();
        if available().is_ok() {
            assert_eq!(
                error,
                format!("no stream on cuda:{visible}: this process sees {visible} CUDA device(s)")
            );
        }
        assert!(current_handle(visible).is_err());
    }

    /// c10 takes a stream whose id is even and not zero for a `cudaStream_t` made outside
    /// it, and `stream()` hands that id back without a CUDA call: so the binding's layout and
    /// calling convention are checked on any machine with a CUDA libtorch. The default
    /// stream (id 0) is the null `cudaStream_t`.
    #[test]
    fn the_stream_travels_as_c10_lays_it_out() {
        assert_eq!(std::mem::size_of::<RawStream>(), 16);
        assert_eq!(std::mem::align_of::<RawStream>(), 8);
        if available().is_err() {
            return;
        }
        let external = RawStream {
            device_type: 1,
            device_index: 0,
            id: 0x7f3a_5e00,
        };
        assert_eq!(current_handle_of(&external) as usize, 0x7f3a_5e00);
        let default = RawStream { id: 0, ..external };
        assert!(current_handle_of(&default).is_null());
    }
}
