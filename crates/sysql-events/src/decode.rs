//! Reading records in place out of ring buffer bytes (with `ring`, the only `unsafe` in sysql).
//!
//! Ring buffer records are 8-byte aligned and every event struct is plain
//! integers and byte arrays with explicit padding, so a length- and
//! alignment-checked cast is sound and costs nothing. Short, unknown or
//! misaligned input is an error value, never a panic.
//!
//! Opens and execs are sent at their exact length: the fixed part, then only
//! the bytes of the path (or arguments) they hold. Such a record is copied
//! into a [`Widen`] buffer, zero-filled to its whole struct, and read there:
//! a copy of about a hundred bytes, where every consumer keeps one struct
//! per kind.

use crate::{
    AcceptEvent, ConnectDoneEvent, ConnectEvent, ExecEvent, ExitEvent, Header, OpenEvent, PayloadEvent, ARGV_LEN,
    KIND_ACCEPT, KIND_CONNECT, KIND_CONNECT_DONE, KIND_EXEC, KIND_EXIT, KIND_OPEN, KIND_PAYLOAD, PATH_LEN, SNAP_MAX,
};
use std::fmt;
use std::mem::{align_of, offset_of, size_of};

/// Types for which every bit pattern is valid and that have no implicit
/// padding.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers and integer arrays
/// whose padding is explicit fields.
pub unsafe trait Pod: Copy + 'static {}

unsafe impl Pod for Header {}
unsafe impl Pod for OpenEvent {}
unsafe impl Pod for ConnectEvent {}
unsafe impl Pod for ExecEvent {}
unsafe impl Pod for PayloadEvent {}
unsafe impl Pod for ConnectDoneEvent {}
unsafe impl Pod for AcceptEvent {}
unsafe impl Pod for ExitEvent {}

