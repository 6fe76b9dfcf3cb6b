use proptest::prelude::*;

use super::*;

const MAX: usize = 300;

/// A client frame: `first` is the first byte (FIN, RSV, opcode); masked
/// with `key` unless it is `None`; the length in its `form` (0 the shortest,
/// 1 in 16 bits, 2 in 64 bits, where the length allows).
fn client_frame(first: u8, payload: &[u8], key: Option<[u8; 4]>, form: u8) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    let length = payload.len();
    match (length, form) {
        (0..=125, 0) => out.push(mask_bit | length as u8),
        (0..=65535, 0 | 1) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    match key {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(first, payload, Some([0x11, 0x22, 0x33, 0x44]), 0)
}

/// What a reader makes of `chunks` fed one after the other: everything it
/// read, then the violation that stopped it, if one did.
fn read_all<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Received>, Option<Violation>) {
    let mut reader = Reader::new(MAX);
    let mut received = Vec::new();
    for mut chunk in chunks {
        loop {
            match reader.feed(&mut chunk) {
                Ok(Some(one)) => received.push(one),
                Ok(None) => break,
                Err(violation) => return (received, Some(violation)),
            }
        }
        assert!(chunk.is_empty(), "the reader reads all it is given");
    }
    (received, None)
}

fn code_of(bytes: &[u8]) -> Option<u16> {
    read_all([bytes]).1.map(|violation| violation.code)
}

#[test]
fn a_masked_text_frame_is_a_message() {
    let (received, violation) = read_all([&masked(0x81, b"Hey there")[..]]);
    assert_eq!(received, [Received::Text("Hey there".into())]);
    assert_eq!(violation, None);
}

#[test]
fn fragments_with_control_frames_between_them_make_one_message() {
    let bytes = [
        masked(0x01, b"Hey "),
        masked(0x89, b"p"),
        masked(0x00, b"the"),
        masked(0x8A, b""),
        masked(0x80, b"re"),
    ]
    .concat();
    let (received, violation) = read_all([&bytes[..]]);
    assert_eq!(
        received,
        [
            Received::Ping(b"p".to_vec()),
            Received::Pong,
            Received::Text("Hey there".into())
        ]
    );
    assert_eq!(violation, None);
}

#[test]
fn every_violation_gets_the_close_code_rfc_6455_asks_for() {
    let hey = b"{\"message\":\"Hey\"}";
    let cases: Vec<(&str, Vec<u8>, u16, Reason)> = vec![
        (
            "unmasked",
            client_frame(0x81, hey, None, 0),
            1002,
            Reason::Protocol,
        ),
        (
            "reserved data opcode",
            masked(0x83, hey),
            1002,
            Reason::Protocol,
        ),
        (
            "reserved control opcode",
            masked(0x8B, b""),
            1002,
            Reason::Protocol,
        ),
        ("reserved bit", masked(0xC1, hey), 1002, Reason::Protocol),
        (
            "lone continuation",
            masked(0x80, hey),
            1002,
            Reason::Protocol,
        ),
        (
            "fragmented control",
            masked(0x09, b""),
            1002,
            Reason::Protocol,
        ),
        (
            "control over 125",
            masked(0x89, &[0; 126]),
            1002,
            Reason::Protocol,
        ),
        (
            "new message mid-message",
            [masked(0x01, b"a"), masked(0x81, b"b")].concat(),
            1002,
            Reason::Protocol,
        ),
        (
            "invalid UTF-8",
            masked(0x81, &[b'{', 0xff, b'}']),
            1007,
            Reason::InvalidUtf8,
        ),
        (
            "close 999",
            masked(0x88, &999u16.to_be_bytes()),
            1002,
            Reason::Protocol,
        ),
        (
            "close 1005",
            masked(0x88, &1005u16.to_be_bytes()),
            1002,
            Reason::Protocol,
        ),
        ("close 1-byte", masked(0x88, &[3]), 1002, Reason::Protocol),
        (
            "close reason not UTF-8",
            masked(0x88, &[0x03, 0xE8, 0xff]),
            1007,
            Reason::InvalidUtf8,
        ),
        (
            "frame over the limit",
            masked(0x81, &[b' '; MAX + 1]),
            1009,
            Reason::TooLarge,
        ),
        (
            "fragments over the limit",
            [masked(0x01, &[b' '; MAX]), masked(0x80, b" ")].concat(),
            1009,
            Reason::TooLarge,
        ),
        ("binary", masked(0x82, hey), 1003, Reason::Binary),
    ];
    for (case, bytes, code, reason) in cases {
        let (received, violation) = read_all([&bytes[..]]);
        assert_eq!(received, [], "{case}");
        let violation = violation.unwrap_or_else(|| panic!("{case}: not refused"));
        assert_eq!((violation.code, violation.reason), (code, reason), "{case}");
    }
}

