//! Property-based fuzzing of the decoder: on any bytes, `decode` returns a
//! record or an error, never panics, allocates nothing, and every accessor of
//! a decoded record stays inside its buffers.
//!
//! The record kinds are not listed here: they are found by asking `decode`
//! itself (a header of each kind number, too short to be a record, reports
//! the size its kind needs), so a kind added to the crate is fuzzed without
//! touching this file. A few seconds by default; `PROPTEST_CASES=1000000
//! cargo test -p sysql-events --test fuzz` runs longer.

use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::{offset_of, size_of};
use sysql_events::*;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 2_000;
/// Kind numbers searched for known kinds (the C header numbers them from 1).
const KIND_SEARCH: u32 = 4096;
/// The largest input tried: bigger than any record.
const MAX_INPUT: usize = 12 << 10;

/// Counts the bytes this thread allocates while armed.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the
// thread-locals are const-initialised Cells, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATED.with(|a| a.set(a.get() + layout.size()));
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATED.with(|a| a.set(a.get() + new_size));
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result and the bytes it allocated.
fn counting<R>(f: impl FnOnce() -> R) -> (R, usize) {
    ALLOCATED.with(|a| a.set(0));
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, ALLOCATED.with(Cell::get))
}

/// An 8-byte aligned buffer, as the ring buffer hands records out.
#[repr(C, align(8))]
struct Aligned([u8; MAX_INPUT + 8]);

/// `bytes` copied to `offset` bytes past an 8-byte boundary.
fn place(bytes: &[u8], offset: usize) -> Box<Aligned> {
    let mut buf = Box::new(Aligned([0; MAX_INPUT + 8]));
    buf.0[offset..offset + bytes.len()].copy_from_slice(bytes);
    buf
}

/// Every kind `decode` knows, with the bytes a record of it needs.
fn known_kinds() -> Vec<(u32, usize)> {
    let mut kinds = Vec::new();
    for kind in 0..KIND_SEARCH {
        let mut h: Header = zeroed();
        h.kind = kind;
        let buf = place(as_bytes(&h), 0);
        let need = match decode(&buf.0[..size_of::<Header>()], &mut Widen::new()) {
            Ok(_) => size_of::<Header>(),
            Err(DecodeError::NotEnoughBytes { kind: k, need, got }) => {
                assert_eq!((k, got), (kind, size_of::<Header>()), "the error names the kind and the length");
                need
            }
            Err(DecodeError::UnknownKind(k)) => {
                assert_eq!(k, kind);
                continue;
            }
            Err(e) => panic!("kind {kind}: {e}"),
        };
        kinds.push((kind, need));
    }
    kinds
}

fn kinds() -> &'static [(u32, usize)] {
    static KINDS: std::sync::OnceLock<Vec<(u32, usize)>> = std::sync::OnceLock::new();
    KINDS.get_or_init(known_kinds)
}

/// Calls every accessor of a decoded record and checks it stays in bounds;
/// returns the kind in the record's header. Exhaustive: a new kind does not
/// compile until it is exercised here.
fn exercise(record: &Record<'_>) -> Option<u32> {
    match record {
        Record::Open(e) => {
            assert!(e.h.comm().len() <= COMM_LEN);
            assert!(e.path().len() <= PATH_LEN.min(e.path_len as usize));
            Some(e.h.kind)
        }
        Record::Connect(e) => {
            assert!(e.h.comm().len() <= COMM_LEN);
            assert!(e.addr().len() <= SOCKADDR_LEN.min(e.addrlen as usize));
            Some(e.h.kind)
        }
        Record::Exec(e) => {
            assert!(e.filename().len() <= FILENAME_LEN.min(e.filename_len as usize));
            let (mut n, mut bytes) = (0usize, 0usize);
            for arg in e.args() {
                n += 1;
                bytes += arg.len() + 1;
            }
            assert!(n <= e.argc as usize && bytes <= ARGV_LEN + 1, "{n} args, {bytes} bytes");
            Some(e.h.kind)
        }
        Record::Payload(e, data) => {
            assert!(e.h.comm().len() <= COMM_LEN);
            assert_eq!(data.len(), e.data_len as usize, "the payload is exactly data_len bytes");
            assert!(data.len() <= SNAP_MAX);
            let _ = e.is_send();
            Some(e.h.kind)
        }
        Record::ConnectDone(e) => Some(e.h.kind),
        Record::Accept(e) => {
            assert!(e.h.comm().len() <= COMM_LEN);
            Some(e.h.kind)
        }
        Record::Exit(e) => {
            assert!(e.h.comm().len() <= COMM_LEN);
            Some(e.h.kind)
        }
    }
}

