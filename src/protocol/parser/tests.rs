//! Parser tests: ops whole, byte by byte, at every split point, and random input.

use super::*;
use proptest::prelude::*;

const STREAM: &[u8] = b"CONNECT {\"verbose\":false}\r\n\
PING\r\n\
pong\n\
SUB foo.* 1\r\n\
SUB foo.> q 22\r\n\
sub\tbar\t\t3\r\n\
PUB foo.bar 5\r\nhello\r\n\
PUB foo.bar _INBOX.x 0\r\n\r\n\
HPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
HPUB h r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
PUB bin 4\r\n\r\n\r\n\r\n\
UNSUB 1\r\n\
UNSUB 22 10\r\n\
+OK\r\n\
INFO {}\r\n";

fn parse_all(chunks: &[&[u8]]) -> Result<Vec<ClientOp>, ParseError> {
    let mut parser = Parser::new(1024 * 1024, 4096);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(op) = parser.next(&mut buf)? {
            ops.push(op);
        }
    }
    assert!(buf.is_empty(), "unparsed tail {:?}", buf);
    Ok(ops)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn whole_stream_parses_to_expected_ops() {
    let ops = parse_all(&[STREAM]).expect("valid stream");
    let pub_op = |subject: &str, reply: Option<&str>, hdr_len: Option<usize>, msg: &str| {
        ClientOp::Pub(PubOp {
            subject: b(subject),
            reply: reply.map(b),
            hdr_len,
            msg: b(msg),
        })
    };
    let expected = vec![
        ClientOp::Connect(b("{\"verbose\":false}")),
        ClientOp::Ping,
        ClientOp::Pong,
        ClientOp::Sub {
            subject: b("foo.*"),
            queue: None,
            sid: b("1"),
        },
        ClientOp::Sub {
            subject: b("foo.>"),
            queue: Some(b("q")),
            sid: b("22"),
        },
        ClientOp::Sub {
            subject: b("bar"),
            queue: None,
            sid: b("3"),
        },
        pub_op("foo.bar", None, None, "hello"),
        pub_op("foo.bar", Some("_INBOX.x"), None, ""),
        pub_op("h", None, Some(12), "NATS/1.0\r\n\r\nhi"),
        pub_op("h", Some("r"), Some(12), "NATS/1.0\r\n\r\nhi"),
        pub_op("bin", None, None, "\r\n\r\n"),
        ClientOp::Unsub {
            sid: b("1"),
            max: None,
        },
        ClientOp::Unsub {
            sid: b("22"),
            max: Some(10),
        },
        ClientOp::Ignored,
        ClientOp::Ignored,
    ];
    assert_eq!(ops, expected);
}

#[test]
fn every_split_point_parses_identically() {
    let whole = parse_all(&[STREAM]).expect("valid stream");
    for cut in 0..=STREAM.len() {
        let (a, b) = STREAM.split_at(cut);
        assert_eq!(parse_all(&[a, b]).expect("valid"), whole, "cut at {cut}");
    }
    for cut1 in (0..STREAM.len()).step_by(7) {
        for cut2 in cut1..STREAM.len() {
            let chunks = [&STREAM[..cut1], &STREAM[cut1..cut2], &STREAM[cut2..]];
            assert_eq!(
                parse_all(&chunks).expect("valid"),
                whole,
                "cuts {cut1},{cut2}"
            );
        }
    }
}

#[test]
fn byte_by_byte_parses_identically() {
    let whole = parse_all(&[STREAM]).expect("valid stream");
    let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
    assert_eq!(parse_all(&chunks).expect("valid"), whole);
}

