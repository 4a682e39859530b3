//! A small tmpfs a test can fill to the last byte: how the fail-closed
//! tests give an audit log a full disk. Mounting needs root; CI runs as
//! root, and a test that cannot mount fails rather than passing unchecked.

use std::path::{Path, PathBuf};

/// A mounted 256 KiB tmpfs, unmounted on drop.
pub struct SmallFs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts the tmpfs, or says why it could not (run the tests as root).
    pub fn mount() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .status()
            .map_err(|e| anyhow::anyhow!("cannot run mount: {e}"))?;
        anyhow::ensure!(
            status.success(),
            "cannot mount a tmpfs at {} ({status}): the fail-closed tests need root",
            dir.path().display()
        );
        Ok(SmallFs {
            path: dir.path().to_path_buf(),
            _dir: dir,
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills the filesystem to the last byte.
    pub fn fill(&self) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path.join("filler"))?;
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..1]).is_ok() {}
        let _ = f.sync_all();
        Ok(())
    }

    /// Gives the space back.
    pub fn free(&self) -> std::io::Result<()> {
        std::fs::remove_file(self.path.join("filler"))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}
