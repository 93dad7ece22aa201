//! The floor row of benchmarks/net_bench.py: its echo and HTTP servers with
//! no Python in the process, on one thread and one epoll instance (mio).
//!
//! `netbench-floor echo|http RECV_SIZE` speaks net_bench's server control
//! protocol, so the harness starts it, drives it with the same client (or
//! wrk) and reads the same getrusage snapshot as for any loop's server:
//!
//! * once listening it prints `@@NETBENCH-READY@@ {"port": .., "pid": ..}`;
//! * `cpu` on stdin prints `@@NETBENCH-CPU@@ {...}` (user/sys CPU of the
//!   whole process, HTTP requests answered, connections, errors);
//! * `quit` or the end of stdin stops the process.
//!
//! What it costs per request is the syscalls (epoll_wait, one recv, one send)
//! and the copies of the same traffic, which every loop pays too: the
//! distance of a loop's row from this one is what the loop itself costs.

use std::fmt::Write as _;
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::raw::{c_int, c_long};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const READY_MARK: &str = "@@NETBENCH-READY@@ ";
const CPU_MARK: &str = "@@NETBENCH-CPU@@ ";
const ERROR_MARK: &str = "@@NETBENCH-ERROR@@ ";

// Byte for byte net_bench.py's HTTP_RESPONSE (its warm-up compares them).
const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

const LISTENER: Token = Token(0);

// Shared with the control thread, which only reads them.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static CONNS: AtomicU64 = AtomicU64::new(0);
static N_ERRORS: AtomicU64 = AtomicU64::new(0);
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());
// One writer at a time on stdout: a CPU snapshot must not interleave with
// the ready line.
static STDOUT: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, PartialEq)]
enum Flavour {
    Echo,
    Http,
}

// struct rusage as glibc/musl lay it out on Linux (time_t and suseconds_t
// are both long); declared here so the only dependency stays mio.
#[repr(C)]
struct Timeval {
    tv_sec: c_long,
    tv_usec: c_long,
}

#[repr(C)]
struct Rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    _rest: [c_long; 14],
}

extern "C" {
    fn getrusage(who: c_int, usage: *mut Rusage) -> c_int;
}

const RUSAGE_SELF: c_int = 0;

fn cpu_seconds() -> (f64, f64) {
    let mut ru = Rusage {
        ru_utime: Timeval { tv_sec: 0, tv_usec: 0 },
        ru_stime: Timeval { tv_sec: 0, tv_usec: 0 },
        _rest: [0; 14],
    };
    // SAFETY: `ru` is a valid, writable struct rusage.
    if unsafe { getrusage(RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: &Timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(&ru.ru_utime), secs(&ru.ru_stime))
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn emit(mark: &str, payload: &str) {
    let _guard = STDOUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = io::stdout().lock();
    // The parent reads marks at the start of a line, whatever came before.
    let _ = write!(out, "\n{mark}{payload}\n");
    let _ = out.flush();
}

fn record_error(text: String) {
    N_ERRORS.fetch_add(1, Ordering::Relaxed);
    let mut errors = ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    if errors.len() < 3 {
        errors.push(text);
    }
}

fn cpu_snapshot(started: Instant) -> String {
    let (user, sys) = cpu_seconds();
    let mut s = format!(
        "{{\"user\": {user}, \"sys\": {sys}, \"wall\": {}, \"requests\": {}, \"conns\": {}, \
         \"n_errors\": {}, \"errors\": [",
        started.elapsed().as_secs_f64(),
        REQUESTS.load(Ordering::Relaxed),
        CONNS.load(Ordering::Relaxed),
        N_ERRORS.load(Ordering::Relaxed),
    );
    let errors = ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        json_str(&mut s, e);
    }
    s.push_str("]}");
    s
}

/// The control thread sits in a blocking read() between commands, as in
/// net_bench's Python servers, so it costs nothing while the client runs.
fn control(started: Instant) {
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "cpu" => emit(CPU_MARK, &cpu_snapshot(started)),
            "quit" => break,
            _ => {}
        }
    }
    let _ = io::stdout().lock().flush();
    // Like the Python servers' os._exit(0): the parent has what it needs and
    // the kernel closes the sockets.
    std::process::exit(0);
}

struct Conn {
    stream: TcpStream,
    // Bytes accepted for sending that the socket did not take yet.
    out: Vec<u8>,
    // HTTP: the start of a request whose "\r\n\r\n" has not arrived yet.
    partial: Vec<u8>,
}

/// Ends of connection a client causes; the Python loops do not report these
/// to their exception handler either.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Number of complete requests at the start of `buf` and the bytes they span.
fn count_requests(buf: &[u8]) -> (usize, usize) {
    let (mut count, mut consumed, mut i) = (0, 0, 0);
    while i + 4 <= buf.len() {
        if &buf[i..i + 4] == b"\r\n\r\n" {
            count += 1;
            i += 4;
            consumed = i;
        } else {
            i += 1;
        }
    }
    (count, consumed)
}

