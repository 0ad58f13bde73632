//! WebSocket and other upgrades: tunnelled only after the upstream's 101,
//! both ways with back-pressure and half-close, timed out when idle, and
//! never for `h2c` or CONNECT.

mod util;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};
use util::*;

/// A WebSocket echo origin (tungstenite's server), one thread per socket.
fn echo_origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut socket) = tungstenite::accept(stream) else {
                    return;
                };
                while let Ok(message) = socket.read() {
                    if let Message::Close(_) = message {
                        // Sends the queued close reply, completing the
                        // handshake, before the socket goes.
                        let _ = socket.flush();
                        return;
                    }
                    let echo = matches!(message, Message::Text(_) | Message::Binary(_));
                    if echo && socket.send(message).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn client(ferry: &Ferry) -> WebSocket<TcpStream> {
    let stream = ferry.connect();
    let url = format!("ws://{}/chat", ferry.addr);
    let (socket, response) =
        tungstenite::client(url.as_str(), stream).expect("websocket handshake through ferry");
    assert_eq!(response.status().as_u16(), 101);
    socket
}

#[test]
fn websocket_round_trip_text_binary_large_ping_and_close() {
    let origin = echo_origin();
    let ferry = Ferry::start(origin, &[]);
    let mut socket = client(&ferry);
    socket.send(Message::text("hello through ferry")).unwrap();
    assert_eq!(socket.read().unwrap(), Message::text("hello through ferry"));
    socket.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(
        socket.read().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    let mut big = vec![0u8; 10 << 20];
    pattern(0, &mut big);
    socket.send(Message::binary(big.clone())).unwrap();
    match socket.read().unwrap() {
        Message::Binary(echoed) => assert!(echoed[..] == big[..], "10 MiB message corrupted"),
        other => panic!("unexpected {other:?}"),
    }
    socket.send(Message::Ping(b"p".to_vec().into())).unwrap();
    // tungstenite answers the origin's pong for us; read until it shows.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Message::Pong(payload) = socket.read().unwrap() {
            assert_eq!(&payload[..], b"p");
            break;
        }
        assert!(Instant::now() < deadline, "no pong");
    }
    socket.close(None).unwrap();
    loop {
        match socket.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("close handshake failed: {e}"),
        }
    }
    // The tunnel ends when both sides have closed; then comes the access log
    // line, with the bytes both ways.
    drop(socket);
    assert!(ferry.wait_for_log(Duration::from_secs(5), |lines| {
        lines
            .iter()
            .any(|l| l.contains("\"GET /chat HTTP/1.1\" 101 ") && l.contains("request_length="))
    }));
    let line = ferry
        .access_log()
        .into_iter()
        .find(|l| l.contains(" 101 "))
        .unwrap();
    let sent: u64 = line
        .split(" 101 ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let received: u64 = line
        .rsplit("request_length=")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(sent > 10 << 20 && received > 10 << 20, "{line}");
}

#[test]
fn two_hundred_concurrent_sockets_echo() {
    let origin = echo_origin();
    let ferry = Ferry::start(
        origin,
        &["--access-log", "off", "--worker-connections", "2000"],
    );
    let addr = ferry.addr;
    let handles: Vec<_> = (0..200)
        .map(|i| {
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let stream = connect(addr);
                    let url = format!("ws://{addr}/n/{i}");
                    let (mut socket, _) = tungstenite::client(url.as_str(), stream).unwrap();
                    for round in 0..20 {
                        let text = format!("socket {i} round {round}");
                        socket.send(Message::text(text.clone())).unwrap();
                        assert_eq!(socket.read().unwrap(), Message::text(text));
                    }
                    let _ = socket.close(None);
                })
                .unwrap()
        })
        .collect();
    within(Duration::from_secs(60), move || {
        for handle in handles {
            handle.join().expect("a socket failed");
        }
    });
}

