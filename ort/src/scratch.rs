//! An anonymous file in memory, which ONNX Runtime writes to by path: no
//! folder needs to be writable, and nothing is left behind.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// A `memfd`, named to ONNX Runtime by its `/proc/self/fd` path.
#[derive(Debug)]
pub(crate) struct File {
    file: std::fs::File,
    path: PathBuf,
}

impl File {
    #[cfg(target_os = "linux")]
    pub(crate) fn new() -> io::Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd};

        // SAFETY: the name is a NUL-terminated literal; the call returns a
        // new descriptor, or -1 with errno set.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::memfd_create(c"preflight-model".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is open and owned by nothing else.
        #[allow(unsafe_code)]
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        Ok(Self { file, path })
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn new() -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "in-memory files are made on Linux only",
        ))
    }

    /// The path another writer opens the file by.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Everything written to the file.
    pub(crate) fn read(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}
