//! A tiny AML and resource-template decoder, written from ACPI 6.5 §20 and §6.4 independently of
//! the encoder, so the tests check the DSDT against the spec rather than against itself.

use alloc::string::String;
use alloc::vec::Vec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Obj {
    Int(u64),
    Str(String),
    Buf(Vec<u8>),
    Pkg(Vec<Obj>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    Scope { path: String, terms: Vec<Term> },
    Device { name: String, terms: Vec<Term> },
    Name { name: String, value: Obj },
}

impl Term {
    /// The value of `Name(name, …)` among `terms`.
    pub fn find_name<'a>(terms: &'a [Term], name: &str) -> Option<&'a Obj> {
        terms.iter().find_map(|t| match t {
            Term::Name { name: n, value } if n == name => Some(value),
            _ => None,
        })
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self
            .b
            .get(self.at)
            .ok_or_else(|| format!("AML ends at {}", self.at))?;
        self.at += 1;
        Ok(v)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("AML: {n} bytes past {}", self.at))?;
        self.at += n;
        Ok(s)
    }

    /// PkgLength; returns the end offset of the package it starts.
    fn pkg_end(&mut self) -> Result<usize, String> {
        let start = self.at;
        let lead = self.byte()?;
        let follow = usize::from(lead >> 6);
        let mut len = if follow == 0 {
            usize::from(lead & 0x3F)
        } else {
            usize::from(lead & 0x0F)
        };
        for i in 0..follow {
            len |= usize::from(self.byte()?) << (4 + 8 * i);
        }
        let end = start + len;
        if end > self.b.len() {
            return Err(format!("package at {start} of length {len} overruns"));
        }
        Ok(end)
    }

    fn name_seg(&mut self) -> Result<String, String> {
        let seg = self.take(4)?;
        let ok = seg
            .iter()
            .enumerate()
            .all(|(i, &c)| c == b'_' || c.is_ascii_uppercase() || (i > 0 && c.is_ascii_digit()));
        if !ok {
            return Err(format!("bad NameSeg {seg:?}"));
        }
        Ok(String::from_utf8_lossy(seg).into_owned())
    }

    fn name_string(&mut self) -> Result<String, String> {
        let mut s = String::new();
        if self.b.get(self.at) == Some(&b'\\') {
            self.at += 1;
            s.push('\\');
        }
        s.push_str(&self.name_seg()?);
        Ok(s)
    }

    fn obj(&mut self) -> Result<Obj, String> {
        let op = self.byte()?;
        Ok(match op {
            0x00 => Obj::Int(0),
            0x01 => Obj::Int(1),
            0xFF => Obj::Int(u64::MAX),
            0x0A => Obj::Int(u64::from(self.byte()?)),
            0x0B => Obj::Int(u64::from(u16::from_le_bytes(
                self.take(2)?.try_into().unwrap(),
            ))),
            0x0C => Obj::Int(u64::from(u32::from_le_bytes(
                self.take(4)?.try_into().unwrap(),
            ))),
            0x0E => Obj::Int(u64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            0x0D => {
                let mut s = String::new();
                loop {
                    match self.byte()? {
                        0 => break,
                        c if c < 0x80 => s.push(char::from(c)),
                        c => return Err(format!("non-ASCII {c:#x} in string")),
                    }
                }
                Obj::Str(s)
            }
            0x11 => {
                let end = self.pkg_end()?;
                let Obj::Int(size) = self.obj()? else {
                    return Err("buffer size is not an integer".into());
                };
                let bytes = self.take(end - self.at)?.to_vec();
                if bytes.len() as u64 != size {
                    return Err(format!("buffer says {size} bytes, has {}", bytes.len()));
                }
                Obj::Buf(bytes)
            }
            0x12 => {
                let end = self.pkg_end()?;
                let count = usize::from(self.byte()?);
                let mut items = Vec::new();
                while self.at < end {
                    items.push(self.obj()?);
                }
                if items.len() != count || self.at != end {
                    return Err(format!(
                        "package says {count} elements, has {}",
                        items.len()
                    ));
                }
                Obj::Pkg(items)
            }
            op => return Err(format!("unexpected data opcode {op:#x}")),
        })
    }

    fn terms(&mut self, end: usize) -> Result<Vec<Term>, String> {
        let mut out = Vec::new();
        while self.at < end {
            let op = self.byte()?;
            out.push(match op {
                0x08 => Term::Name {
                    name: self.name_seg()?,
                    value: self.obj()?,
                },
                0x10 => {
                    let end = self.pkg_end()?;
                    let path = self.name_string()?;
                    Term::Scope {
                        path,
                        terms: self.terms(end)?,
                    }
                }
                0x5B if self.byte()? == 0x82 => {
                    let end = self.pkg_end()?;
                    let name = self.name_seg()?;
                    Term::Device {
                        name,
                        terms: self.terms(end)?,
                    }
                }
                op => return Err(format!("unexpected term opcode {op:#x} at {}", self.at - 1)),
            });
        }
        if self.at != end {
            return Err(format!("terms end at {} instead of {end}", self.at));
        }
        Ok(out)
    }
}

