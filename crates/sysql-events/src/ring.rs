//! The BPF ring buffer's own layout, read in place: the consumer side of
//! `kernel/bpf/ringbuf.c` (Linux 5.8+).
//!
//! A ring buffer map is mapped from its fd in two parts: the consumer page
//! (read-write: the position up to which records are read) and the producer
//! page followed by the data pages (read-only). The kernel maps the data
//! pages twice in a row, so a record that runs past the end reads on
//! contiguously; sysql maps them once, and copies the rare record that wraps
//! into a buffer of its own. A ring of N bytes then costs N bytes of resident
//! memory, not 2N.
//!
//! Each record starts on 8 bytes with an 8-byte header: its length, a busy
//! bit (reserved, not yet committed) and a discard bit. Records are read in
//! the order their space was reserved; a busy one stops the read until its
//! producer commits it. The consumer position is published once per read
//! (and every [`PUBLISH_BYTES`] within a long one), not once per record:
//! each program that reserves space reads it, and a store for every record
//! moves its cache line between the reader's CPU and the producers'.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// BPF_RINGBUF_BUSY_BIT: the record is reserved, not yet committed.
const BUSY: u32 = 1 << 31;
/// BPF_RINGBUF_DISCARD_BIT: the producer dropped it; skip it.
const DISCARD: u32 = 1 << 30;
/// BPF_RINGBUF_HDR_SZ.
pub const HEADER_BYTES: u64 = 8;
/// Within one long read, the consumer position is published at least this
/// often, so that producers see the space free up while a storm is read.
pub const PUBLISH_BYTES: u64 = 256 << 10;

/// Bytes a record takes in the ring: its header and data, padded to 8.
pub fn footprint(len: usize) -> u64 {
    (len as u64 + HEADER_BYTES + 7) & !7
}

/// What a read handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Read {
    pub records: usize,
    /// Ring bytes consumed, headers, padding and discarded records included.
    pub bytes: u64,
}

/// The data pages, mapped once: `size` bytes, a power of two.
struct Data {
    base: NonNull<u8>,
    size: usize,
}

impl Data {
    fn header(&self, pos: usize) -> u32 {
        let off = pos & (self.size - 1);
        // SAFETY: off is 8-aligned (positions advance by multiples of 8) and
        // off + 4 <= size; the kernel writes the header with release
        // semantics (an xchg at commit), so it is read atomically.
        unsafe { (*self.base.as_ptr().add(off).cast::<AtomicU32>()).load(Ordering::Acquire) }
    }

    /// The `len` bytes from `pos`, in place or, when they wrap, copied into
    /// `scratch` (kept 8-aligned, as the decoder needs).
    fn bytes<'a>(&'a self, pos: usize, len: usize, scratch: &'a mut Vec<u64>) -> &'a [u8] {
        let off = pos & (self.size - 1);
        let len = len.min(self.size);
        let first = len.min(self.size - off);
        // SAFETY: [off, off + first) and [0, len - first) lie within the
        // mapping; the record is committed (its header was read with acquire
        // ordering) and its space is not reused before the consumer position
        // moves past it, which happens after the caller is done with it.
        unsafe {
            if first == len {
                return std::slice::from_raw_parts(self.base.as_ptr().add(off), len);
            }
            scratch.clear();
            scratch.resize(len.div_ceil(8), 0);
            let dst = scratch.as_mut_ptr().cast::<u8>();
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), dst, first);
            std::ptr::copy_nonoverlapping(self.base.as_ptr(), dst.add(first), len - first);
            std::slice::from_raw_parts(dst, len)
        }
    }

    /// Hands `f` each committed record from `*pos` up to `producer`, at most
    /// `max` records and `budget` bytes (at least one record if any), and
    /// calls `publish` with the position every [`PUBLISH_BYTES`].
    fn read(
        &self,
        pos: &mut usize,
        producer: usize,
        (max, budget): (usize, u64),
        scratch: &mut Vec<u64>,
        publish: &mut dyn FnMut(usize),
        f: &mut dyn FnMut(&[u8]),
    ) -> Read {
        let mut done = Read::default();
        let mut unpublished = 0u64;
        while *pos != producer && done.records < max && done.bytes < budget {
            let header = self.header(*pos);
            if header & BUSY != 0 {
                break;
            }
            let len = (header & !(BUSY | DISCARD)) as usize;
            if header & DISCARD == 0 {
                f(self.bytes(*pos + HEADER_BYTES as usize, len, scratch));
                done.records += 1;
            }
            let step = footprint(len);
            *pos = pos.wrapping_add(step as usize);
            done.bytes += step;
            unpublished += step;
            if unpublished >= PUBLISH_BYTES {
                publish(*pos);
                unpublished = 0;
            }
        }
        done
    }
}