/// One decoded record, borrowed from the ring buffer.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    Open(&'a OpenEvent),
    Connect(&'a ConnectEvent),
    Exec(&'a ExecEvent),
    /// The fixed part and the payload bytes that follow it.
    Payload(&'a PayloadEvent, &'a [u8]),
    /// The outcome of a TCP connect, for the connect's row.
    ConnectDone(&'a ConnectDoneEvent),
    Accept(&'a AcceptEvent),
    Exit(&'a ExitEvent),
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is shorter than its kind's struct.
    NotEnoughBytes { kind: u32, need: usize, got: usize },
    /// The header's kind is not one sysql knows.
    UnknownKind(u32),
    /// The bytes do not start on the struct's alignment.
    Misaligned,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotEnoughBytes { kind, need, got } => {
                write!(f, "record of kind {kind} has {got} bytes, expected {need}")
            }
            DecodeError::UnknownKind(kind) => write!(f, "unknown record kind {kind}"),
            DecodeError::Misaligned => write!(f, "record is not 8-byte aligned"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn view<T: Pod>(bytes: &[u8], kind: u32) -> Result<&T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::NotEnoughBytes { kind, need: size_of::<T>(), got: bytes.len() });
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(align_of::<T>()) {
        return Err(DecodeError::Misaligned);
    }
    // SAFETY: length and alignment checked above; T is Pod, so any bytes are a
    // valid T; the borrow keeps the bytes alive and unchanged.
    Ok(unsafe { &*(bytes.as_ptr() as *const T) })
}

/// The largest struct a record is widened to.
const WIDEST: usize =
    if size_of::<OpenEvent>() > size_of::<ExecEvent>() { size_of::<OpenEvent>() } else { size_of::<ExecEvent>() };

/// Room to widen a record sent at its exact length to its kind's whole
/// struct; one per reader, reused for every record.
#[repr(C, align(8))]
pub struct Widen([u8; WIDEST]);

impl Widen {
    pub fn new() -> Box<Widen> {
        Box::new(Widen([0; WIDEST]))
    }
}

/// A record of a struct whose last `tail_cap` bytes are a buffer of which the
/// `u32` at `len_at` says how many bytes are used: read in place when whole,
/// else copied into `widen` once the bytes it uses are all there.
fn view_sized<'a, T: Pod>(
    bytes: &'a [u8],
    kind: u32,
    len_at: usize,
    tail_cap: usize,
    widen: &'a mut Widen,
) -> Result<&'a T, DecodeError> {
    let whole = size_of::<T>();
    if bytes.len() >= whole {
        return view(bytes, kind);
    }
    let fixed = whole - tail_cap;
    let short = |need| DecodeError::NotEnoughBytes { kind, need, got: bytes.len() };
    if bytes.len() < fixed {
        return Err(short(fixed));
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(align_of::<T>()) {
        return Err(DecodeError::Misaligned);
    }
    let used = u32::from_ne_bytes(bytes[len_at..len_at + 4].try_into().expect("4 bytes")) as usize;
    let need = fixed + used.min(tail_cap);
    if bytes.len() < need {
        return Err(short(need));
    }
    let room = &mut widen.0[..whole];
    room[..bytes.len()].copy_from_slice(bytes);
    room[bytes.len()..].fill(0);
    view(&widen.0[..whole], kind)
}

/// Decodes one ring buffer record; `widen` holds it if it must be widened.
pub fn decode<'a>(bytes: &'a [u8], widen: &'a mut Widen) -> Result<Record<'a>, DecodeError> {
    if bytes.len() < 4 {
        return Err(DecodeError::NotEnoughBytes { kind: 0, need: size_of::<Header>(), got: bytes.len() });
    }
    let kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    match kind {
        KIND_OPEN => view_sized(bytes, kind, offset_of!(OpenEvent, path_len), PATH_LEN, widen).map(Record::Open),
        KIND_CONNECT => view(bytes, kind).map(Record::Connect),
        KIND_EXEC => view_sized(bytes, kind, offset_of!(ExecEvent, argv_len), ARGV_LEN, widen).map(Record::Exec),
        KIND_CONNECT_DONE => view(bytes, kind).map(Record::ConnectDone),
        KIND_ACCEPT => view(bytes, kind).map(Record::Accept),
        KIND_EXIT => view(bytes, kind).map(Record::Exit),
        KIND_PAYLOAD => {
            let e: &PayloadEvent = view(bytes, kind)?;
            let rest = &bytes[size_of::<PayloadEvent>()..];
            let len = e.data_len as usize;
            if len > rest.len() || len > SNAP_MAX {
                let need = size_of::<PayloadEvent>() + len;
                return Err(DecodeError::NotEnoughBytes { kind, need, got: bytes.len() });
            }
            Ok(Record::Payload(e, &rest[..len]))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// An all-zero value (valid for any Pod type).
pub fn zeroed<T: Pod>() -> T {
    // SAFETY: T is Pod: all-zero bytes are a valid T.
    unsafe { std::mem::zeroed() }
}

/// The bytes of a Pod value, as the kernel would put them in the ring buffer.
pub fn as_bytes<T: Pod>(value: &T) -> &[u8] {
    // SAFETY: T is Pod, so it has no uninitialised padding bytes.
    unsafe { std::slice::from_raw_parts(value as *const T as *const u8, size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use std::mem::offset_of;

    /// An 8-byte aligned copy of `bytes`, as the ring buffer gives them.
    fn aligned(bytes: &[u8]) -> Vec<u64> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (i, b) in bytes.iter().enumerate() {
            words[i / 8] |= (*b as u64) << ((i % 8) * 8);
        }
        words
    }

    fn bytes_of(words: &[u64], len: usize) -> &[u8] {
        &as_bytes_slice(words)[..len]
    }

    fn as_bytes_slice(words: &[u64]) -> &[u8] {
        // SAFETY: u64 has no padding; test helper.
        unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8) }
    }

    fn open_event(path: &str) -> OpenEvent {
        let mut e: OpenEvent = zeroed();
        e.h.kind = KIND_OPEN;
        e.h.pid = 42;
        e.h.comm[..3].copy_from_slice(b"cat");
        e.path[..path.len()].copy_from_slice(path.as_bytes());
        e.path_len = path.len() as u32;
        e
    }

    #[test]
    fn decodes_an_open_in_place() {
        let e = open_event("/etc/shadow");
        let words = aligned(as_bytes(&e));
        match decode(bytes_of(&words, size_of::<OpenEvent>()), &mut Widen::new()).unwrap() {
            Record::Open(o) => {
                assert_eq!(o.path(), b"/etc/shadow");
                assert_eq!(o.h.comm(), b"cat");
                assert_eq!(o.h.pid, 42);
            }
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let e = open_event("/tmp/x");
        let words = aligned(as_bytes(&e));
        let fixed = offset_of!(OpenEvent, path);
        for len in 0..fixed + 6 {
            let err = decode(bytes_of(&words, len), &mut Widen::new()).unwrap_err();
            if len >= 4 {
                let need = if len < fixed { fixed } else { fixed + 6 };
                assert_eq!(err, DecodeError::NotEnoughBytes { kind: KIND_OPEN, need, got: len });
            }
        }
    }

    #[test]
    fn unknown_kind_and_misalignment_are_errors() {
        let mut e = open_event("/x");
        e.h.kind = 99;
        let words = aligned(as_bytes(&e));
        let err = decode(bytes_of(&words, size_of::<OpenEvent>()), &mut Widen::new()).unwrap_err();
        assert_eq!(err, DecodeError::UnknownKind(99));

        // a valid record starting 4 bytes into an aligned buffer
        let e = open_event("/x");
        let mut shifted = vec![0u8; 4];
        shifted.extend_from_slice(as_bytes(&e));
        let words = aligned(&shifted);
        let raw = bytes_of(&words, shifted.len());
        assert_eq!(decode(&raw[4..], &mut Widen::new()).unwrap_err(), DecodeError::Misaligned);
    }

    #[test]
    fn an_open_sent_at_its_length_is_widened() {
        let e = open_event("/etc/shadow");
        let words = aligned(as_bytes(&e));
        let sent = offset_of!(OpenEvent, path) + "/etc/shadow".len() + 1;
        let mut widen = Widen::new();
        // what an earlier, longer record left behind is not read as this one's
        widen.0.fill(b'x');
        match decode(bytes_of(&words, sent), &mut widen).unwrap() {
            Record::Open(o) => {
                assert_eq!(o.path(), b"/etc/shadow");
                assert_eq!(o.h.pid, 42);
                assert!(o.path[sent - offset_of!(OpenEvent, path)..].iter().all(|&b| b == 0));
            }
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn an_exec_sent_at_its_length_is_widened() {
        let mut x: ExecEvent = zeroed();
        x.h.kind = KIND_EXEC;
        let argv = b"ls\0-l\0";
        x.argv[..argv.len()].copy_from_slice(argv);
        x.argv_len = argv.len() as u32;
        x.argc = 2;
        let words = aligned(as_bytes(&x));
        let sent = offset_of!(ExecEvent, argv) + argv.len();
        let mut widen = Widen::new();
        match decode(bytes_of(&words, sent), &mut widen).unwrap() {
            Record::Exec(e) => assert_eq!(e.args().collect::<Vec<_>>(), vec![&b"ls"[..], b"-l"]),
            other => panic!("decoded {other:?}"),
        }
        let err = decode(bytes_of(&words, sent - 1), &mut widen).unwrap_err();
        assert_eq!(err, DecodeError::NotEnoughBytes { kind: KIND_EXEC, need: sent, got: sent - 1 });
    }

    #[test]
    fn garbled_lengths_stay_in_bounds() {
        let mut e = open_event("/etc/passwd");
        e.path_len = u32::MAX;
        assert_eq!(e.path(), b"/etc/passwd");
        let mut x: ExecEvent = zeroed();
        x.h.kind = KIND_EXEC;
        x.argv_len = u32::MAX;
        x.argc = u32::MAX;
        x.argv.fill(b'a');
        let args: Vec<&[u8]> = x.args().collect();
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].len(), ARGV_LEN);
        x.filename_len = 9999;
        assert_eq!(x.filename().len(), 0);
    }

    #[test]
    fn exec_args_split_on_nul() {
        let mut x: ExecEvent = zeroed();
        let argv = b"ls\0-l\0/tmp\0";
        x.argv[..argv.len()].copy_from_slice(argv);
        x.argv_len = argv.len() as u32;
        x.argc = 3;
        let args: Vec<&[u8]> = x.args().collect();
        assert_eq!(args, vec![&b"ls"[..], b"-l", b"/tmp"]);
    }
}