/// Decodes `len` bytes at `offset` past an aligned boundary, checks the
/// outcome against what the input allows, and that nothing was allocated.
fn check(buf: &Aligned, offset: usize, len: usize) {
    let bytes = &buf.0[offset..offset + len];
    let mut widen = Widen::new();
    let ((result, kind), allocated) = counting(|| {
        let result = decode(bytes, &mut widen);
        let kind = result.as_ref().ok().and_then(exercise);
        (result, kind)
    });
    assert_eq!(allocated, 0, "decoding {len} bytes allocated {allocated} bytes");
    let header_kind = (len >= 4).then(|| u32::from_ne_bytes(bytes[..4].try_into().unwrap()));
    let known = header_kind.and_then(|k| kinds().iter().find(|(kind, _)| *kind == k).copied());
    match (&result, known) {
        (Ok(record), Some((k, need))) => {
            assert!(len >= need && offset == 0, "kind {k}: decoded {len} bytes at offset {offset}, needs {need}");
            assert!(kind.is_none_or(|kind| kind == k));
            let _ = format!("{record:?}");
        }
        (Err(DecodeError::NotEnoughBytes { kind, need, got }), _) => {
            assert_eq!(*got, len);
            assert!(*got < *need);
            if let Some((k, n)) = known {
                // a kind with a payload may need more than its fixed part
                assert!(*kind == k && *need >= n, "kind {kind} needs {need}, known as {k} of {n} bytes");
            }
        }
        (Err(DecodeError::Misaligned), Some((_, need))) => assert!(offset != 0 && len >= need),
        (Err(DecodeError::UnknownKind(k)), None) => assert_eq!(Some(*k), header_kind),
        // Errors added with new kinds (a bad payload length, say): one line.
        (Err(e), Some(_)) if !matches!(e, DecodeError::NotEnoughBytes { .. } | DecodeError::Misaligned) => {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
        (other, known) => panic!("{len} bytes at offset {offset}, known kind {known:?}: {other:?}"),
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(DEFAULT_CASES);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// A well-formed record of a known kind, its header built from the crate's
/// own `Header` with arbitrary field values, the rest arbitrary bytes.
fn record() -> impl Strategy<Value = Vec<u8>> {
    (0..kinds().len(), any::<[u64; 4]>(), any::<[u32; 7]>(), any::<[u8; COMM_LEN]>(), 0usize..64).prop_flat_map(
        |(i, wide, narrow, comm, extra)| {
            let (kind, need) = kinds()[i];
            proptest::collection::vec(any::<u8>(), need + extra).prop_map(move |mut bytes| {
                let mut h: Header = zeroed();
                h.kind = kind;
                h.syscall = narrow[0];
                [h.ts_boot_ns, h.latency_ns, h.cgroup_id] = [wide[0], wide[1], wide[2]];
                h.ret = wide[3] as i64;
                [h.pid, h.tid, h.ppid, h.uid, h.gid, h.flags] =
                    [narrow[1], narrow[2], narrow[3], narrow[4], narrow[5], narrow[6]];
                h.comm = comm;
                bytes[..size_of::<Header>()].copy_from_slice(as_bytes(&h));
                bytes
            })
        },
    )
}

#[test]
fn the_decoder_knows_every_table_kind() {
    let kinds = kinds();
    // opens and execs are sent at their length: their fixed part is needed
    for (kind, size) in [
        (KIND_OPEN, offset_of!(OpenEvent, path)),
        (KIND_CONNECT, size_of::<ConnectEvent>()),
        (KIND_EXEC, offset_of!(ExecEvent, argv)),
    ] {
        assert!(kinds.contains(&(kind, size)), "kind {kind} of {size} bytes in {kinds:?}");
    }
    assert!(kinds.iter().all(|(_, need)| *need >= size_of::<Header>() && *need <= MAX_INPUT), "{kinds:?}");
    // the allocation count that `check` asserts is zero does count
    assert_eq!(counting(|| std::hint::black_box(vec![0u8; 100])).1, 100);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..MAX_INPUT), offset in 0usize..8) {
        let buf = place(&bytes, offset);
        check(&buf, offset, bytes.len());
    }

    #[test]
    fn arbitrary_bytes_after_a_known_kind(
        i in any::<prop::sample::Index>(),
        rest in proptest::collection::vec(any::<u8>(), 0..MAX_INPUT - 4),
    ) {
        let (kind, _) = kinds()[i.index(kinds().len())];
        let mut bytes = kind.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&rest);
        check(&place(&bytes, 0), 0, bytes.len());
    }

    #[test]
    fn mutated_and_truncated_records(
        mut bytes in record(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        offset in prop::sample::select(vec![0usize, 0, 0, 4]),
    ) {
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        let len = if truncate { cut.index(bytes.len() + 1) } else { bytes.len() };
        check(&place(&bytes[..len], offset), offset, len);
    }

    #[test]
    fn every_known_kind_decodes_whole_and_refuses_short(bytes in record()) {
        let kind = u32::from_ne_bytes(bytes[..4].try_into().unwrap());
        let need = kinds().iter().find(|(k, _)| *k == kind).unwrap().1;
        let buf = place(&bytes, 0);
        // Fixed-size kinds take any bytes after the header; the length of
        // the rest of a payload, an open or an exec is its own field (see
        // `payload_records_decode_to_their_bytes`, `sized_records_decode_as_whole_ones`).
        let mut widen = Widen::new();
        if kind == KIND_CONNECT {
            prop_assert!(decode(&buf.0[..bytes.len()], &mut widen).is_ok());
            prop_assert!(decode(&buf.0[..need], &mut widen).is_ok());
        }
        check(&buf, 0, bytes.len());
        prop_assert_eq!(
            decode(&buf.0[..need - 1], &mut widen).unwrap_err(),
            DecodeError::NotEnoughBytes { kind, need, got: need - 1 }
        );
    }
}

proptest! {
    #![proptest_config(config())]

    /// Well-formed payload records (a fixed part whose `data_len` says how
    /// many bytes follow, up to SNAP_MAX) decode to exactly those bytes;
    /// cut short by one byte, or claiming one byte more, they are refused.
    #[test]
    fn payload_records_decode_to_their_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..SNAP_MAX + 1),
        trailing in 0usize..16,
        fields in any::<[u64; 2]>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut e: PayloadEvent = zeroed();
        e.h.kind = KIND_PAYLOAD;
        e.h.ts_boot_ns = fields[0];
        e.sock_id = fields[1];
        e.data_len = data.len() as u32;
        let fixed = size_of::<PayloadEvent>();
        let mut bytes = as_bytes(&e).to_vec();
        bytes.extend_from_slice(&data);
        bytes.extend(std::iter::repeat_n(0xAAu8, trailing));
        let buf = place(&bytes, 0);
        let mut widen = Widen::new();
        match decode(&buf.0[..bytes.len()], &mut widen) {
            Ok(Record::Payload(got, payload)) => {
                prop_assert_eq!(payload, &data[..]);
                prop_assert_eq!(got.sock_id, fields[1]);
            }
            other => prop_assert!(false, "decoded as {:?}", other.map(|_| ())),
        }
        check(&buf, 0, bytes.len());
        // one byte short of its data
        let short = fixed + data.len();
        if short > fixed {
            prop_assert_eq!(
                decode(&buf.0[..short - 1], &mut widen).unwrap_err(),
                DecodeError::NotEnoughBytes { kind: KIND_PAYLOAD, need: short, got: short - 1 }
            );
        }
        // flipped bytes in the data or the fixed part: never a panic, never
        // a slice past the record
        let mut mutated = bytes.clone();
        for (at, value) in flips {
            let at = at.index(mutated.len());
            mutated[at] = value;
        }
        check(&place(&mutated, 0), 0, mutated.len());
    }
}

