//! Any datagram through the STUN server's parser and answer (`callsight_server::stun`),
//! from an IPv4 and an IPv6 source. An answer must be a well-formed Binding success
//! response: its header's length matches, it echoes the transaction id, and it is never
//! more than twice the request plus a header (the amplification bound the server keeps).
#![no_main]

use callsight_server::stun::binding_response;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fuzz_target!(|data: &[u8]| {
    for from in ["192.0.2.7:40000", "[2001:db8::7]:40000"] {
        let from: SocketAddr = from.parse().unwrap();
        let Ok(resp) = binding_response(data, from) else { continue };
        assert!(resp.len() >= 20 && resp.len() <= 64, "answer of {} bytes", resp.len());
        assert_eq!(&resp[0..2], &[0x01, 0x01], "a Binding success response");
        assert_eq!(usize::from(u16::from_be_bytes([resp[2], resp[3]])), resp.len() - 20, "length field");
        assert_eq!(&resp[4..20], &data[4..20], "cookie and transaction id echoed");
    }
});
