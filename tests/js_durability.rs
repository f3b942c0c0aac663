//! What survives: SIGTERM and restart, kill -9 while publishing, a torn last
//! record, a flipped byte in an older segment, and a full disk.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Raw, Server};

fn raw(server: &Server) -> Raw {
    let mut r = server.raw();
    r.setup_requests();
    r
}

fn req(raw: &mut Raw, subject: &str, body: &str) -> serde_json::Value {
    let (_, b) = raw.request(subject, None, body.as_bytes());
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b)))
}

fn state(raw: &mut Raw, stream: &str) -> serde_json::Value {
    req(raw, &format!("$JS.API.STREAM.INFO.{stream}"), "")["state"].clone()
}

/// (subject, payload, headers) of message `seq`, or None if it is not there.
fn get(raw: &mut Raw, stream: &str, seq: u64) -> Option<(String, Vec<u8>)> {
    let v = req(
        raw,
        &format!("$JS.API.STREAM.MSG.GET.{stream}"),
        &format!("{{\"seq\":{seq}}}"),
    );
    let m = v.get("message")?;
    let data = m
        .get("data")
        .and_then(|d| d.as_str())
        .map(b64)
        .unwrap_or_default();
    Some((m["subject"].as_str().unwrap().to_string(), data))
}

fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("m{i:08}-").into_bytes();
    p.extend((0..(i % 200)).map(|k| (k as u8).wrapping_mul(31).wrapping_add(i as u8)));
    p
}

