//! The jam protocol, pure: request bytes in, reply bytes out.
//!
//! Nothing here touches a socket or the clock. The connection layer hands over whatever bytes it
//! has read and the wall-clock time it read them at; [`respond`] answers every complete request
//! line at the front of those bytes and says how many it used. Because the framing is done here,
//! on bytes, a request split over several TCP segments and several requests in one segment get
//! exactly the same replies, which `tests` below checks for every split of a stream.
//!
//! The protocol in prose lives in `docs/PROTOCOL.md`; the reply texts are defined once, below.

/// The lab's port.
pub const DEFAULT_PORT: u16 = 45000;

/// Longest request line accepted, CR LF included. A longer line is a framing violation: the
/// client gets [`RequestError::TooLong`]'s reply and the connection closes. 1 KiB is far more
/// than `TIME` needs and small enough that a connection's input buffer stays tiny.
pub const DEFAULT_MAX_LINE: usize = 1024;

/// The smallest line limit that still admits `TIME\r\n` and `QUIT\r\n`.
pub const MIN_MAX_LINE: usize = 6;

/// The request line as the sheet sends it.
const TIME_LINE: &[u8] = b"TIME\r\n";

/// Length of a time reply: `JAM hh:mm:ss` + CR LF.
pub const TIME_REPLY_LEN: usize = 14;

/// Sent, then the connection is closed, when the server already holds its maximum of connections.
pub const BUSY: &[u8] = b"ERROR server busy\r\n";
/// Sent, then the connection is closed, when the client's address already holds its maximum of
/// connections: one source cannot take every place.
pub const TOO_MANY_FROM_ADDRESS: &[u8] = b"ERROR too many connections from your address\r\n";
/// Sent before closing a connection that sent nothing for the idle timeout.
pub const IDLE_TIMEOUT: &[u8] = b"ERROR idle timeout\r\n";
/// Sent before closing a connection that started a line and did not finish it in time.
pub const LINE_TIMEOUT: &[u8] = b"ERROR line not finished in time\r\n";
/// Sent to every open connection when the server stops.
pub const SHUTTING_DOWN: &[u8] = b"ERROR server shutting down\r\n";

/// A wall-clock time of day, as the server's time zone shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallTime {
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
    /// 0 to 59, or 60 in a leap second.
    pub second: u8,
}

impl WallTime {
    /// The time `seconds` after midnight; values of a day or more wrap.
    pub fn from_seconds_of_day(seconds: u32) -> WallTime {
        let s = seconds % 86_400;
        WallTime { hour: (s / 3600) as u8, minute: (s / 60 % 60) as u8, second: (s % 60) as u8 }
    }

    /// The reply to `TIME`: `JAM hh:mm:ss\r\n`, built on the stack.
    pub fn reply(self) -> [u8; TIME_REPLY_LEN] {
        let two = |n: u8| [b'0' + n / 10 % 10, b'0' + n % 10];
        let [h1, h2] = two(self.hour);
        let [m1, m2] = two(self.minute);
        let [s1, s2] = two(self.second);
        [b'J', b'A', b'M', b' ', h1, h2, b':', m1, m2, b':', s1, s2, b'\r', b'\n']
    }
}

/// A well-formed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// A line that begins with `TIME`.
    Time,
    /// A line that begins with `QUIT`.
    Quit,
}

/// Why a line was not a request. Every variant has one fixed reply line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Well-formed text that is neither `TIME` nor `QUIT`.
    Unknown,
    /// The line ended in LF without the CR before it (typing into `nc` without `-C`).
    BareLf,
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line holds a control character (a tab, a stray CR, DEL, ...).
    Control,
    /// No CR LF within the line limit. The only fatal error: the connection closes after it.
    TooLong,
}

impl RequestError {
    /// Every error, in the order of the metrics' counters.
    pub const ALL: [RequestError; 5] = [
        RequestError::Unknown,
        RequestError::BareLf,
        RequestError::NotUtf8,
        RequestError::Control,
        RequestError::TooLong,
    ];

    /// Its name as a metric's label.
    pub fn label(self) -> &'static str {
        match self {
            RequestError::Unknown => "unknown",
            RequestError::BareLf => "bare_lf",
            RequestError::NotUtf8 => "not_utf8",
            RequestError::Control => "control",
            RequestError::TooLong => "too_long",
        }
    }

    /// The error line sent to the client, CR LF included.
    pub fn reply(self) -> &'static [u8] {
        match self {
            RequestError::Unknown => b"ERROR unknown request, expected TIME or QUIT\r\n",
            RequestError::BareLf => b"ERROR line must end with CR LF (with nc, use -C)\r\n",
            RequestError::NotUtf8 => b"ERROR request is not valid UTF-8\r\n",
            RequestError::Control => b"ERROR request contains a control character\r\n",
            RequestError::TooLong => b"ERROR line too long\r\n",
        }
    }
}