impl Conn {
    /// Send `data` after whatever is still queued; false if the connection
    /// is finished.
    fn send(&mut self, data: &[u8]) -> bool {
        if !self.out.is_empty() {
            self.out.extend_from_slice(data);
            return self.flush();
        }
        let mut sent = 0;
        while sent < data.len() {
            match self.stream.write(&data[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.failed(e, "send"),
            }
        }
        // The writable event that follows a full send buffer flushes the
        // rest (the socket is registered for both directions once).
        self.out.extend_from_slice(&data[sent..]);
        true
    }

    fn flush(&mut self) -> bool {
        let mut sent = 0;
        while sent < self.out.len() {
            match self.stream.write(&self.out[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.failed(e, "send"),
            }
        }
        self.out.drain(..sent);
        true
    }

    fn failed(&mut self, e: io::Error, what: &str) -> bool {
        if !is_disconnect(&e) {
            record_error(format!("{what}: {e}"));
        }
        false
    }

    fn received(&mut self, flavour: Flavour, data: &[u8], resp: &mut Vec<u8>) -> bool {
        if flavour == Flavour::Echo {
            return self.send(data);
        }
        let count = if self.partial.is_empty() {
            let (count, consumed) = count_requests(data);
            self.partial.extend_from_slice(&data[consumed..]);
            count
        } else {
            self.partial.extend_from_slice(data);
            let (count, consumed) = count_requests(&self.partial);
            self.partial.drain(..consumed);
            count
        };
        if count == 0 {
            return true;
        }
        REQUESTS.fetch_add(count as u64, Ordering::Relaxed);
        if count == 1 {
            return self.send(HTTP_RESPONSE);
        }
        // Pipelined requests get one send, as in net_bench's HttpProtocol.
        resp.clear();
        for _ in 0..count {
            resp.extend_from_slice(HTTP_RESPONSE);
        }
        self.send(resp)
    }

    /// Read until the socket is drained; false if the connection is finished.
    fn readable(&mut self, flavour: Flavour, buf: &mut [u8], resp: &mut Vec<u8>) -> bool {
        loop {
            match self.stream.read(buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if !self.received(flavour, &buf[..n], resp) {
                        return false;
                    }
                    // A read that did not fill the buffer took all there
                    // was; data that arrives later raises a new edge. This
                    // saves the recv() that would only say EAGAIN -- libuv
                    // (uvloop) and tokio stop on a short read the same way,
                    // and asyncio's level-triggered selector reads once.
                    if n < buf.len() {
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.failed(e, "recv"),
            }
        }
    }
}

fn parse_args() -> Result<(Flavour, usize), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: netbench-floor echo|http RECV_SIZE";
    let [flavour, size] = args.as_slice() else {
        return Err(usage.into());
    };
    let flavour = match flavour.as_str() {
        "echo" => Flavour::Echo,
        "http" => Flavour::Http,
        other => return Err(format!("unknown flavour {other:?}; {usage}")),
    };
    let size = size
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("bad RECV_SIZE {size:?}; {usage}"))?;
    Ok((flavour, size))
}

fn fail(msg: &str) -> ! {
    let mut s = String::from("{\"error\": ");
    json_str(&mut s, msg);
    s.push_str(", \"traceback\": \"\"}");
    emit(ERROR_MARK, &s);
    std::process::exit(0);
}

fn main() {
    let started = Instant::now();
    let (flavour, recv_size) = parse_args().unwrap_or_else(|e| fail(&e));
    let mut poll = Poll::new().unwrap_or_else(|e| fail(&format!("epoll: {e}")));
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut listener = TcpListener::bind(addr).unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap_or_else(|e| fail(&format!("register: {e}")));

    std::thread::spawn(move || control(started));
    emit(READY_MARK, &format!("{{\"port\": {port}, \"pid\": {}}}", std::process::id()));

    // Connection i has token i + 1; freed slots are reused.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    // One receive buffer for all connections: the loop is single-threaded
    // and every read is handled (echoed or parsed) before the next.
    //
    // It starts on a page boundary because where it starts changes what the
    // kernel's copy into it costs: a fresh 256 KiB block from malloc starts
    // 16 bytes into a page, and there the 100 KiB echo measured 85-120
    // µs/request against 31-39 page-aligned (AMD EPYC VM, perf: the extra
    // time is all in _copy_to_iter, the recv copy). A floor must not pay a
    // penalty the loops happen to avoid.
    const PAGE: usize = 4096;
    let mut storage = vec![0u8; recv_size + PAGE];
    let skip = (PAGE - storage.as_ptr() as usize % PAGE) % PAGE;
    let buf = &mut storage[skip..skip + recv_size];
    let mut resp = Vec::new();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            fail(&format!("epoll_wait: {e}"));
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            // As asyncio's transports and net_bench's sock
                            // server do for every accepted connection.
                            let _ = stream.set_nodelay(true);
                            let slot = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            let interest = Interest::READABLE | Interest::WRITABLE;
                            if let Err(e) = poll.registry().register(&mut stream, Token(slot + 1), interest) {
                                record_error(format!("register: {e}"));
                                free.push(slot);
                                continue;
                            }
                            CONNS.fetch_add(1, Ordering::Relaxed);
                            conns[slot] = Some(Conn { stream, out: Vec::new(), partial: Vec::new() });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            record_error(format!("accept: {e}"));
                            break;
                        }
                    }
                }
                continue;
            }
            let slot = event.token().0 - 1;
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else { continue };
            let mut alive = true;
            if event.is_writable() && !conn.out.is_empty() {
                alive = conn.flush();
            }
            if alive && (event.is_readable() || event.is_read_closed()) {
                alive = conn.readable(flavour, buf, &mut resp);
            }
            if !alive {
                if let Some(mut conn) = conns[slot].take() {
                    let _ = poll.registry().deregister(&mut conn.stream);
                }
                free.push(slot);
            }
        }
    }
}