fn first_error(input: &[u8]) -> Option<ParseError> {
    let mut parser = Parser::new(1024, 4096);
    let mut buf = BytesMut::from(input);
    loop {
        match parser.next(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

#[test]
fn bad_input_is_refused_with_the_right_error() {
    let cases: &[(&[u8], Option<ParseError>)] = &[
        (b"FOO bar\r\n", Some(ParseError::UnknownOp)),
        (b"\x00\x01hello\r\n", Some(ParseError::UnknownOp)),
        (b"PUB foo -1\r\n", Some(ParseError::BadPubArgs)),
        (b"PUB foo abc\r\n", Some(ParseError::BadPubArgs)),
        (b"PUB foo\r\n", Some(ParseError::BadPubArgs)),
        (b"PUB a b c 1\r\n", Some(ParseError::BadPubArgs)),
        (b"PUB foo 5\r\nhelloXX\r\n", Some(ParseError::UnknownOp)),
        (b"PUB foo 1025\r\n", Some(ParseError::PayloadTooBig)),
        (b"HPUB foo 5 3\r\n", Some(ParseError::BadPubArgs)),
        (b"SUB foo\r\n", Some(ParseError::BadSubArgs)),
        (b"SUB a b c d\r\n", Some(ParseError::BadSubArgs)),
        (b"UNSUB\r\n", Some(ParseError::UnknownOp)),
        (b"PUB\r\n", Some(ParseError::UnknownOp)),
        (b"SUB\r\n", Some(ParseError::UnknownOp)),
        (b"\r\n", Some(ParseError::UnknownOp)),
        (b"PIN\r\n", Some(ParseError::UnknownOp)),
        (b"MSG foo 1 2\r\n", Some(ParseError::UnknownOp)),
        (b"-ERR 'x'\r\n", Some(ParseError::ClientError)),
        (b"UNSUB 1 2 3\r\n", Some(ParseError::BadUnsubArgs)),
        (b"SUB foo q1 q2 1\r\n", Some(ParseError::BadSubArgs)),
        (
            b"PUB foo 99999999999999999999\r\n",
            Some(ParseError::BadPubArgs),
        ),
        (b"PUB foo 2\r\nh\r\nPING\r\n", Some(ParseError::UnknownOp)),
        (b"PUB foo 2\r\nhi\nPING\r\n", Some(ParseError::UnknownOp)),
        (b"UNSUB 1 x\r\n", None),
        (b"PING x\r\n", None),
        (b"PINGX\r\n", None),
        (b"CONNECT{}\r\n", None),
        (b"PUB foo 5\r\nhel", None),
        (b"PUB foo 1024\r\n", None),
    ];
    for (input, expected) in cases {
        assert_eq!(
            first_error(input),
            *expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn control_line_limit_counts_arguments_with_and_without_line_feed() {
    let mut long = b"PUB ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    assert_eq!(first_error(&long), Some(ParseError::ControlLineTooLong));
    long.extend_from_slice(b" 1\r\n");
    assert_eq!(first_error(&long), Some(ParseError::ControlLineTooLong));
    let garbage = vec![b'a'; 5000];
    assert_eq!(first_error(&garbage), Some(ParseError::UnknownOp));
    // Exactly 4096 bytes of arguments are accepted, 4097 are not.
    let line = |args_len: usize| {
        let mut l = b"SUB ".to_vec();
        l.extend(std::iter::repeat_n(b'a', args_len - 2));
        l.extend_from_slice(b" 1\r\n");
        l
    };
    assert_eq!(first_error(&line(4096)), None);
    assert_eq!(
        first_error(&line(4097)),
        Some(ParseError::ControlLineTooLong)
    );
}

#[test]
fn over_long_line_of_an_unknown_verb_is_unknown_with_or_without_line_feed() {
    // Found by the split proptest: 40 bytes of arguments behind an unknown verb.
    let data = b"1P1 11PP1PPP1111P11P11P1111P1P1P1PPP1PPP1\n";
    let whole = run_chunks(&[data]);
    assert_eq!(whole, (vec![], Some(ParseError::UnknownOp)));
    assert_eq!(run_chunks(&[&data[..41], &data[41..]]), whole);
    // A known verb with the same line is over the limit either way.
    let mut sub = b"SUB".to_vec();
    sub.extend_from_slice(&data[3..]);
    let whole = run_chunks(&[&sub]);
    assert_eq!(whole, (vec![], Some(ParseError::ControlLineTooLong)));
    assert_eq!(run_chunks(&[&sub[..41], &sub[41..]]), whole);
}

#[test]
fn unsub_with_bad_max_means_now_and_hpub_without_headers_is_plain() {
    let ops = parse_all(&[b"UNSUB 1 abc\r\nUNSUB 2 -1\r\nHPUB foo 0 2\r\nhi\r\n"]).unwrap();
    assert_eq!(
        ops[0],
        ClientOp::Unsub {
            sid: b("1"),
            max: Some(0)
        }
    );
    assert_eq!(
        ops[1],
        ClientOp::Unsub {
            sid: b("2"),
            max: Some(0)
        }
    );
    assert_eq!(
        ops[2],
        ClientOp::Pub(PubOp {
            subject: b("foo"),
            reply: None,
            hdr_len: None,
            msg: b("hi")
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Random bytes at random splits: the parser never panics, never buffers more
    /// than a control line plus a payload, and gives the same answer as whole input.
    #[test]
    fn random_input_at_random_splits_matches_whole(
        data in proptest::collection::vec(prop_oneof![
            Just(b'P'), Just(b'U'), Just(b'B'), Just(b'S'), Just(b' '), Just(b'\r'),
            Just(b'\n'), Just(b'1'), Just(b'2'), Just(b'H'), Just(b'I'), Just(b'N'),
            Just(b'G'), any::<u8>()
        ], 0..300),
        cuts in proptest::collection::vec(0usize..300, 0..6),
    ) {
        let whole = run_chunks(&[&data]);
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        points.sort();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&data[last..p]);
            last = p;
        }
        chunks.push(&data[last..]);
        prop_assert_eq!(run_chunks(&chunks), whole);
    }

    /// Valid streams built from random ops survive any split.
    #[test]
    fn random_valid_ops_survive_any_split(
        ops in proptest::collection::vec((0u8..4, "[a-z]{1,8}", proptest::collection::vec(any::<u8>(), 0..40)), 1..20),
        cut_seed in any::<u64>(),
    ) {
        let mut stream = Vec::new();
        for (kind, subject, payload) in &ops {
            match kind {
                0 => { stream.extend_from_slice(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
                       stream.extend_from_slice(payload); stream.extend_from_slice(b"\r\n"); }
                1 => stream.extend_from_slice(format!("SUB {subject} 1\r\n").as_bytes()),
                2 => { stream.extend_from_slice(format!("HPUB {subject} 12 {}\r\nNATS/1.0\r\n\r\n", 12 + payload.len()).as_bytes());
                       stream.extend_from_slice(payload); stream.extend_from_slice(b"\r\n"); }
                _ => stream.extend_from_slice(b"PING\r\n"),
            }
        }
        let whole = parse_all(&[&stream]).expect("valid");
        prop_assert_eq!(whole.len(), ops.len());
        let cut = (cut_seed as usize) % (stream.len() + 1);
        let (a, b) = stream.split_at(cut);
        prop_assert_eq!(parse_all(&[a, b]).expect("valid"), whole);
    }
}

/// Ops (or the first error) from chunks fed in turn; buffered bytes stay bounded.
fn run_chunks(chunks: &[&[u8]]) -> (Vec<ClientOp>, Option<ParseError>) {
    let mut parser = Parser::new(64, 32);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.next(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(e) => return (ops, Some(e)),
            }
        }
        assert!(buf.len() <= 64 + 2, "buffered {}", buf.len());
    }
    (ops, None)
}

#[test]
fn a_pub_slices_the_read_buffer_and_a_sub_copies_it() {
    let mut parser = Parser::new(1024, 4096);
    let mut buf = BytesMut::from(&b"PUB a.b _INBOX.1 2\r\nhi\r\nSUB a.* q 9\r\n"[..]);
    let range = buf.as_ptr_range();
    let inside = |b: &Bytes| range.contains(&b.as_ptr());
    let Ok(Some(ClientOp::Pub(p))) = parser.next(&mut buf) else {
        panic!("a PUB")
    };
    assert_eq!((&p.subject[..], &p.msg[..]), (&b"a.b"[..], &b"hi"[..]));
    assert_eq!(p.reply.as_deref(), Some(&b"_INBOX.1"[..]));
    assert!(inside(&p.subject) && inside(&p.msg) && p.reply.as_ref().is_some_and(inside));
    let Ok(Some(ClientOp::Sub {
        subject,
        queue: Some(queue),
        sid,
    })) = parser.next(&mut buf)
    else {
        panic!("a SUB with a queue")
    };
    assert_eq!(
        (&subject[..], &queue[..], &sid[..]),
        (&b"a.*"[..], &b"q"[..], &b"9"[..])
    );
    // Kept for the subscription's life: none pins the read buffer.
    assert!(!inside(&subject) && !inside(&queue) && !inside(&sid));
}