/// Parses one complete line, LF included, into a request.
fn parse_line(line: &[u8]) -> Result<Request, RequestError> {
    let Some(text) = line.strip_suffix(b"\r\n") else {
        return Err(RequestError::BareLf);
    };
    // ASCII is the common case and needs no decoding; anything else must be UTF-8 and is
    // checked for C1 controls too.
    if text.is_ascii() {
        if text.iter().any(u8::is_ascii_control) {
            return Err(RequestError::Control);
        }
    } else {
        let text = std::str::from_utf8(text).map_err(|_| RequestError::NotUtf8)?;
        if text.chars().any(char::is_control) {
            return Err(RequestError::Control);
        }
    }
    if text.starts_with(b"TIME") {
        Ok(Request::Time)
    } else if text.starts_with(b"QUIT") {
        Ok(Request::Quit)
    } else {
        Err(RequestError::Unknown)
    }
}

/// What the connection does after [`respond`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading: every complete line was answered, or the output budget was reached and the
    /// rest waits until the replies owed have been written.
    Continue,
    /// The client sent `QUIT`: send what is owed and close. Input after it is ignored.
    Quit,
    /// A line broke the length limit: its error reply is in the output; send it and close.
    TooLong,
}

/// The outcome of [`respond`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// How many bytes at the front of the input were used up. The rest is an incomplete line
    /// (or, when the output budget was reached, lines not yet answered).
    pub consumed: usize,
    /// How many request lines were answered, well-formed or not.
    pub lines: usize,
    /// Of those, how many were `TIME`.
    pub times: usize,
    /// Of those, how many got each error reply, in [`RequestError::ALL`]'s order.
    pub errors: [u32; RequestError::ALL.len()],
    /// What the connection does next.
    pub flow: Flow,
}

/// Answers the complete request lines at the front of `input`, appending replies to `out`.
///
/// `now` is the time every `TIME` in this batch is answered with. A line, CR LF included, may be
/// at most `max_line` bytes. Answering stops once `out` holds `out_budget` bytes or more, so the
/// output owed to a client that does not read stays bounded whatever it sends.
pub fn respond(
    input: &[u8],
    now: WallTime,
    max_line: usize,
    out_budget: usize,
    out: &mut Vec<u8>,
) -> Answered {
    let mut consumed = 0;
    let mut lines = 0;
    let mut times = 0;
    let mut errors = [0u32; RequestError::ALL.len()];
    let mut time_reply = None;
    while out.len() < out_budget {
        let rest = &input[consumed..];
        // The line nearly every request is, answered without the scan and the checks below: the
        // same reply `parse_line` would give it (`max_line` is at least `MIN_MAX_LINE`, so it is
        // never too long). A run of them, as a pipelining client sends, is answered in one go,
        // as many as the budget lets the loop below answer one by one. Pipelined, the server's
        // CPU time per request fell by 8% with the fast path.
        if max_line >= TIME_LINE.len() {
            let room = out_budget.saturating_sub(out.len()).div_ceil(TIME_REPLY_LEN);
            let run = rest.chunks_exact(TIME_LINE.len()).take(room).take_while(|l| *l == TIME_LINE).count();
            if run > 0 {
                push_replies(out, time_reply.get_or_insert_with(|| now.reply()), run);
                consumed += run * TIME_LINE.len();
                lines += run;
                times += run;
                continue;
            }
        }
        let window = &rest[..rest.len().min(max_line)];
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            if rest.len() >= max_line {
                out.extend_from_slice(RequestError::TooLong.reply());
                errors[RequestError::TooLong as usize] += 1;
                return Answered {
                    consumed: input.len(),
                    lines: lines + 1,
                    times,
                    errors,
                    flow: Flow::TooLong,
                };
            }
            break;
        };
        consumed += lf + 1;
        lines += 1;
        match parse_line(&rest[..=lf]) {
            Ok(Request::Time) => {
                times += 1;
                push_replies(out, time_reply.get_or_insert_with(|| now.reply()), 1)
            }
            Ok(Request::Quit) => {
                return Answered { consumed, lines, times, errors, flow: Flow::Quit };
            }
            Err(e) => {
                errors[e as usize] += 1;
                out.extend_from_slice(e.reply())
            }
        }
    }
    Answered { consumed, lines, times, errors, flow: Flow::Continue }
}