/// The consumer side of one ring buffer map.
pub struct Ring {
    fd: OwnedFd,
    /// The consumer page: `consumer_pos` at its start.
    consumer: NonNull<u8>,
    /// The producer page (`producer_pos` at its start), then the data.
    producer: NonNull<u8>,
    page: usize,
    data: Data,
    /// Where reading stands (published at the end of each read).
    pos: usize,
    scratch: Vec<u64>,
}

// SAFETY: the mappings belong to this value alone; the kernel side is only
// ever reached through atomic loads and stores.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps the ring buffer map behind `fd`, of `size` bytes (its
    /// `max_entries`: a power of two, a multiple of the page size).
    pub fn new(fd: BorrowedFd<'_>, size: usize) -> io::Result<Ring> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        if !size.is_power_of_two() || !size.is_multiple_of(page) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring buffer size {size} is not a power of two multiple of the page size {page}"),
            ));
        }
        let fd = fd.try_clone_to_owned()?;
        let consumer = map(&fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = match map(&fd, page + size, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: mapped above, of this length, and not yet shared.
                unsafe { libc::munmap(consumer.as_ptr().cast(), page) };
                return Err(e);
            }
        };
        // SAFETY: the data pages follow the producer page in the mapping.
        let data = Data { base: unsafe { NonNull::new_unchecked(producer.as_ptr().add(page)) }, size };
        // SAFETY: as in `publish`.
        let pos = unsafe { (*consumer.as_ptr().cast::<AtomicUsize>()).load(Ordering::Acquire) };
        Ok(Ring { fd, consumer, producer, page, data, pos, scratch: Vec::new() })
    }

    /// Publishes how far the consumer has read.
    fn publish(consumer: NonNull<u8>, pos: usize) {
        // SAFETY: the consumer page is mapped for the life of the Ring and
        // starts with the kernel's `unsigned long consumer_pos`; producers
        // read it with acquire semantics before they reuse space.
        unsafe { (*consumer.as_ptr().cast::<AtomicUsize>()).store(pos, Ordering::Release) }
    }

    fn producer_pos(&self) -> usize {
        // SAFETY: as above, for `producer_pos`; the kernel stores it with
        // release semantics after writing the record's header.
        unsafe { (*self.producer.as_ptr().cast::<AtomicUsize>()).load(Ordering::Acquire) }
    }

    /// Bytes written and not yet read.
    pub fn backlog(&self) -> u64 {
        self.producer_pos().wrapping_sub(self.pos) as u64
    }

    /// Hands `f` every committed record, in order, up to `max` records or
    /// `budget` bytes of ring (headers included), then publishes how far it
    /// read, which frees that space for the producers.
    pub fn read(&mut self, max: usize, budget: u64, f: &mut dyn FnMut(&[u8])) -> Read {
        let producer = self.producer_pos();
        let consumer = self.consumer;
        let mut pos = self.pos;
        let done = self.data.read(
            &mut pos,
            producer,
            (max, budget),
            &mut self.scratch,
            &mut |p| Self::publish(consumer, p),
            f,
        );
        if pos != self.pos {
            Self::publish(consumer, pos);
            self.pos = pos;
        }
        done
    }
}

fn map(fd: &OwnedFd, len: usize, prot: libc::c_int, offset: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh shared mapping of the map's fd; nothing aliases it yet.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), offset as i64) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: both were mapped in `new`, of these lengths; no borrow of
        // them outlives self.
        unsafe {
            libc::munmap(self.consumer.as_ptr().cast(), self.page);
            libc::munmap(self.producer.as_ptr().cast(), self.page + self.data.size);
        }
    }
}

impl AsFd for Ring {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring of `size` bytes in memory, written as the kernel writes one.
    struct Fake {
        words: Vec<u64>,
        size: usize,
        producer: usize,
    }