#[test]
fn close_frames_carry_a_code_a_client_may_send() {
    for (code, allowed) in [
        (1000, true),
        (1003, true),
        (1004, false),
        (1006, false),
        (1011, true),
        (1013, true),
        (1014, false),
        (1015, false),
        (2999, false),
        (3000, true),
        (4999, true),
        (5000, false),
    ] {
        let bytes = masked(0x88, &u16::to_be_bytes(code));
        let (received, _) = read_all([&bytes[..]]);
        assert_eq!(received == [Received::Close(Some(code))], allowed, "{code}");
    }
    assert_eq!(
        read_all([&masked(0x88, b"")[..]]).0,
        [Received::Close(None)]
    );
}

#[test]
fn a_frame_too_big_is_refused_from_its_head_alone() {
    let head = &masked(0x81, &vec![b' '; 70_000])[..14];
    assert_eq!(code_of(head), Some(1009));
}

#[test]
fn between_messages_nothing_is_held() {
    let mut reader = Reader::new(MAX);
    let bytes = masked(0x81, &[b'x'; 200]);
    let mut input = &bytes[..];
    assert!(matches!(
        reader.feed(&mut input),
        Ok(Some(Received::Text(_)))
    ));
    assert!(!reader.in_progress());
    assert_eq!(reader.message.capacity() + reader.control.capacity(), 0);
}

#[test]
fn a_message_is_in_progress_from_its_first_byte_to_its_last() {
    let mut reader = Reader::new(MAX);
    let bytes = [masked(0x01, b"ab"), masked(0x89, b""), masked(0x80, b"c")].concat();
    for (index, byte) in bytes.iter().enumerate() {
        let mut input = std::slice::from_ref(byte);
        reader.feed(&mut input).unwrap();
        let last = index == bytes.len() - 1;
        assert_eq!(reader.in_progress(), !last, "after byte {index}");
    }
}