/// Appends `n` time replies to `out` with the copies inlined. `extend_from_slice` calls `memcpy`,
/// and musl's `memcpy` copies with `rep movsq`, whose start-up cost dwarfs 14 bytes: perf put it
/// at 14% of the server's CPU under pipelining. Here each reply goes in as one array assignment,
/// which the compiler turns into two stores.
fn push_replies(out: &mut Vec<u8>, reply: &[u8; TIME_REPLY_LEN], n: usize) {
    let start = out.len();
    out.resize(start + n * TIME_REPLY_LEN, 0);
    for slot in out[start..].chunks_exact_mut(TIME_REPLY_LEN) {
        // Always the array's length; `if let` rather than a panic path.
        if let Ok(slot) = <&mut [u8; TIME_REPLY_LEN]>::try_from(slot) {
            *slot = *reply;
        }
    }
}

/// Reads a server's reply line (without its CR LF) as a time, for the client and the probe.
/// Returns `None` for anything that is not exactly `JAM hh:mm:ss` with a valid time.
pub fn parse_time_reply(line: &[u8]) -> Option<WallTime> {
    let [b'J', b'A', b'M', b' ', h1, h2, b':', m1, m2, b':', s1, s2] = *line else {
        return None;
    };
    let two = |a: u8, b: u8| (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'));
    let t = WallTime { hour: two(h1, h2)?, minute: two(m1, m2)?, second: two(s1, s2)? };
    // 60 is allowed for a leap second.
    (t.hour < 24 && t.minute < 60 && t.second <= 60).then_some(t)
}

/// `bytes` as text with the protocol's control characters made visible, as a C or Rust string
/// literal shows them: `JAM 16:37:26\r\n`, `\t`, `\\`, `\"`, and `\xHH` for any other byte
/// that is not printable ASCII. For showing a person exactly what went over the wire.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                s.push_str("\\x");
                s.push(HEX[usize::from(b >> 4)] as char);
                s.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    s
}