#[test]
fn a_refused_upgrade_stays_http_and_the_connection_goes_on() {
    for status in ["200 OK", "400 Bad Request"] {
        let origin = Origin::start(move |mut conn| {
            while conn.next_request().is_some() {
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nno");
                if !conn.send(head.as_bytes()) {
                    return;
                }
            }
        });
        let ferry = Ferry::start(origin.addr, &[]);
        let mut stream = ferry.connect();
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let response = read_response(&mut reader, "GET").unwrap();
        assert_eq!(response.text(), "no");
        assert_eq!(response.header("upgrade"), None);
        stream
            .write_all(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_response(&mut reader, "GET").unwrap().text(),
            "no",
            "{status}"
        );
        let requests = origin.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].header("upgrade"), Some("websocket"));
        assert_eq!(requests[0].header("connection"), Some("upgrade"));
        assert_eq!(requests[1].path, "/next");
    }
}

/// An origin that answers 101 only after a pause, and reports when the
/// first tunnelled byte arrived relative to its own 101.
#[test]
fn bytes_sent_early_are_held_until_the_101() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut stream = stream;
        let request = read_request(&mut reader).unwrap();
        // Nothing but the head may have arrived yet.
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut early = [0u8; 64];
        let before = reader.read(&mut early).unwrap_or(0);
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-test\r\nConnection: Upgrade\r\n\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut after = [0u8; 5];
        reader.read_exact(&mut after).unwrap();
        let _ = tx.send((request.header("upgrade").map(str::to_string), before, after));
        stream.write_all(b"world").unwrap();
    });
    let ferry = Ferry::start(addr, &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(
            b"GET /t HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x-test\r\n\r\nhello",
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (status, head) = read_head(&mut reader).unwrap();
    assert_eq!(status, 101);
    assert!(head.contains("Upgrade: x-test"), "{head}");
    let mut answer = [0u8; 5];
    reader.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"world");
    let (upgrade, before, after) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(upgrade.as_deref(), Some("x-test"));
    assert_eq!(before, 0, "client bytes were forwarded before the 101");
    assert_eq!(&after, b"hello");
}

#[test]
fn half_close_passes_through_and_idle_tunnels_time_out() {
    // The origin echoes until EOF, then says goodbye and closes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                if read_request(&mut reader).is_none() {
                    return;
                }
                let _ = stream.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: upgrade\r\n\r\n");
                let mut received = Vec::new();
                let _ = reader.read_to_end(&mut received);
                let _ = stream.write_all(&received);
                let _ = stream.write_all(b" bye");
            });
        }
    });
    let ferry = Ferry::start(addr, &["--set", "proxy_read_timeout=1s"]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_head(&mut reader).unwrap().0, 101);
    stream.write_all(b"ping").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // Our half-close reached the origin, which answered on the other half.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"ping bye");

    // An idle tunnel is closed after proxy_read_timeout.
    let mut idle = ferry.connect();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(idle.try_clone().unwrap());
    assert_eq!(read_head(&mut reader).unwrap().0, 101);
    let started = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(5)));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn h2c_is_stripped_and_connect_refused() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let response = request(
        ferry.addr,
        "GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let seen = response.text().to_ascii_lowercase();
    assert!(!seen.contains("upgrade"), "{seen}");
    assert!(!seen.contains("http2-settings"), "{seen}");
    let connect = request(
        ferry.addr,
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    );
    assert_eq!(connect.status, 405);
}

#[test]
fn nginx_websocket_recipe_is_accepted_literally() {
    let origin = echo_origin();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("ferry-ws-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ferry.conf");
    std::fs::write(
        &path,
        format!(
            "events {{}}\nhttp {{ server {{ listen 127.0.0.1:{port};\n\
             location / {{ proxy_pass http://{origin}; proxy_http_version 1.1;\n\
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\"; }} }} }}\n"
        ),
    )
    .unwrap();
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap()]);
    let mut socket = client(&ferry);
    socket.send(Message::text("recipe")).unwrap();
    assert_eq!(socket.read().unwrap(), Message::text("recipe"));
    let _ = std::fs::remove_dir_all(dir);
}
