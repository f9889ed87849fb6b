//! One GET with the same agent configuration as pubnub-presence's transport.
use std::io::Read;
use std::time::Duration;

fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8090/time/0".to_string());
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("baseline")
        .accept_encoding("identity")
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(10)))
        .input_buffer_size(8 * 1024)
        .output_buffer_size(2 * 1024)
        .max_response_header_size(8 * 1024)
        .build()
        .new_agent();
    match agent.get(&url).call() {
        Ok(resp) => {
            let mut body = Vec::new();
            let _ = resp.into_body().into_reader().take(1 << 20).read_to_end(&mut body);
            println!("{} bytes", body.len());
        }
        Err(e) => eprintln!("{e}"),
    }
}
