#![allow(dead_code)]
//! Synthetic response bodies of a chosen size, in the 2025 server's form.

/// A flat here_now body with `n` occupants, with or without state.
pub fn here_now(n: usize, with_state: bool) -> Vec<u8> {
    let mut b = format!("{{\"message\":\"OK\",\"occupancy\":{n},\"service\":\"Presence\",\"status\":200,\"uuids\":[");
    for i in 0..n {
        if i > 0 {
            b.push(',');
        }
        if with_state {
            b.push_str(&format!(
                "{{\"state\":{{\"battery\":{},\"mode\":\"heat\",\"zones\":[\"kitchen\",\"hall\"],\"name\":\"device \\u00e9 {i}\"}},\"uuid\":\"device-{i:06}\"}}",
                i % 100
            ));
        } else {
            b.push_str(&format!("\"device-{i:06}\""));
        }
    }
    b.push_str("]}");
    b.into_bytes()
}

pub fn where_now(n: usize) -> Vec<u8> {
    let chans: Vec<String> = (0..n).map(|i| format!("\"channel-{i}\"")).collect();
    format!("{{\"message\":\"OK\",\"payload\":{{\"channels\":[{}]}},\"service\":\"Presence\",\"status\":200}}", chans.join(",")).into_bytes()
}

pub fn get_state(n: usize) -> Vec<u8> {
    let chans: Vec<String> = (0..n)
        .map(|i| format!("\"channel-{i}\":{{\"count\":{i},\"name\":\"Alex\"}}"))
        .collect();
    format!("{{\"status\": 200, \"message\": \"OK\", \"payload\": {{\"channels\": {{{}}}}}, \"service\": \"Presence\", \"uuid\": \"u\"}}", chans.join(",")).into_bytes()
}

pub fn events(n: usize) -> Vec<u8> {
    let msgs: Vec<String> = (0..n)
        .map(|i| format!("{{\"a\":\"5\",\"f\":0,\"p\":{{\"t\":\"1757969619337{i:04}\",\"r\":43}},\"k\":\"demo\",\"c\":\"room-pnpres\",\"u\":{{\"pn_action\":\"join\",\"pn_channel\":\"room\",\"pn_ispresence\":1,\"pn_occupancy\":{i},\"pn_timestamp\":1757969619,\"pn_uuid\":\"user-{i}\"}},\"d\":{{\"action\":\"join\",\"uuid\":\"user-{i}\",\"timestamp\":1757969619,\"precise_timestamp\":1757969619336,\"occupancy\":{i}}},\"b\":\"room-pnpres\"}}"))
        .collect();
    format!(
        "{{\"t\":{{\"t\":\"17579696193377821\",\"r\":43}},\"m\":[{}]}}",
        msgs.join(",")
    )
    .into_bytes()
}
