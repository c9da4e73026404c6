//! An anonymous file in memory, which ONNX Runtime writes to by path: no
//! folder needs to be writable, and nothing is left behind.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A `memfd`, named to ONNX Runtime by its `/proc/self/fd` path.
#[derive(Debug)]
pub(crate) struct File {
    file: std::fs::File,
    path: PathBuf,
}

impl File {
    #[cfg(target_os = "linux")]
    pub(crate) fn new() -> io::Result<Self> {
        use rustix::fs::{MemfdFlags, memfd_create};
        use std::os::fd::AsRawFd;

        let file = std::fs::File::from(memfd_create(c"preflight-model", MemfdFlags::CLOEXEC)?);
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        // Without /proc mounted the file has no path to be written by.
        std::fs::metadata(&path)?;
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
    pub(crate) fn path(&self) -> &Path {
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_by_its_path_is_read_back() {
        let mut file = File::new().expect("a memfd");
        std::fs::write(file.path(), b"ORTM and the rest").expect("written by path");
        assert_eq!(file.read().expect("read back"), b"ORTM and the rest");
    }
}