#[test]
fn everything_returns_after_sigterm_with_the_same_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &["--segment_bytes", "8192"]);
    let mut r = raw(&server);
    req(
        &mut r,
        "$JS.API.STREAM.CREATE.K",
        r#"{"name":"K","subjects":["k.>"],"max_msgs_per_subject":3}"#,
    );
    req(
        &mut r,
        "$JS.API.STREAM.CREATE.M",
        r#"{"name":"M","subjects":["m.>"],"storage":"memory"}"#,
    );
    for i in 0..300u64 {
        let hdr = format!("NATS/1.0\r\nNats-Msg-Id: id{i}\r\n\r\n");
        r.request(&format!("k.s{}", i % 40), Some(hdr.as_bytes()), &payload(i));
    }
    r.request("m.a", None, b"volatile");
    req(&mut r, "$JS.API.STREAM.MSG.DELETE.K", r#"{"seq":299}"#);
    req(&mut r, "$JS.API.STREAM.PURGE.K", r#"{"filter":"k.s1"}"#);
    let before = state(&mut r, "K");
    let mut contents = Vec::new();
    for seq in 1..=300 {
        contents.push(get(&mut r, "K", seq));
    }
    assert_eq!(before["messages"], 40 * 3 - 3 - 1);
    let segments = std::fs::read_dir(dir.path().join("jetstream/streams/K"))
        .unwrap()
        .count();
    assert!(segments > 2, "small segments roll over ({segments} files)");
    assert!(server.terminate().success());

    let server = Server::start_js(4, dir.path(), &["--segment_bytes", "8192"]);
    let mut r = raw(&server);
    let after = state(&mut r, "K");
    for key in [
        "messages",
        "bytes",
        "first_seq",
        "last_seq",
        "num_subjects",
        "num_deleted",
        "first_ts",
        "last_ts",
    ] {
        assert_eq!(before[key], after[key], "{key}");
    }
    for seq in 1..=300u64 {
        assert_eq!(
            get(&mut r, "K", seq),
            contents[seq as usize - 1],
            "seq {seq}"
        );
    }
    // Duplicate detection survives the restart; sequences continue.
    let dup = String::from_utf8(
        r.request(
            "k.s0",
            Some(b"NATS/1.0\r\nNats-Msg-Id: id280\r\n\r\n"),
            b"x",
        )
        .1,
    )
    .unwrap();
    assert_eq!(dup, r#"{"stream":"K","seq":281,"duplicate": true}"#);
    let next = String::from_utf8(r.request("k.new", None, b"x").1).unwrap();
    assert_eq!(next, r#"{"stream":"K","seq":301}"#);
    // A memory stream keeps its config, not its messages.
    let m = state(&mut r, "M");
    assert_eq!(m["messages"], 0);
}

/// Every message from `first` to `last` by direct-get batches: seq → (subject, payload).
fn get_all(raw: &mut Raw, stream: &str, first: u64, last: u64) -> HashMap<u64, (String, Vec<u8>)> {
    let mut out = HashMap::new();
    let mut from = first;
    while from <= last {
        raw.send_request(
            &format!("$JS.API.DIRECT.GET.{stream}"),
            None,
            format!("{{\"seq\":{from},\"batch\":1000}}").as_bytes(),
        );
        loop {
            let (h, body) = raw.read_msg();
            let h = String::from_utf8(h).unwrap();
            if h.starts_with("NATS/1.0 204") || h.starts_with("NATS/1.0 404") {
                break;
            }
            let field = |name: &str| {
                h.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap()
            };
            let seq: u64 = field("Nats-Sequence:").parse().unwrap();
            out.insert(seq, (field("Nats-Subject:"), body));
            from = seq + 1;
        }
    }
    out
}

/// Publishes pipelined with a window, recording which message each ack names.
fn publish_until_killed(
    port: u16,
    base: u64,
    acked: Arc<Mutex<HashMap<u64, u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    s.write_all(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB _A.* 1\r\n")
        .unwrap();
    let acked_reader = acked.clone();
    let reader_thread = std::thread::spawn(move || loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(rest) = line.strip_prefix("MSG _A.") {
            let mut parts = rest.split_whitespace();
            let i: u64 = base + parts.next().unwrap().parse::<u64>().unwrap();
            let n: usize = parts.nth(1).unwrap().parse().unwrap();
            let mut body = vec![0u8; n + 2];
            if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                return;
            }
            let v: serde_json::Value = serde_json::from_slice(&body[..n]).unwrap();
            if let Some(seq) = v["seq"].as_u64().filter(|_| v.get("error").is_none()) {
                acked_reader.lock().unwrap().insert(i, seq);
            }
        }
    });
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let p = payload(base + i);
        let mut msg = format!("PUB d.x _A.{i} {}\r\n", p.len()).into_bytes();
        msg.extend_from_slice(&p);
        msg.extend_from_slice(b"\r\n");
        if s.write_all(&msg).is_err() {
            break;
        }
        i += 1;
        while i > acked.lock().unwrap().len() as u64 + 256
            && !stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = reader_thread.join();
}

#[test]
fn kill_9_while_publishing_loses_no_acknowledged_message() {
    kill_9_while_publishing("none", &[]);
}

/// Interval mode acks a write once it is in the page cache, as nats-server
/// does: a killed process loses none of it, though no sync ran (the interval
/// is longer than the test).
#[test]
fn kill_9_in_interval_mode_loses_no_acknowledged_message() {
    kill_9_while_publishing("none", &["--sync", "interval=1m"]);
}

/// The same with segments packed as they are sealed (`compression: "s2"`):
/// kills land while segments are being packed, too.
#[test]
fn kill_9_while_publishing_and_packing_loses_no_acknowledged_message() {
    kill_9_while_publishing("s2", &[]);
}

fn kill_9_while_publishing(compression: &str, sync: &[&str]) {
    let args = [&["--segment_bytes", "65536"], sync].concat();
    let dir = tempfile::tempdir().unwrap();
    let mut all_acked: HashMap<u64, u64> = HashMap::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..4u64 {
        let server = Server::start_js(2, dir.path(), &args);
        let mut r = raw(&server);
        if round == 0 {
            let cfg = format!(
                r#"{{"name":"D","subjects":["d.>"],"allow_direct":true,"compression":"{compression}"}}"#
            );
            req(&mut r, "$JS.API.STREAM.CREATE.D", &cfg);
        }
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let port = server.port;
        let (a, s) = (acked.clone(), stop.clone());
        let base = round * 10_000_000;
        let publisher = std::thread::spawn(move || publish_until_killed(port, base, a, s));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(150 + rng % 400));
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        publisher.join().unwrap();
        let acked = acked.lock().unwrap().clone();
        assert!(
            !acked.is_empty(),
            "round {round}: some publishes were acknowledged"
        );

        let server = Server::start_js(2, dir.path(), &args);
        let mut r = raw(&server);
        let st = state(&mut r, "D");
        let first = st["first_seq"].as_u64().unwrap();
        let last = st["last_seq"].as_u64().unwrap();
        assert_eq!(
            st["messages"].as_u64().unwrap(),
            last - first + 1,
            "no holes"
        );
        let stored = get_all(&mut r, "D", first, last);
        // Every acknowledged message is there, byte for byte.
        for (i, seq) in &acked {
            assert!(
                *seq <= last,
                "round {round}: acked seq {seq} beyond last {last}"
            );
            let (subject, data) = stored
                .get(seq)
                .unwrap_or_else(|| panic!("round {round}: acked seq {seq} missing"));
            assert_eq!(subject, "d.x");
            assert_eq!(data, &payload(*i), "round {round}: seq {seq}");
        }
        // Whatever else is stored from this round was sent, in order.
        let round_first = all_acked.values().max().map_or(1, |m| m + 1);
        let mut prev: Option<u64> = None;
        for seq in round_first..=last {
            let data = &stored[&seq].1;
            let i: u64 = std::str::from_utf8(&data[1..9]).unwrap().parse().unwrap();
            assert_eq!(
                data,
                &payload(i),
                "round {round}: seq {seq} is a message we sent"
            );
            if let Some(p) = prev {
                // In send order; a new round starts its own numbering.
                assert!(
                    i == p + 1 || (i == round * 10_000_000 && p < i),
                    "round {round}: seq {seq}: {p} then {i}"
                );
            }
            prev = Some(i);
        }
        // Earlier rounds are untouched.
        for seq in all_acked.values() {
            assert!(stored.contains_key(seq), "earlier acked seq {seq} missing");
        }
        all_acked.extend(acked);
        server.kill9();
    }
    if compression == "s2" {
        let d = dir.path().join("jetstream/streams/D");
        let packed = std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sz")
            })
            .count();
        assert!(packed > 0, "sealed segments were packed");
    }
}

