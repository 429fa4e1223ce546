//! The demo's most real console: a QEMU virtual machine (software
//! emulation, Debian's `qemu-system-x86`) whose VNC server listens on a Unix
//! socket, bridged by the ESXi stand-in on `/ticket/<t>` (QEMU's own VNC
//! WebSocket answers only on `/`).
//!
//! The VM boots SeaBIOS and then a 512-byte boot sector written here (no OS,
//! no download): it paints a banner and colour bars with the BIOS and echoes
//! whatever is typed, so keystrokes through the gateway visibly reach the VM.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mksgate_testkit::process::Proc;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// The QEMU binary: `$MKSGATE_QEMU`, else `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MKSGATE_QEMU").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
}

/// Real-mode code of the boot sector (GNU as, `.code16`, loaded at 0x7c00):
///
/// ```text
///     cli; xor %ax,%ax; mov %ax,%ds; mov %ax,%es; mov %ax,%ss
///     mov $0x7c00,%sp; sti
///     mov $0x0003,%ax; int $0x10            # 80x25 colour text
///     mov $0x0600,%ax; mov $0x1f,%bh        # clear: white on blue
///     xor %cx,%cx; mov $0x184f,%dx; int $0x10
///     mov $0x0600,%ax; mov $0x30,%bh        # title bar: black on cyan
///     xor %cx,%cx; mov $0x004f,%dx; int $0x10
///     mov $0x0600,%ax; mov $0x1400,%cx      # 8 colour bars, rows 20-23
///     mov $0x1709,%dx; mov $0x4f,%bh; mov $8,%si
/// bars: int $0x10; add $10,%cl; add $10,%dl; add $0x10,%bh; and $0x7f,%bh
///     mov $0x0600,%ax; dec %si; jnz bars
///     mov $lines,%si                        # records: row col attr len text
/// text: lodsb; cmp $0xff,%al; je cursor
///     mov %al,%dh; lodsb; mov %al,%dl; lodsb; mov %al,%bl; lodsb
///     xor %ch,%ch; mov %al,%cl; mov %si,%bp; add %cx,%si
///     mov $0x1301,%ax; xor %bh,%bh; int $0x10   # write string
///     jmp text
/// cursor: mov $0x02,%ah; xor %bh,%bh; mov $0x0902,%dx; int $0x10
/// input: xor %ah,%ah; int $0x16             # wait for a key
///     mov $0x0e,%ah; xor %bh,%bh; int $0x10 # echo it
///     cmp $0x0d,%al; jne input
///     mov $0x0e0a,%ax; int $0x10; jmp input
/// lines:                                    # = 0x7c8c, built below
/// ```
const BOOT_CODE: [u8; 140] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xfb, 0xb8, 0x03, 0x00,
    0xcd, 0x10, 0xb8, 0x00, 0x06, 0xb7, 0x1f, 0x31, 0xc9, 0xba, 0x4f, 0x18, 0xcd, 0x10, 0xb8, 0x00,
    0x06, 0xb7, 0x30, 0x31, 0xc9, 0xba, 0x4f, 0x00, 0xcd, 0x10, 0xb8, 0x00, 0x06, 0xb9, 0x00, 0x14,
    0xba, 0x09, 0x17, 0xb7, 0x4f, 0xbe, 0x08, 0x00, 0xcd, 0x10, 0x80, 0xc1, 0x0a, 0x80, 0xc2, 0x0a,
    0x80, 0xc7, 0x10, 0x80, 0xe7, 0x7f, 0xb8, 0x00, 0x06, 0x4e, 0x75, 0xec, 0xbe, 0x8c, 0x7c, 0xac,
    0x3c, 0xff, 0x74, 0x1a, 0x88, 0xc6, 0xac, 0x88, 0xc2, 0xac, 0x88, 0xc3, 0xac, 0x30, 0xed, 0x88,
    0xc1, 0x89, 0xf5, 0x01, 0xce, 0xb8, 0x01, 0x13, 0x30, 0xff, 0xcd, 0x10, 0xeb, 0xe1, 0xb4, 0x02,
    0x30, 0xff, 0xba, 0x02, 0x09, 0xcd, 0x10, 0x30, 0xe4, 0xcd, 0x16, 0xb4, 0x0e, 0x30, 0xff, 0xcd,
    0x10, 0x3c, 0x0d, 0x75, 0xf2, 0xb8, 0x0a, 0x0e, 0xcd, 0x10, 0xeb, 0xeb,
];

