//! One GET over ureq-proto's sans-IO client, std sockets and (with `tls`)
//! rustls: the stack pubnub-presence now links, without its own code.
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use ureq_proto::client::{Call, RecvBodyResult, RecvResponseResult, SendRequestResult};
use ureq_proto::http;

fn run(url: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let uri: http::Uri = url.parse()?;
    let host = uri.host().ok_or("host")?.to_string();
    let tls = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = (host.as_str(), port).to_socket_addrs()?.next().ok_or("addr")?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream: Box<dyn ReadWrite> = if tls {
        #[cfg(feature = "tls")]
        {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host.clone())?;
            let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
            Box::new(rustls::StreamOwned::new(conn, sock))
        }
        #[cfg(not(feature = "tls"))]
        return Err("no tls".into());
    } else {
        Box::new(sock)
    };
    let req = http::Request::get(uri).header("user-agent", "yardstick").body(())?;
    let mut call = Call::new(req)?.proceed();
    let mut out = vec![0u8; 4096];
    let mut used = 0;
    while !call.can_proceed() {
        used += call.write(&mut out[used..])?;
    }
    stream.write_all(&out[..used])?;
    let Some(SendRequestResult::RecvResponse(mut call)) = call.proceed()? else {
        return Err("state".into());
    };
    let mut input = Vec::new();
    let mut buf = [0u8; 4096];
    let resp = loop {
        let n = stream.read(&mut buf)?;
        input.extend_from_slice(&buf[..n]);
        let (u, r) = call.try_response(&input, false)?;
        input.drain(..u);
        if let Some(r) = r {
            break r;
        }
        if n == 0 {
            return Err("eof".into());
        }
    };
    let _ = resp.headers().get("retry-after");
    let Some(RecvResponseResult::RecvBody(mut call)) = call.proceed() else {
        return Err("no body".into());
    };
    let mut body = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let (u, n) = call.read(&input, &mut chunk)?;
        input.drain(..u);
        body.extend_from_slice(&chunk[..n]);
        if !call.can_proceed() && u == 0 && n == 0 {
            let got = stream.read(&mut buf)?;
            if got == 0 {
                break;
            }
            input.extend_from_slice(&buf[..got]);
        }
        if call.can_proceed() {
            let _ = matches!(call.proceed(), Some(RecvBodyResult::Cleanup(_)));
            break;
        }
    }
    Ok(body)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8090/time/0".to_string());
    match run(&url) {
        Ok(body) => println!("{} bytes", body.len()),
        Err(e) => eprintln!("{e}"),
    }
}