/// The bytes that `text` writes with printf's escapes: `\r`, `\n`, `\t`, `\\`, `\"` and
/// `\xHH`; every other character stands for itself (as UTF-8). For `jam talk --send`, so that the
/// sheet's `printf "TIME\r\n"` payloads can be typed the same way.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            Some('"') => out.push(b'"'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = (hex.len() == 2).then(|| u8::from_str_radix(&hex, 16).ok()).flatten();
                out.push(byte.ok_or_else(|| format!("\\x{hex} is not two hex digits, as in \\x0d"))?);
            }
            Some(other) => {
                return Err(format!("unknown escape \\{other}: use \\r \\n \\t \\\\ \\\" or \\xHH"));
            }
            None => return Err("a lone \\ at the end: write \\\\ for a backslash".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOON: WallTime = WallTime { hour: 12, minute: 34, second: 56 };
    const BIG: usize = usize::MAX;

    /// Feeds `input` in one piece and returns (output, flow, bytes left unconsumed).
    fn run(input: &[u8]) -> (String, Flow, usize) {
        let mut out = Vec::new();
        let a = respond(input, NOON, DEFAULT_MAX_LINE, BIG, &mut out);
        (String::from_utf8(out).unwrap(), a.flow, input.len() - a.consumed)
    }

    #[test]
    fn time_reply_is_fourteen_bytes_of_24_hour_clock() {
        assert_eq!(&NOON.reply(), b"JAM 12:34:56\r\n");
        let t = WallTime { hour: 0, minute: 5, second: 9 };
        assert_eq!(&t.reply(), b"JAM 00:05:09\r\n");
        assert_eq!(&WallTime::from_seconds_of_day(86_399).reply(), b"JAM 23:59:59\r\n");
        assert_eq!(WallTime::from_seconds_of_day(86_400), WallTime::from_seconds_of_day(0));
    }

    #[test]
    fn time_and_lines_that_begin_with_time() {
        assert_eq!(run(b"TIME\r\n"), ("JAM 12:34:56\r\n".into(), Flow::Continue, 0));
        assert_eq!(run(b"TIME please\r\n").0, "JAM 12:34:56\r\n");
        assert_eq!(run(b"TIMEX\r\n").0, "JAM 12:34:56\r\n");
    }

    #[test]
    fn requests_are_case_sensitive() {
        assert_eq!(run(b"time\r\n").0, "ERROR unknown request, expected TIME or QUIT\r\n");
    }

    #[test]
    fn several_requests_in_one_segment_are_answered_in_order() {
        let (out, flow, left) = run(b"TIME\r\nHELLO\r\nTIME\r\n");
        assert_eq!(out, "JAM 12:34:56\r\nERROR unknown request, expected TIME or QUIT\r\nJAM 12:34:56\r\n");
        assert_eq!((flow, left), (Flow::Continue, 0));
    }

    #[test]
    fn quit_ends_the_session_and_ignores_what_follows() {
        let mut out = Vec::new();
        let a = respond(b"TIME\r\nQUIT\r\nTIME\r\n", NOON, DEFAULT_MAX_LINE, BIG, &mut out);
        assert_eq!(out, b"JAM 12:34:56\r\n");
        assert_eq!(a, Answered { consumed: 12, lines: 2, times: 1, errors: [0; 5], flow: Flow::Quit });
        assert_eq!(run(b"QUIT now\r\n").1, Flow::Quit);
    }

    #[test]
    fn an_incomplete_line_is_left_for_later() {
        assert_eq!(run(b"TI"), (String::new(), Flow::Continue, 2));
        assert_eq!(run(b"TIME\r\nTIME\r"), ("JAM 12:34:56\r\n".into(), Flow::Continue, 5));
    }

    #[test]
    fn bare_lf_is_an_error_that_keeps_the_connection() {
        let (out, flow, _) = run(b"TIME\n");
        assert_eq!(out, "ERROR line must end with CR LF (with nc, use -C)\r\n");
        assert_eq!(flow, Flow::Continue);
        assert_eq!(run(b"\n").0, "ERROR line must end with CR LF (with nc, use -C)\r\n");
    }

    #[test]
    fn empty_line_is_unknown() {
        assert_eq!(run(b"\r\n").0, "ERROR unknown request, expected TIME or QUIT\r\n");
    }

    #[test]
    fn control_characters_are_rejected() {
        for line in
            [&b"TI\tME\r\n"[..], b"TIME\r\r\n", b"TIME\x7f\r\n", b"\x00\r\n", "TIME\u{85}\r\n".as_bytes()]
        {
            assert_eq!(run(line).0, "ERROR request contains a control character\r\n", "{line:?}");
        }
    }

    #[test]
    fn utf8_is_checked_but_allowed() {
        assert_eq!(run(b"TIME \xff\r\n").0, "ERROR request is not valid UTF-8\r\n");
        assert_eq!(run("TIME café\r\n".as_bytes()).0, "JAM 12:34:56\r\n");
        assert_eq!(run("WAKTU\r\n".as_bytes()).0, "ERROR unknown request, expected TIME or QUIT\r\n");
    }

    #[test]
    fn line_limit_counts_cr_lf() {
        let max = 16;
        let fits = [&[b'T', b'I', b'M', b'E'][..], &[b'x'; 10], b"\r\n"].concat();
        assert_eq!(fits.len(), max);
        let mut out = Vec::new();
        assert_eq!(respond(&fits, NOON, max, BIG, &mut out).flow, Flow::Continue);
        assert_eq!(out, b"JAM 12:34:56\r\n");

        // One byte more, complete or not, is too long; so is a partial line at the limit.
        for input in [[&fits[..14], b"x\r\n"].concat(), vec![b'x'; max]] {
            let mut out = Vec::new();
            let a = respond(&input, NOON, max, BIG, &mut out);
            assert_eq!((a.flow, &out[..]), (Flow::TooLong, RequestError::TooLong.reply()));
        }
        // One byte short of the limit without LF is merely incomplete.
        let mut out = Vec::new();
        let a = respond(&[b'x'; 15], NOON, max, BIG, &mut out);
        assert_eq!((a.flow, a.consumed, out.len()), (Flow::Continue, 0, 0));
    }

    #[test]
    fn replies_before_an_overlong_line_are_kept() {
        let input = [&b"TIME\r\n"[..], &[b'x'; 2000]].concat();
        let (out, flow, left) = run(&input);
        assert_eq!(out, "JAM 12:34:56\r\nERROR line too long\r\n");
        assert_eq!((flow, left), (Flow::TooLong, 0));
    }

    #[test]
    fn output_budget_stops_answering_until_written() {
        let input = b"TIME\r\n".repeat(10);
        let mut out = Vec::new();
        let a = respond(&input, NOON, DEFAULT_MAX_LINE, 30, &mut out);
        // Two replies are 28 bytes, under 30, so a third is written; then it stops.
        assert_eq!((a.consumed, a.lines, out.len()), (18, 3, 42));
    }

    #[test]
    fn time_replies_are_recognised() {
        assert_eq!(parse_time_reply(b"JAM 12:34:56"), Some(NOON));
        for bad in [&b"JAM 24:00:00"[..], b"JAM 1:2:3", b"JAM 12:34:56 ", b"ERROR x", b"jam 12:34:56"] {
            assert_eq!(parse_time_reply(bad), None, "{bad:?}");
        }
    }

    /// Answers `stream` delivered in the pieces that `cuts` marks, the way the connection layer
    /// does: unconsumed bytes are kept and the next piece is appended to them.
    fn in_pieces(stream: &[u8], cuts: &[usize], max_line: usize) -> (Vec<u8>, Flow) {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        let mut start = 0;
        for end in cuts.iter().copied().chain([stream.len()]) {
            pending.extend_from_slice(&stream[start..end]);
            start = end;
            let a = respond(&pending, NOON, max_line, BIG, &mut out);
            pending.drain(..a.consumed);
            if a.flow != Flow::Continue {
                return (out, a.flow);
            }
        }
        (out, Flow::Continue)
    }

    fn request_stream() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            Just(b"TIME\r\n".to_vec()),
            Just(b"TIME\n".to_vec()),
            Just(b"QUIT\r\n".to_vec()),
            Just(b"HELLO\r\n".to_vec()),
            Just(b"\xff\r\n".to_vec()),
            Just(b"TI\rME\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ];
        proptest::collection::vec(line, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn any_split_of_a_stream_gives_the_same_replies(
            stream in request_stream(),
            raw_cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max_line in 6usize..64,
        ) {
            let whole = in_pieces(&stream, &[], max_line);
            let mut cuts: Vec<usize> = raw_cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            prop_assert_eq!(in_pieces(&stream, &cuts, max_line), whole.clone());
            // Byte by byte, the hardest split of all.
            let every: Vec<usize> = (1..stream.len()).collect();
            prop_assert_eq!(in_pieces(&stream, &every, max_line), whole);
        }
    }

    /// The line rules alone, one line at a time through `parse_line`, a line answered while the
    /// output is under `budget`: what `respond` must give whatever shortcut it takes for the
    /// common line. Returns the output, the flow and the bytes used.
    fn by_the_rules(stream: &[u8], max_line: usize, budget: usize) -> (Vec<u8>, Flow, usize) {
        let mut out = Vec::new();
        let mut used = 0;
        while out.len() < budget {
            let rest = &stream[used..];
            let Some(lf) = rest.iter().take(max_line).position(|&b| b == b'\n') else {
                if rest.len() >= max_line {
                    out.extend_from_slice(RequestError::TooLong.reply());
                    return (out, Flow::TooLong, stream.len());
                }
                break;
            };
            used += lf + 1;
            match parse_line(&rest[..=lf]) {
                Ok(Request::Time) => out.extend_from_slice(&NOON.reply()),
                Ok(Request::Quit) => return (out, Flow::Quit, used),
                Err(e) => out.extend_from_slice(e.reply()),
            }
        }
        (out, Flow::Continue, used)
    }

    /// Runs of the common line, with the odd other line among them.
    fn mostly_time() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            8 => Just(b"TIME\r\n".to_vec()),
            1 => Just(b"TIME\n".to_vec()),
            1 => Just(b"HELLO\r\n".to_vec()),
            1 => Just(b"QUIT\r\n".to_vec()),
        ];
        proptest::collection::vec(line, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn respond_answers_every_line_as_the_line_rules_say(
            stream in prop_oneof![request_stream(), mostly_time()],
            max_line in 6usize..64,
            budget in prop_oneof![Just(BIG), 0usize..200],
        ) {
            let mut out = Vec::new();
            let a = respond(&stream, NOON, max_line, budget, &mut out);
            prop_assert_eq!((out, a.flow, a.consumed), by_the_rules(&stream, max_line, budget));
        }
    }

    #[test]
    fn escape_shows_control_characters() {
        assert_eq!(escape(b"JAM 16:37:26\r\n"), "JAM 16:37:26\\r\\n");
        assert_eq!(escape(b"a\tb\\\"\x00\xff\x7f"), "a\\tb\\\\\\\"\\x00\\xff\\x7f");
    }

    #[test]
    fn unescape_reads_printf_escapes_and_undoes_escape() {
        assert_eq!(unescape(r"TIME\r\nQUIT\r\n").unwrap(), b"TIME\r\nQUIT\r\n");
        assert_eq!(unescape("\\x00\\xff\\t\\\\\\\"é").unwrap(), b"\x00\xff\t\\\"\xc3\xa9");
        for bad in [r"\q", r"\x0", r"\xzz", "\\"] {
            assert!(unescape(bad).is_err(), "{bad}");
        }
        proptest!(|(bytes: Vec<u8>)| {
            prop_assert_eq!(unescape(&escape(&bytes)).unwrap(), bytes);
        });
    }
}