/// Text the boot sector writes: (row, column, attribute, text).
const BOOT_LINES: [(u8, u8, u8, &str); 4] = [
    (
        0,
        1,
        0x30,
        "mksgate demo VM (QEMU, SeaBIOS)           a console behind an ESXi stand-in",
    ),
    (
        3,
        2,
        0x1f,
        "You reached this VM through Envoy and the mksgate filter with",
    ),
    (
        4,
        2,
        0x1f,
        "a signed one-time link: browser -> gateway -> stand-in -> VM.",
    ),
    (7, 2, 0x1e, "Type here (Enter for a new line):"),
];

/// The demo VM's disk: the boot sector, padded to 64 KiB.
pub fn boot_disk() -> Result<Vec<u8>> {
    let mut disk = BOOT_CODE.to_vec();
    for (row, col, attr, text) in BOOT_LINES {
        let len = u8::try_from(text.len()).context("boot text too long")?;
        disk.extend_from_slice(&[row, col, attr, len]);
        disk.extend_from_slice(text.as_bytes());
    }
    disk.push(0xff);
    if disk.len() > 510 {
        bail!("boot sector overflows: {} bytes", disk.len());
    }
    disk.resize(510, 0);
    disk.extend_from_slice(&[0x55, 0xaa]);
    disk.resize(64 * 1024, 0);
    Ok(disk)
}

/// A running QEMU VM; dropping it stops QEMU (its whole process group, the
/// testkit's `Proc`).
#[derive(Debug)]
pub struct Qemu {
    proc: Proc,
    socket: PathBuf,
    disk: PathBuf,
    version: String,
}

impl Qemu {
    /// Start the demo VM with `bin`, files in `dir`; returns once its VNC
    /// server answers on the Unix socket (at most 20 s).
    pub async fn start(bin: &Path, dir: &Path) -> Result<Qemu> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let pid = std::process::id();
        let disk = dir.join(format!("demo-vm-{pid}.img"));
        std::fs::write(&disk, boot_disk()?)
            .with_context(|| format!("writing {}", disk.display()))?;
        // A Unix socket path must fit in sun_path (108 bytes).
        let mut socket = dir.join(format!("qemu-vnc-{pid}.sock"));
        if socket.as_os_str().len() > 100 {
            socket = std::env::temp_dir().join(format!("mksgate-demo-vnc-{pid}.sock"));
        }
        let _ = std::fs::remove_file(&socket);
        let log = dir.join(format!("qemu-{pid}.log"));
        let version = Command::new(bin)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_default();
        let mut cmd = Command::new(bin);
        cmd.args(["-name", "mksgate-demo-vm"])
            .args(["-nodefaults", "-no-user-config"])
            .args(["-machine", "accel=tcg", "-m", "32"])
            .args(["-vga", "std", "-display", "none"])
            .arg("-vnc")
            .arg(format!("unix:{}", socket.display()))
            .args(["-nic", "none"])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=ide,snapshot=on",
                disk.display()
            ))
            .stdin(Stdio::null());
        let mut qemu = Qemu {
            proc: Proc::spawn("qemu", cmd, &log)?,
            socket,
            disk,
            version,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = qemu.proc.exited() {
                bail!(
                    "QEMU exited at start ({status}): {}",
                    std::fs::read_to_string(&qemu.proc.log)
                        .unwrap_or_default()
                        .trim()
                );
            }
            if let Ok(mut s) = UnixStream::connect(&qemu.socket).await {
                let mut hello = [0u8; 12];
                let read = tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut hello));
                if matches!(read.await, Ok(Ok(_))) && hello.starts_with(b"RFB ") {
                    return Ok(qemu);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "QEMU's VNC server did not answer on {} within 20 s",
                    qemu.socket.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The VNC server's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `QEMU emulator version ...`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Process id (also its process group).
    pub fn pid(&self) -> u32 {
        u32::try_from(self.proc.pid()).unwrap_or(0)
    }

    /// Stop QEMU: SIGTERM to its process group, SIGKILL after 3 s; remove
    /// its files.
    pub fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(3));
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.disk);
        let _ = std::fs::remove_file(&self.proc.log);
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_disk_is_a_valid_boot_sector() {
        let d = boot_disk().unwrap();
        assert_eq!(d.len(), 64 * 1024);
        assert_eq!(&d[510..512], &[0x55, 0xaa]);
        // `mov $lines,%si` points right after the code.
        assert_eq!(&BOOT_CODE[76..79], &[0xbe, 0x8c, 0x7c]);
        assert_eq!(0x7c00 + BOOT_CODE.len(), 0x7c8c);
        assert_eq!(d[BOOT_CODE.len()], 0); // first record: row 0
    }
}