    impl Fake {
        fn new(size: usize, start: usize) -> Fake {
            Fake { words: vec![0; size / 8], size, producer: start }
        }
        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: a Vec<u64> viewed as its bytes.
            unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.size) }
        }
        fn put(&mut self, header: u32, body: &[u8]) {
            let (size, at) = (self.size, self.producer);
            let b = self.bytes();
            b[at % size..at % size + 4].copy_from_slice(&header.to_ne_bytes());
            for (i, byte) in body.iter().enumerate() {
                b[(at + 8 + i) % size] = *byte;
            }
            self.producer += footprint(body.len()) as usize;
        }
        fn data(&mut self) -> Data {
            Data { base: NonNull::new(self.words.as_mut_ptr().cast()).unwrap(), size: self.size }
        }
    }

    fn read_all(fake: &mut Fake, pos: &mut usize, max: usize, budget: u64) -> (Vec<Vec<u8>>, Read, Vec<usize>) {
        let (data, producer) = (fake.data(), fake.producer);
        let mut got = Vec::new();
        let mut published = Vec::new();
        let mut scratch = Vec::new();
        let done = data.read(pos, producer, (max, budget), &mut scratch, &mut |p| published.push(p), &mut |r| {
            assert_eq!(r.as_ptr() as usize % 8, 0, "records are 8-aligned");
            got.push(r.to_vec())
        });
        (got, done, published)
    }

    #[test]
    fn records_come_back_in_order_whole_even_across_the_end() {
        // Positions start 16 bytes before the end (and far from zero, as a
        // long-running ring's do): the first record's data wraps at once.
        let start = (1usize << 40) - 16;
        let mut fake = Fake::new(4096, start);
        let mut pos = start;
        let mut straddled = 0;
        for round in 0..10u8 {
            let bodies: Vec<Vec<u8>> = (0..20u8)
                .map(|i| (0..(i as usize * 7 + 20)).map(|j| round.wrapping_mul(31) ^ i ^ j as u8).collect())
                .collect();
            for b in &bodies {
                let off = (fake.producer + 8) % 4096;
                straddled += usize::from(off + b.len() > 4096);
                fake.put(b.len() as u32, b);
            }
            let before = pos;
            let (got, done, _) = read_all(&mut fake, &mut pos, usize::MAX, u64::MAX);
            assert_eq!(got, bodies);
            assert_eq!(done.records, 20);
            assert_eq!(pos, fake.producer);
            assert_eq!(done.bytes, (pos - before) as u64);
        }
        assert!(straddled >= 2, "records ran past the end {straddled} times");
    }

    #[test]
    fn a_busy_record_stops_the_read_and_a_discarded_one_is_skipped() {
        let mut fake = Fake::new(4096, 0);
        fake.put(3, b"one");
        fake.put(DISCARD | 5, b"gone!");
        fake.put(3, b"two");
        fake.put(BUSY | 5, b"later");
        fake.put(5, b"after");
        let mut pos = 0;
        let (got, done, _) = read_all(&mut fake, &mut pos, usize::MAX, u64::MAX);
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(done.records, 2);
        assert_eq!(pos, 3 * 16, "stopped at the busy record");
    }

    #[test]
    fn reads_stop_at_the_record_and_byte_limits_and_publish_on_the_way() {
        let mut fake = Fake::new(1 << 20, 0);
        let body = [7u8; 1000];
        for _ in 0..600 {
            fake.put(body.len() as u32, &body);
        }
        let mut pos = 0;
        let (got, _, _) = read_all(&mut fake, &mut pos, 10, u64::MAX);
        assert_eq!(got.len(), 10);
        let (got, done, _) = read_all(&mut fake, &mut pos, usize::MAX, 5 * 1008);
        assert_eq!((got.len(), done.bytes), (5, 5 * 1008));
        let (got, _, published) = read_all(&mut fake, &mut pos, usize::MAX, u64::MAX);
        assert_eq!(got.len(), 585);
        assert_eq!(pos, fake.producer);
        // 585 records of 1008 bytes: published after 261 of them (past
        // 256 KiB), and 261 more; the end is published by the caller
        let start = 15 * 1008;
        assert_eq!(published, vec![start + 261 * 1008, start + 522 * 1008]);
    }
}