/// Decodes a TermList that fills all of `aml`.
pub fn parse(aml: &[u8]) -> Result<Vec<Term>, String> {
    Cursor { b: aml, at: 0 }.terms(aml.len())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Res {
    Io {
        min: u16,
        max: u16,
        align: u8,
        len: u8,
    },
    Irq {
        mask: u16,
    },
    Mem32Fixed {
        writable: bool,
        base: u32,
        len: u32,
    },
    ExtIrq {
        flags: u8,
        gsis: Vec<u32>,
    },
}

/// Decodes a resource template; checks the end tag's checksum.
pub fn resources(buf: &[u8]) -> Result<Vec<Res>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    let le16 = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let le32 = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    loop {
        let tag = *buf.get(at).ok_or("template has no end tag")?;
        if tag & 0x80 == 0 {
            let kind = (tag >> 3) & 0xF;
            let len = usize::from(tag & 7);
            let d = buf
                .get(at + 1..at + 1 + len)
                .ok_or("small descriptor overruns")?;
            match (kind, len) {
                (0xF, 1) => {
                    let sum = buf[..at + 2].iter().fold(0u8, |s, &b| s.wrapping_add(b));
                    if sum != 0 {
                        return Err(format!("template checksum leaves {sum:#x}"));
                    }
                    if at + 2 != buf.len() {
                        return Err("bytes after the end tag".into());
                    }
                    return Ok(out);
                }
                (0x8, 7) => out.push(Res::Io {
                    min: le16(d, 1),
                    max: le16(d, 3),
                    align: d[5],
                    len: d[6],
                }),
                (0x4, 2) => out.push(Res::Irq { mask: le16(d, 0) }),
                _ => return Err(format!("unknown small descriptor {tag:#x}")),
            }
            at += 1 + len;
        } else {
            let len = usize::from(le16(buf.get(at + 1..at + 3).ok_or("large header")?, 0));
            let d = buf
                .get(at + 3..at + 3 + len)
                .ok_or("large descriptor overruns")?;
            match tag {
                0x86 if len == 9 => out.push(Res::Mem32Fixed {
                    writable: d[0] & 1 != 0,
                    base: le32(d, 1),
                    len: le32(d, 5),
                }),
                0x89 => {
                    let count = usize::from(d[1]);
                    if len != 2 + 4 * count {
                        return Err(format!("extended IRQ of length {len} for {count} GSIs"));
                    }
                    let gsis = (0..count).map(|i| le32(d, 2 + 4 * i)).collect();
                    out.push(Res::ExtIrq { flags: d[0], gsis });
                }
                _ => return Err(format!("unknown large descriptor {tag:#x}")),
            }
            at += 3 + len;
        }
    }
}