/// Record boundaries of a segment file (offsets of each record, then the end).
fn record_offsets(file: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 4 <= file.len() {
        let len = u32::from_le_bytes(file[pos..pos + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push(pos);
        pos += len;
    }
    out.push(pos);
    out
}

fn segments(dir: &std::path::Path, stream: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("jetstream/streams").join(stream))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn torn_tail_and_flipped_byte_drop_exactly_the_damage() {
    damage_then_restart(false);
}

/// With index files, a start-up reads no sealed segment: a flipped byte in
/// one is found when the message is read, which drops it then.
#[test]
fn a_flipped_byte_under_an_index_file_is_found_on_read_and_never_served() {
    damage_then_restart(true);
}

/// Tears the last record of a stream and flips a byte of record 3 (in the
/// first, sealed segment); `indexed`: its index file stays (else it is
/// removed, so start-up scans the segment).
fn damage_then_restart(indexed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &["--segment_bytes", "8192"]);
    let mut r = raw(&server);
    req(
        &mut r,
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":["t.>"]}"#,
    );
    for i in 0..200u64 {
        r.request("t.x", None, &payload(i));
    }
    assert!(server.terminate().success());
    let segs = segments(dir.path(), "T");
    assert!(segs.len() >= 3, "{segs:?}");
    // A clean shutdown leaves an index file beside every segment.
    for s in &segs {
        assert!(s.with_extension("idx").exists(), "{s:?}");
    }

    // Tear the last record of the last segment in half.
    let last = segs.last().unwrap();
    let bytes = std::fs::read(last).unwrap();
    let offs = record_offsets(&bytes);
    let (start, end) = (offs[offs.len() - 2], offs[offs.len() - 1]);
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(((start + end) / 2) as u64).unwrap();
    drop(f);
    // Flip one byte inside the payload of the third record of the first segment.
    let first = &segs[0];
    let mut bytes = std::fs::read(first).unwrap();
    let offs = record_offsets(&bytes);
    let target = offs[2] + 40;
    bytes[target] ^= 0x55;
    std::fs::write(first, &bytes).unwrap();
    if !indexed {
        std::fs::remove_file(first.with_extension("idx")).unwrap();
    }

    let server = Server::start_js(1, dir.path(), &["--segment_bytes", "8192"]);
    let logged = server.startup_log.join("\n");
    // The cut segment no longer matches its index file: it is scanned.
    assert!(logged.contains("torn write"), "{logged}");
    let mut r = raw(&server);
    let st = state(&mut r, "T");
    assert_eq!(st["last_seq"], 199, "the torn record 200 is gone");
    if indexed {
        assert!(!logged.contains("checksum mismatch"), "{logged}");
        assert_eq!(st["messages"], 199, "record 3 is not read yet");
    } else {
        assert!(logged.contains("checksum mismatch"), "{logged}");
        assert_eq!(st["messages"], 198, "and so is the damaged record 3");
        assert_eq!(st["num_deleted"], 1);
    }
    assert_eq!(
        get(&mut r, "T", 3),
        None,
        "a corrupt record is never served"
    );
    let st = state(&mut r, "T");
    assert_eq!(
        st["messages"], 198,
        "the damaged record 3 is gone once found"
    );
    assert_eq!(st["num_deleted"], 1);
    for seq in [1u64, 2, 4, 100, 199] {
        assert_eq!(
            get(&mut r, "T", seq).unwrap().1,
            payload(seq - 1),
            "seq {seq}"
        );
    }
    // The sequence continues after the last good record.
    let ack = String::from_utf8(r.request("t.x", None, b"after").1).unwrap();
    assert_eq!(ack, r#"{"stream":"T","seq":200}"#);
    assert!(server.terminate().success());
    let server = Server::start_js(1, dir.path(), &["--segment_bytes", "8192"]);
    let mut r = raw(&server);
    assert_eq!(get(&mut r, "T", 200).unwrap().1, b"after");
}

fn sh(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_full_disk_fails_publishes_and_recovers() {
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to loop-mount a small filesystem (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (img_s, mnt_s) = (img.display().to_string(), mnt.display().to_string());
    assert!(sh(&format!("dd if=/dev/zero of={img_s} bs=1M count=24 status=none && mkfs.ext4 -q -F {img_s} && mount -o loop {img_s} {mnt_s}")), "loop mount");
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            sh(&format!("umount -l {}", self.0));
        }
    }
    let _guard = Unmount(mnt_s.clone());
    // Ballast we delete later to give space back.
    assert!(sh(&format!(
        "dd if=/dev/zero of={mnt_s}/ballast bs=1M count=4 status=none"
    )));
    let store = mnt.join("store");
    // Small segments: a 32 MiB preallocation would take the whole disk at once.
    // A file limit above the disk's size, so the disk fills before it (the
    // default, 75% of the free space, would refuse publishes first: 10023).
    let conf = dir.path().join("big-limit.conf");
    std::fs::write(&conf, "jetstream { max_file_store: 1GB }\n").unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let seg = ["--segment_bytes", "1048576", "-c", &conf];
    let server = Server::start_js(2, &store, &seg);
    let mut r = raw(&server);
    req(
        &mut r,
        "$JS.API.STREAM.CREATE.F",
        r#"{"name":"F","subjects":["f.>"]}"#,
    );
    // A consumer with a pull waiting: it is handed each message as it is
    // accepted, before its write completes, so it sees the ones that fail.
    let created = req(
        &mut r,
        "$JS.API.CONSUMER.CREATE.F.C",
        r#"{"stream_name":"F","config":{"durable_name":"C","ack_policy":"none"}}"#,
    );
    assert!(created.get("error").is_none(), "{created}");
    let mut c = raw(&server);
    let pull = format!("{}.pull", c.inbox);
    let next = r#"{"batch":100000,"expires":60000000000}"#;
    c.send(
        format!(
            "PUB $JS.API.CONSUMER.MSG.NEXT.F.C {pull} {}\r\n{next}\r\n",
            next.len()
        )
        .as_bytes(),
    );
    c.flush();
    let body = vec![b'z'; 16 * 1024];
    let mut acked = Vec::new();
    let mut error = None;
    for _ in 0..5000 {
        let (_, b) = r.request("f.x", None, &body);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        match v["seq"].as_u64() {
            Some(seq) if v.get("error").is_none() => acked.push(seq),
            _ => {
                error = Some(v);
                break;
            }
        }
    }
    let error = error.expect("the disk filled up");
    assert_eq!(error["error"]["err_code"], 10047, "{error}");
    assert_eq!(
        error["error"]["description"],
        "insufficient storage resources available"
    );
    // The server is up and answers; other streams and clients are fine.
    let st = state(&mut r, "F");
    assert_eq!(st["last_seq"].as_u64(), acked.last().copied());
    let mut other = raw(&server);
    assert_eq!(req(&mut other, "$JS.API.INFO", "")["streams"], 1);
    // Space comes back: publishing works again, with the next sequence.
    std::fs::remove_file(mnt.join("ballast")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let seq = loop {
        let (_, b) = r.request("f.x", None, b"again");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        if let Some(seq) = v["seq"].as_u64().filter(|_| v.get("error").is_none()) {
            break seq;
        }
        assert!(Instant::now() < deadline, "publishing never recovered: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(seq, acked.last().unwrap() + 1);
    // The consumer went back to the last stored message: the reused sequence
    // is delivered with the new message, once.
    let mut past_end = 0;
    let again = loop {
        let (sseq, data) = read_delivery(&mut c);
        if data == b"again" {
            break sseq;
        }
        assert_eq!(data, body);
        if sseq > *acked.last().unwrap() {
            past_end += 1; // handed out, then its write failed
        }
    };
    eprintln!("{past_end} deliveries of messages whose write failed");
    assert_eq!(again, seq);
    let info = req(&mut r, "$JS.API.CONSUMER.INFO.F.C", "");
    assert_eq!(
        info["delivered"]["stream_seq"].as_u64(),
        Some(seq),
        "{info}"
    );
    assert_eq!(info["num_pending"].as_u64(), Some(0), "{info}");
    let before = state(&mut r, "F");
    assert!(server.terminate().success());
    // After a restart: every acked message, nothing that failed.
    let server = Server::start_js(2, &store, &seg);
    let mut r = raw(&server);
    let st = state(&mut r, "F");
    assert_eq!(st, before);
    assert_eq!(st["messages"].as_u64().unwrap(), acked.len() as u64 + 1);
    assert_eq!(st["last_seq"].as_u64().unwrap(), seq);
    assert_eq!(get(&mut r, "F", seq).unwrap().1, b"again");
    assert_eq!(get(&mut r, "F", acked[acked.len() / 2]).unwrap().1, body);
    drop(server);
}

/// The next consumer delivery on `c`: (stream sequence from its ack subject, payload).
fn read_delivery(c: &mut Raw) -> (u64, Vec<u8>) {
    loop {
        let line = c.read_line();
        assert!(!line.is_empty(), "connection closed");
        let parts: Vec<&str> = line.trim_end().split(' ').collect();
        if parts[0] != "MSG" {
            continue;
        }
        let n: usize = parts[parts.len() - 1].parse().unwrap();
        let data = c.read_exact(n + 2)[..n].to_vec();
        let reply: Vec<&str> = parts[3].split('.').collect();
        assert_eq!(reply[..4], ["$JS", "ACK", "F", "C"], "{line}");
        return (reply[5].parse().unwrap(), data);
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn deletes_stay_deleted_when_segments_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--segment_bytes", "4096"];
    let server = Server::start_js(1, dir.path(), &args);
    let mut r = raw(&server);
    req(
        &mut r,
        "$JS.API.STREAM.CREATE.G",
        r#"{"name":"G","subjects":["g.>"]}"#,
    );
    for i in 0..40u64 {
        r.request("g.keep", None, &payload(i));
    }
    // Temporary messages fill segments of their own...
    let mut doomed = Vec::new();
    let mut publish_tmp = |r: &mut Raw, n: u64| {
        for i in 0..n {
            let (_, b) = r.request("g.tmp", None, &payload(i));
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            doomed.push(v["seq"].as_u64().unwrap());
        }
    };
    publish_tmp(&mut r, 40);
    // ...one of which records the delete of an old message...
    req(&mut r, "$JS.API.STREAM.MSG.DELETE.G", r#"{"seq":3}"#);
    publish_tmp(&mut r, 40);
    // ...and then loses all its own messages.
    for seq in &doomed {
        req(
            &mut r,
            "$JS.API.STREAM.MSG.DELETE.G",
            &format!("{{\"seq\":{seq}}}"),
        );
    }
    r.request("g.keep", None, b"tail");
    let before = state(&mut r, "G");
    assert_eq!(before["messages"], 40);
    assert!(server.terminate().success());
    let server = Server::start_js(1, dir.path(), &args);
    let mut r = raw(&server);
    let after = state(&mut r, "G");
    for key in ["messages", "first_seq", "last_seq", "num_deleted"] {
        assert_eq!(before[key], after[key], "{key}");
    }
    assert_eq!(get(&mut r, "G", 3), None, "a deleted message stays deleted");
    assert_eq!(get(&mut r, "G", doomed[5]), None);
    // Purging everything lets every old segment go but keeps the sequence.
    req(&mut r, "$JS.API.STREAM.PURGE.G", "");
    // Dead segments are deleted in the background, paced.
    let t0 = std::time::Instant::now();
    while segments(dir.path(), "G").len() > 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "only the active segment is left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.terminate().success());
    let server = Server::start_js(1, dir.path(), &args);
    let mut r = raw(&server);
    let st = state(&mut r, "G");
    assert_eq!(
        (st["messages"].as_u64(), st["first_seq"].as_u64()),
        (Some(0), before["last_seq"].as_u64().map(|l| l + 1))
    );
}

#[test]
fn erase_overwrites_the_bytes_and_no_erase_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let mut r = raw(&server);
    req(
        &mut r,
        "$JS.API.STREAM.CREATE.E",
        r#"{"name":"E","subjects":["e.>"]}"#,
    );
    r.request("e.a", None, b"first-SECRET-one");
    r.request("e.b", None, b"middle-SECRET-two");
    r.request("e.c", None, b"last-SECRET-three");
    let on_disk = |needle: &[u8]| {
        segments(dir.path(), "E").iter().any(|p| {
            let b = std::fs::read(p).unwrap();
            b.windows(needle.len()).any(|w| w == needle)
        })
    };
    assert!(on_disk(b"middle-SECRET-two") && on_disk(b"last-SECRET-three"));
    let ok = serde_json::json!({"type":"io.nats.jetstream.api.v1.stream_msg_delete_response","success":true});
    assert_eq!(
        req(&mut r, "$JS.API.STREAM.MSG.DELETE.E", r#"{"seq":2}"#),
        ok
    );
    assert!(
        !on_disk(b"middle-SECRET-two"),
        "erased bytes are gone from the file"
    );
    assert_eq!(
        req(
            &mut r,
            "$JS.API.STREAM.MSG.DELETE.E",
            r#"{"seq":1,"no_erase":true}"#
        ),
        ok
    );
    assert!(
        on_disk(b"first-SECRET-one"),
        "no_erase only marks the message deleted"
    );
    // Erasing the last message keeps its sequence in use.
    assert_eq!(
        req(&mut r, "$JS.API.STREAM.MSG.DELETE.E", r#"{"seq":3}"#),
        ok
    );
    assert!(!on_disk(b"last-SECRET-three"));
    let before = state(&mut r, "E");
    assert!(server.terminate().success());
    let server = Server::start_js(2, dir.path(), &[]);
    let mut r = raw(&server);
    let after = state(&mut r, "E");
    for key in ["messages", "first_seq", "last_seq"] {
        assert_eq!(before[key], after[key], "{key}");
    }
    assert_eq!(after["last_seq"], 3);
    let ack = String::from_utf8(r.request("e.d", None, b"x").1).unwrap();
    assert_eq!(ack, r#"{"stream":"E","seq":4}"#);
}

#[test]
fn messages_beyond_the_cache_are_read_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let mut r = raw(&server);
    req(
        &mut r,
        "$JS.API.STREAM.CREATE.BIG",
        r#"{"name":"BIG","subjects":["big"],"allow_direct":true}"#,
    );
    // 36 MiB: more than the 32 MiB a stream keeps cached, so the first
    // messages are only on disk.
    let body = |i: u64| -> Vec<u8> { (0..256 * 1024).map(|k| (k as u64 * 7 + i) as u8).collect() };
    for i in 0..144u64 {
        r.request("big", None, &body(i));
    }
    for seq in [1u64, 2, 70, 144] {
        assert_eq!(
            get(&mut r, "BIG", seq).unwrap().1,
            body(seq - 1),
            "MSG.GET {seq}"
        );
    }
    let (h, b) = r.request("$JS.API.DIRECT.GET.BIG", None, br#"{"seq":3}"#);
    assert!(String::from_utf8(h)
        .unwrap()
        .contains("Nats-Sequence: 3\r\n"));
    assert_eq!(b, body(2));
}

/// Creates stream `name` on `subject` and publishes `body(0..n)` to it, one
/// acknowledged publish at a time.
fn create_and_publish(
    r: &mut Raw,
    name: &str,
    subject: &str,
    n: u64,
    body: impl Fn(u64) -> Vec<u8>,
) {
    let cfg = format!(r#"{{"name":"{name}","subjects":["{subject}"]}}"#);
    req(r, &format!("$JS.API.STREAM.CREATE.{name}"), &cfg);
    for i in 0..n {
        let ack = String::from_utf8(r.request(subject, None, &body(i)).1).unwrap();
        assert_eq!(ack, format!(r#"{{"stream":"{name}","seq":{}}}"#, i + 1));
    }
}

#[test]
fn interval_sync_mode_stores_and_recovers_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--sync", "interval=100ms", "--segment_bytes", "16384"];
    let server = Server::start_js(2, dir.path(), &args);
    assert!(
        server
            .startup_log
            .iter()
            .any(|l| l.contains("fdatasync every 100ms")),
        "{:?}",
        server.startup_log
    );
    let mut r = raw(&server);
    create_and_publish(&mut r, "IV", "iv", 300, payload);
    // Let at least one periodic sync run, then stop hard.
    std::thread::sleep(Duration::from_millis(300));
    server.kill9();
    let server = Server::start_js(2, dir.path(), &args);
    let mut r = raw(&server);
    let st = state(&mut r, "IV");
    assert_eq!(
        (st["messages"].as_u64(), st["last_seq"].as_u64()),
        (Some(300), Some(300))
    );
    assert_eq!(get(&mut r, "IV", 150).unwrap().1, payload(149));
}

/// Small batches follow the partial last block (in interval mode through the
/// page cache), 300 KiB ones are copied and written direct, 600 KiB ones go
/// from their staging memory on a fresh block; alternating, each rewrites or
/// skips past what the other wrote last.
#[test]
fn alternating_small_and_large_writes_lose_nothing() {
    for sync in ["always", "interval=1m"] {
        let dir = tempfile::tempdir().unwrap();
        let args = ["--sync", sync];
        let body = |i: u64| -> Vec<u8> {
            let n = [100 + i as usize, 300 * 1024, 100 + i as usize, 600 * 1024][i as usize % 4];
            (0..n as u64).map(|k| (k * 31 + i) as u8).collect()
        };
        let server = Server::start_js(1, dir.path(), &args);
        let mut r = raw(&server);
        create_and_publish(&mut r, "MX", "mx", 40, body);
        for i in 0..40u64 {
            assert_eq!(
                get(&mut r, "MX", i + 1).unwrap().1,
                body(i),
                "{sync}: seq {}",
                i + 1
            );
        }
        // In interval mode no sync has run: the page cache must outlive the process.
        server.kill9();
        let server = Server::start_js(1, dir.path(), &args);
        let mut r = raw(&server);
        assert_eq!(state(&mut r, "MX")["messages"].as_u64(), Some(40), "{sync}");
        for i in 0..40u64 {
            let got = get(&mut r, "MX", i + 1).unwrap().1;
            assert_eq!(got, body(i), "{sync}: seq {} after a restart", i + 1);
        }
    }
}

#[test]
fn compaction_lets_old_segments_go_under_a_key_value_load() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--segment_bytes", "4096"];
    let server = Server::start_js(1, dir.path(), &args);
    let mut r = raw(&server);
    req(
        &mut r,
        "$JS.API.STREAM.CREATE.KV_c",
        r#"{"name":"KV_c","subjects":["$KV.c.>"],"max_msgs_per_subject":1,"allow_direct":true}"#,
    );
    // One key written once, one rewritten many times.
    r.request("$KV.c.once", None, b"written-once");
    for i in 0..3000u64 {
        r.request("$KV.c.hot", None, &payload(i));
    }
    let files = segments(dir.path(), "KV_c").len();
    assert!(
        files <= 4,
        "old segments were reclaimed ({files} files left)"
    );
    let st = state(&mut r, "KV_c");
    assert_eq!(st["messages"], 2);
    assert!(server.terminate().success());
    let server = Server::start_js(1, dir.path(), &args);
    let mut r = raw(&server);
    let after = state(&mut r, "KV_c");
    for key in ["messages", "first_seq", "last_seq", "bytes"] {
        assert_eq!(st[key], after[key], "{key}");
    }
    assert_eq!(get(&mut r, "KV_c", 1).unwrap().1, b"written-once");
    assert_eq!(get(&mut r, "KV_c", 3001).unwrap().1, payload(2999));
    let (_, b) = r.request("$JS.API.DIRECT.GET.KV_c.$KV.c.once", None, b"");
    assert_eq!(b, b"written-once");
}

/// Everything a restart rebuilds (counts, subjects, deletes, rollups, message
/// ids inside the duplicate window, TTLs, source positions aside) as seen
/// through the API.
fn snapshot(r: &mut Raw, stream: &str, last: u64) -> Vec<String> {
    let info = req(
        r,
        &format!("$JS.API.STREAM.INFO.{stream}"),
        r#"{"subjects_filter":">","deleted_details":true}"#,
    );
    let mut out = vec![info["state"].to_string()];
    for seq in 1..=last {
        out.push(format!("{seq}: {:?}", get(r, stream, seq)));
    }
    out
}

#[test]
fn a_restart_from_index_files_rebuilds_what_a_full_scan_does() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--segment_bytes", "8192"];
    let server = Server::start_js(1, dir.path(), &args);
    let mut r = raw(&server);
    req(
        &mut r,
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":["t.>"],"allow_rollup_hdrs":true,"allow_msg_ttl":true,
            "max_msgs_per_subject":50,"duplicate_window":60000000000}"#,
    );
    for i in 0..300u64 {
        let subject = format!("t.{}", i % 7);
        let hdr = match i % 10 {
            0 => Some(format!("NATS/1.0\r\nNats-Msg-Id: id{i}\r\n\r\n")),
            3 => Some("NATS/1.0\r\nNats-TTL: 1h\r\nX-Other: y\r\n\r\n".to_string()),
            9 if i % 90 == 9 => Some("NATS/1.0\r\nNats-Rollup: sub\r\n\r\n".to_string()),
            _ => None,
        };
        r.request(&subject, hdr.as_deref().map(str::as_bytes), &payload(i));
    }
    for seq in [5u64, 6, 120, 250] {
        req(
            &mut r,
            "$JS.API.STREAM.MSG.DELETE.T",
            // Erased records differ from what was written (by design: the
            // delete record says the same), so the comparison below skips them.
            &format!("{{\"seq\":{seq},\"no_erase\":true}}"),
        );
    }
    req(&mut r, "$JS.API.STREAM.PURGE.T", r#"{"filter":"t.2"}"#);
    let before = snapshot(&mut r, "T", 305);
    assert!(server.terminate().success());
    let segs = segments(dir.path(), "T");
    assert!(segs.len() >= 5, "{segs:?}");
    // The index files built as segments were written are the ones a scan of
    // each segment builds.
    for s in &segs {
        let first: u64 = s.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let bytes = bytes::Bytes::from(std::fs::read(s).unwrap());
        let scanned = jetcore::js::store::recovery::index_of("T", first, s, &bytes);
        assert!(
            std::fs::read(s.with_extension("idx")).unwrap() == scanned,
            "{s:?}"
        );
    }

    // From the index files alone.
    let server = Server::start_js(1, dir.path(), &args);
    assert!(
        server.startup_log.join("\n").contains("read 0 of"),
        "{:?}",
        server.startup_log
    );
    let mut r = raw(&server);
    assert_eq!(snapshot(&mut r, "T", 305), before);
    // A message id inside the duplicate window is still known.
    let hdr = b"NATS/1.0\r\nNats-Msg-Id: id290\r\n\r\n";
    let ack = String::from_utf8(r.request("t.0", Some(hdr), b"again").1).unwrap();
    assert!(ack.contains("\"duplicate\": true"), "{ack}");
    assert!(server.terminate().success());

    // From the segments alone: the same.
    for s in segments(dir.path(), "T") {
        std::fs::remove_file(s.with_extension("idx")).unwrap();
    }
    let server = Server::start_js(1, dir.path(), &args);
    let mut r = raw(&server);
    assert_eq!(snapshot(&mut r, "T", 305), before);
    assert!(server.terminate().success());
}