/// One frame of a generated stream, and what reading it must give.
#[derive(Debug, Clone)]
enum Piece {
    /// A text message in fragments, control frames between them.
    Text {
        text: String,
        cuts: Vec<usize>,
        pings: Vec<Vec<u8>>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// A stream's end: nothing, a close frame, or one violation.
#[derive(Debug, Clone)]
enum Ending {
    Nothing,
    Close(u16),
    Violation(Vec<u8>, u16),
}

fn piece() -> impl Strategy<Value = Piece> {
    let control = proptest::collection::vec(any::<u8>(), 0..=125);
    prop_oneof![
        4 => ("\\PC{0,60}", proptest::collection::vec(0usize..200, 0..4), proptest::collection::vec(control.clone(), 0..3))
            .prop_map(|(text, cuts, pings)| Piece::Text { text, cuts, pings }),
        1 => control.clone().prop_map(Piece::Ping),
        1 => control.prop_map(Piece::Pong),
    ]
}

fn ending() -> impl Strategy<Value = Ending> {
    let hey = b"{\"message\":\"Hey\"}".to_vec();
    prop_oneof![
        Just(Ending::Nothing),
        prop_oneof![Just(1000u16), Just(1001), Just(3000), Just(4999)].prop_map(Ending::Close),
        Just(Ending::Violation(client_frame(0x81, &hey, None, 0), 1002)),
        Just(Ending::Violation(masked(0xA1, &hey), 1002)),
        Just(Ending::Violation(masked(0x87, &hey), 1002)),
        Just(Ending::Violation(masked(0x80, &hey), 1002)),
        Just(Ending::Violation(masked(0x0A, b""), 1002)),
        Just(Ending::Violation(
            masked(0x88, &1016u16.to_be_bytes()),
            1002
        )),
        Just(Ending::Violation(masked(0x81, &[0xc3, 0x28]), 1007)),
        Just(Ending::Violation(masked(0x82, &hey), 1003)),
        Just(Ending::Violation(masked(0x81, &[b'x'; MAX + 1]), 1009)),
    ]
}

/// The bytes of `pieces` then `ending`, with masks and length forms drawn
/// from `noise`; and what reading them must give.
fn encode(
    pieces: &[Piece],
    ending: &Ending,
    noise: &[u8],
) -> (Vec<u8>, Vec<Received>, Option<u16>) {
    let mut noise = noise.iter().copied().cycle();
    let mut draw = || noise.next().unwrap_or(0);
    let mut frame = |first: u8, payload: &[u8]| {
        let key = [draw(), draw(), draw(), draw()];
        client_frame(first, payload, Some(key), draw() % 3)
    };
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text { text, cuts, pings } => {
                let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (text.len() + 1)).collect();
                cuts.sort_unstable();
                cuts.dedup();
                let mut from = 0;
                let mut pings = pings.iter();
                for (index, to) in cuts.iter().chain([&text.len()]).enumerate() {
                    if *to < from {
                        continue;
                    }
                    let fin = if *to == text.len() { 0x80 } else { 0 };
                    let opcode = if index == 0 { TEXT } else { CONTINUATION };
                    bytes.extend(frame(fin | opcode, &text.as_bytes()[from..*to]));
                    from = *to;
                    if fin == 0
                        && let Some(ping) = pings.next()
                    {
                        bytes.extend(frame(0x80 | PING, ping));
                        expected.push(Received::Ping(ping.clone()));
                    }
                    if fin != 0 {
                        break;
                    }
                }
                expected.push(Received::Text(text.clone()));
            }
            Piece::Ping(payload) => {
                bytes.extend(frame(0x80 | PING, payload));
                expected.push(Received::Ping(payload.clone()));
            }
            Piece::Pong(payload) => {
                bytes.extend(frame(0x80 | PONG, payload));
                expected.push(Received::Pong);
            }
        }
    }
    let code = match ending {
        Ending::Nothing => None,
        Ending::Close(code) => {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice("bye".as_bytes());
            bytes.extend(frame(0x80 | CLOSE, &payload));
            expected.push(Received::Close(Some(*code)));
            None
        }
        Ending::Violation(frame, code) => {
            bytes.extend(frame);
            Some(*code)
        }
    };
    (bytes, expected, code)
}

/// `bytes` cut at `cuts` (positions taken modulo its length).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        chunks.push(&bytes[from..cut]);
        from = cut;
    }
    chunks
}

proptest! {
    // 1,000 streams a run (several frames each, every length form, masks,
    // fragments with pings between them, each way of ending), each read
    // whole, cut at up to 20 random places, and a byte at a time.
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_stream_reads_as_its_messages_however_it_is_split(
        pieces in proptest::collection::vec(piece(), 0..6),
        ending in ending(),
        noise in proptest::collection::vec(any::<u8>(), 1..64),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let (bytes, expected, code) = encode(&pieces, &ending, &noise);
        let whole = read_all([&bytes[..]]);
        prop_assert_eq!(&whole.0, &expected);
        prop_assert_eq!(whole.1.as_ref().map(|violation| violation.code), code);
        prop_assert_eq!(&read_all(split(&bytes, &cuts)), &whole);
        prop_assert_eq!(&read_all(bytes.chunks(1)), &whole);
    }

    // Any bytes at all: no panic, the same outcome however they are split,
    // and only the close codes of the RFC's violations.
    #[test]
    fn arbitrary_bytes_never_panic_and_read_the_same_however_split(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let whole = read_all([&bytes[..]]);
        prop_assert_eq!(&read_all(split(&bytes, &cuts)), &whole);
        if let Some(violation) = &whole.1 {
            prop_assert!([1002, 1003, 1007, 1009].contains(&violation.code));
        }
    }
}
