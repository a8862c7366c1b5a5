//! The consumer side of the BPF ring buffer, mapped a window at a time.
//!
//! A BPF ring buffer's data pages are mapped twice in a row (so a record that
//! wraps around the end reads as one slice), and the kernel maps every page
//! of a mapping when it is made (`remap_vmalloc_range`): a reader that maps
//! the whole ring, as aya's `RingBuf` does, carries twice the ring size in
//! its RSS from the start (64 MiB for the default 32 MiB ring) although the
//! memory is the kernel's and exists once. This reader maps the consumer
//! position, the producer position and a window of the data (at most
//! [`WINDOW`] bytes) that it moves forward as it reads; the ring keeps its
//! full size in the kernel, so bursts are absorbed exactly as before.
//!
//! Record format (kernel/bpf/ringbuf.c): an 8-byte header, `u32 len` with a
//! busy bit (being written) and a discard bit, and `u32 pg_off`; then `len`
//! bytes; each record starts 8-byte aligned. Positions are `unsigned long`
//! counters; a position modulo the ring size is the offset in the data.
//!
//! With the decoder, this is the only `unsafe` in sysql: mapping and
//! unmapping, and reading the positions and records the kernel writes.

use aya::maps::MapData;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// The most data bytes mapped at a time. Moving the window costs an
/// munmap and an mmap of this many bytes (about 0.1 us per page), once per
/// `WINDOW` bytes of records read.
pub const WINDOW: usize = 4 << 20;

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HEADER: usize = 8;

struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
}

impl Mapping {
    fn new(fd: impl AsFd, len: usize, writable: bool, offset: usize) -> std::io::Result<Mapping> {
        let prot = if writable { ProtFlags::PROT_READ | ProtFlags::PROT_WRITE } else { ProtFlags::PROT_READ };
        let length = NonZeroUsize::new(len).ok_or_else(|| std::io::Error::other("empty mapping"))?;
        let offset = i64::try_from(offset).map_err(std::io::Error::other)?;
        // SAFETY: a new shared mapping of the ring buffer map's fd at an
        // address the kernel chooses; nothing else refers to it yet.
        let ptr = unsafe { mmap(None, length, prot, MapFlags::MAP_SHARED, fd, offset) }?;
        Ok(Mapping { ptr, len })
    }

    fn at(&self, off: usize) -> *const u8 {
        debug_assert!(off < self.len);
        // SAFETY (of the callers' reads): `off` is inside the mapping.
        unsafe { (self.ptr.as_ptr() as *const u8).add(off) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Mapping::new` with this length,
        // and no borrow of it outlives `self`.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

/// The ring buffer's reader.
pub struct Ring {
    map: MapData,
    consumer: Mapping,
    producer: Mapping,
    /// Data offsets `window_start .. window_start + window.len` (which may
    /// run past the ring size into the second mapping of the data).
    window: Mapping,
    window_start: usize,
    size: usize,
    page: usize,
    /// The consumer position as this reader knows it, and the last producer
    /// position read.
    cons: u64,
    prod: u64,
}

// SAFETY: the mappings are owned by the Ring and only read or written
// through `&mut self`; the kernel is the only other party.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps the ring buffer of `map`, whose data is `size` bytes.
    pub fn new(map: MapData, size: usize) -> std::io::Result<Ring> {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(4096);
        if !size.is_power_of_two() || size < page {
            return Err(std::io::Error::other(format!("ring buffer size {size} is not a power of two pages")));
        }
        let fd = map.fd().as_fd();
        let consumer = Mapping::new(fd, page, true, 0)?;
        let producer = Mapping::new(fd, page, false, page)?;
        let window = Mapping::new(fd, WINDOW.min(size), false, 2 * page)?;
        // SAFETY: the consumer page starts with the kernel's consumer position.
        let cons = unsafe { &*(consumer.at(0) as *const AtomicU64) }.load(Ordering::Acquire);
        Ok(Ring { map, consumer, producer, window, window_start: 0, size, page, cons, prod: cons })
    }

    fn producer_pos(&self) -> u64 {
        // SAFETY: the producer page starts with the producer position, an
        // aligned 8-byte counter the kernel updates atomically.
        unsafe { &*(self.producer.at(0) as *const AtomicU64) }.load(Ordering::Acquire)
    }

    fn publish_consumer(&self) {
        // SAFETY: as for the producer position; this reader is its only writer.
        unsafe { &*(self.consumer.at(0) as *const AtomicU64) }.store(self.cons, Ordering::Release);
    }

    /// Makes the window hold data offsets `off .. off + len`.
    fn cover(&mut self, off: usize, len: usize) -> std::io::Result<()> {
        let end = self.window_start + self.window.len;
        if off >= self.window_start && off + len <= end {
            return Ok(());
        }
        let start = off & !(self.page - 1);
        let need = (off + len - start).next_multiple_of(self.page);
        let window_len = need.max(WINDOW.min(self.size)).min(2 * self.size - start);
        // Unmap the old window first, so the two never add up in RSS.
        let fd = self.map.fd().as_fd();
        let placeholder = Mapping::new(fd, self.page, false, self.page)?;
        drop(std::mem::replace(&mut self.window, placeholder));
        self.window = Mapping::new(fd, window_len, false, 2 * self.page + start)?;
        self.window_start = start;
        Ok(())
    }

    /// Hands up to `max` waiting records to `f`, in order. Returns how many.
    pub fn drain(&mut self, max: usize, f: &mut impl FnMut(&[u8])) -> std::io::Result<usize> {
        let mut n = 0;
        let mut consumed = false;
        while n < max {
            if self.cons == self.prod {
                if consumed {
                    self.publish_consumer();
                    consumed = false;
                    // The kernel decides on a wake-up from the consumer
                    // position after it moves the producer's: order this
                    // store before the next load, as it does.
                    fence(Ordering::SeqCst);
                }
                self.prod = self.producer_pos();
                if self.cons == self.prod {
                    break;
                }
            }
            let off = (self.cons as usize) & (self.size - 1);
            self.cover(off, HEADER)?;
            // SAFETY: `cover` mapped the header; it is 8-byte aligned, and
            // the kernel writes its first word atomically (commit).
            let header = unsafe { &*(self.window.at(off - self.window_start) as *const AtomicU32) };
            let word = header.load(Ordering::Acquire);
            if word & BUSY_BIT != 0 {
                break;
            }
            let len = (word & !(BUSY_BIT | DISCARD_BIT)) as usize;
            let total = (HEADER + len).next_multiple_of(8);
            if total > self.size {
                return Err(std::io::Error::other(format!(
                    "ring buffer record of {len} bytes in a {}-byte ring",
                    self.size
                )));
            }
            if word & DISCARD_BIT == 0 {
                self.cover(off, total)?;
                let at = off - self.window_start + HEADER;
                // SAFETY: `cover` mapped the whole record; the kernel does
                // not touch a committed record until the consumer position
                // passes it, which happens below, after `f` returns.
                let data =
                    if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(self.window.at(at), len) } };
                f(data);
                n += 1;
            }
            self.cons += total as u64;
            consumed = true;
        }
        if consumed {
            self.publish_consumer();
        }
        Ok(n)
    }

    /// Bytes of data mapped now (for tests).
    pub fn window_bytes(&self) -> usize {
        self.window.len
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }
}
