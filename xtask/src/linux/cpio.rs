//! A writer for the "newc" cpio format, the only archive format Linux unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst). Entries carry no owner and a
//! zero time stamp, so the same inputs always give the same bytes.

/// Every newc header starts with this magic (the variant without checksums).
const MAGIC: &str = "070701";
/// The header is the magic plus thirteen 8-digit hexadecimal fields.
const HEADER_FIELDS: usize = 13;
/// Names and file data are each padded to a multiple of this many bytes.
const ALIGN: usize = 4;
/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode` (POSIX `<sys/stat.h>`).
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// A newc archive being built in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

/// One entry's header fields that differ between entry kinds.
struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    data_len: usize,
    rdev: (u32, u32),
}

impl Archive {
    pub fn new() -> Self {
        Self {
            bytes: Vec::new(),
            // Inode 0 is read as "no inode" by some tools; start at 1.
            next_inode: 1,
        }
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(ALIGN) {
            self.bytes.push(0);
        }
    }

    fn push_entry(&mut self, header: &Header, data: &[u8]) -> Result<(), String> {
        let name = header.name.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(format!("cpio: bad entry name {:?}", header.name));
        }
        // newc size fields are 32 bits wide.
        let size = u32::try_from(header.data_len)
            .map_err(|_| format!("cpio: {name} is larger than 4 GiB"))?;
        let name_size = u32::try_from(name.len() + 1)
            .map_err(|_| format!("cpio: the name {name} is too long"))?;
        let inode = self.next_inode;
        self.next_inode += 1;
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check.
        let fields: [u32; HEADER_FIELDS] = [
            inode,
            header.mode,
            0,
            0,
            header.nlink,
            0,
            size,
            0,
            0,
            header.rdev.0,
            header.rdev.1,
            name_size,
            0,
        ];
        self.bytes.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    /// A directory with permissions `perm` (e.g. 0o755).
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), String> {
        let header = Header {
            name,
            mode: S_IFDIR | perm,
            nlink: 2,
            data_len: 0,
            rdev: (0, 0),
        };
        self.push_entry(&header, &[])
    }

    /// A regular file with permissions `perm` and contents `data`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), String> {
        let header = Header {
            name,
            mode: S_IFREG | perm,
            nlink: 1,
            data_len: data.len(),
            rdev: (0, 0),
        };
        self.push_entry(&header, data)
    }

    /// A symbolic link `name` pointing at `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), String> {
        let header = Header {
            name,
            mode: S_IFLNK | 0o777,
            nlink: 1,
            data_len: target.len(),
            rdev: (0, 0),
        };
        self.push_entry(&header, target.as_bytes())
    }

    /// A character device node (`major`, `minor`) with permissions `perm`.
    pub fn char_device(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), String> {
        let header = Header {
            name,
            mode: S_IFCHR | perm,
            nlink: 1,
            data_len: 0,
            rdev: (major, minor),
        };
        self.push_entry(&header, &[])
    }

    /// Ends the archive with its trailer entry and returns its bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        let header = Header {
            name: TRAILER,
            mode: 0,
            nlink: 1,
            data_len: 0,
            rdev: (0, 0),
        };
        self.push_entry(&header, &[])?;
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back (name, mode, rdev major, data) of each entry, checking the layout rules.
    fn entries(bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(&bytes[at..at + 6], MAGIC.as_bytes());
            let field = |i: usize| {
                let start = at + 6 + i * 8;
                u32::from_str_radix(std::str::from_utf8(&bytes[start..start + 8]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, rdev_major, name_size) = (field(1), field(6), field(9), field(11));
            let name_start = at + 110;
            let name =
                String::from_utf8(bytes[name_start..name_start + name_size as usize - 1].to_vec())
                    .unwrap();
            let data_start = (name_start + name_size as usize).next_multiple_of(ALIGN);
            let data = bytes[data_start..data_start + size as usize].to_vec();
            at = (data_start + size as usize).next_multiple_of(ALIGN);
            if name == TRAILER {
                assert_eq!(at, bytes.len());
                return out;
            }
            out.push((name, mode, rdev_major, data));
        }
    }

    #[test]
    fn entries_round_trip_with_newc_padding() {
        let mut a = Archive::new();
        a.dir("/bin", 0o755).unwrap();
        a.file("bin/busybox", 0o755, b"12345").unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a.char_device("dev/console", 0o600, 5, 1).unwrap();
        let bytes = a.finish().unwrap();
        assert_eq!(bytes.len() % ALIGN, 0);
        let got = entries(&bytes);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, "bin");
        assert_eq!(got[0].1, S_IFDIR | 0o755);
        assert_eq!(
            got[1],
            ("bin/busybox".into(), S_IFREG | 0o755, 0, b"12345".to_vec())
        );
        assert_eq!(
            got[2],
            ("bin/sh".into(), S_IFLNK | 0o777, 0, b"busybox".to_vec())
        );
        assert_eq!(got[3].1, S_IFCHR | 0o600);
        assert_eq!(got[3].2, 5);
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let build = || {
            let mut a = Archive::new();
            a.file("init", 0o755, b"#!/bin/sh\n").unwrap();
            a.finish().unwrap()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn bad_names_are_refused() {
        let mut a = Archive::new();
        assert!(a.file("/", 0o644, b"").is_err());
        assert!(a.file("a\0b", 0o644, b"").is_err());
    }
}