proptest! {
    #![proptest_config(config())]

    /// Opens and execs sent at their exact length (as the kernel sends them)
    /// decode to what their whole structs say (their Debug shows every
    /// byte), whatever a longer record left in the widening buffer; one
    /// byte short of what they use, they are refused.
    #[test]
    fn sized_records_decode_as_whole_ones(
        used in 0usize..PATH_LEN,
        args in 0usize..ARGV_LEN + 1,
        fill in 1u8..,
        seed in any::<u64>(),
    ) {
        let byte = |i: usize| (seed.rotate_left(i as u32 % 64) as u8) | 1; // never NUL
        let open = |len: usize, b: &dyn Fn(usize) -> u8| {
            let mut e: OpenEvent = zeroed();
            e.h.kind = KIND_OPEN;
            e.h.pid = seed as u32;
            for i in 0..len {
                e.path[i] = b(i);
            }
            e.path_len = len as u32;
            e
        };
        let exec = |len: usize, b: &dyn Fn(usize) -> u8| {
            let mut e: ExecEvent = zeroed();
            e.h.kind = KIND_EXEC;
            for i in 0..len {
                e.argv[i] = if i % 7 == 6 { 0 } else { b(i) };
            }
            e.argv_len = len as u32;
            e.argc = 64;
            e
        };
        let (open_at, exec_at) = (offset_of!(OpenEvent, path), offset_of!(ExecEvent, argv));
        let long_open = open(PATH_LEN - 1, &|_| fill);
        let long_exec = exec(ARGV_LEN - 1, &|_| fill);
        let (o, x) = (open(used, &byte), exec(args, &byte));
        let mut widen = Widen::new();
        // (record, a longer one of its kind, bytes sent, bytes it uses, its fixed part)
        for (whole, longer, sent, need, fixed) in [
            (as_bytes(&o), as_bytes(&long_open), open_at + used + 1, open_at + used, open_at),
            (as_bytes(&x), as_bytes(&long_exec), exec_at + args, exec_at + args, exec_at),
        ] {
            let buf = place(whole, 0);
            let expected = format!("{:?}", decode(&buf.0[..whole.len()], &mut widen).unwrap());
            let long = place(longer, 0);
            prop_assert!(decode(&long.0[..longer.len() - 1], &mut widen).is_ok());
            let got = format!("{:?}", decode(&buf.0[..sent], &mut widen).unwrap());
            prop_assert_eq!(expected, got);
            let kind = u32::from_ne_bytes(whole[..4].try_into().unwrap());
            let short = if need - 1 < fixed { fixed } else { need };
            prop_assert_eq!(
                decode(&buf.0[..need - 1], &mut widen).unwrap_err(),
                DecodeError::NotEnoughBytes { kind, need: short, got: need - 1 }
            );
        }
    }
}
