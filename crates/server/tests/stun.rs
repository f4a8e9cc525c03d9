//! The STUN server answers a Binding request built by an independent implementation
//! (`stun_codec`) with the sender's address in XOR-MAPPED-ADDRESS, and no more than its
//! rate to any one source address.

use bytecodec::{DecodeExt, EncodeExt};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use stun_codec::rfc5389::{attributes::XorMappedAddress, methods::BINDING, Attribute};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};
use tokio::net::UdpSocket;

use callsight_server::source_limit::SourceLimits;

const LIMITS: SourceLimits = SourceLimits { rate_per_sec: 10.0, burst: 20.0, max_sources: 10_000 };

fn binding_request(id: u32) -> Vec<u8> {
    let mut transaction = [0u8; 12];
    transaction[..4].copy_from_slice(&id.to_be_bytes());
    let request = Message::<Attribute>::new(MessageClass::Request, BINDING, TransactionId::new(transaction));
    MessageEncoder::new().encode_into_bytes(request).unwrap()
}

#[tokio::test]
async fn binding_request_gets_the_senders_address() {
    let server = callsight_server::stun::spawn("127.0.0.1:0".parse().unwrap(), LIMITS).await.unwrap().addr;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let transaction = TransactionId::new([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2]);
    let request = Message::<Attribute>::new(MessageClass::Request, BINDING, transaction);
    let bytes = MessageEncoder::new().encode_into_bytes(request).unwrap();

    // Garbage first: the server must ignore it and keep serving.
    client.send_to(b"\x00\x01garbage", server).await.unwrap();
    client.send_to(&bytes, server).await.unwrap();

    let mut buf = [0u8; 1500];
    let (n, from) =
        tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf)).await.expect("reply").unwrap();
    assert_eq!(from, server);
    let reply = MessageDecoder::<Attribute>::new().decode_from_bytes(&buf[..n]).unwrap().expect("well-formed STUN");
    assert_eq!(reply.class(), MessageClass::SuccessResponse);
    assert_eq!(reply.method(), BINDING);
    assert_eq!(reply.transaction_id(), transaction);
    let mapped = reply.get_attribute::<XorMappedAddress>().expect("XOR-MAPPED-ADDRESS").address();
    assert_eq!(mapped, client.local_addr().unwrap());
}

/// 100 requests from one address get the burst (20) and what refilled meanwhile; a second
/// address (127.0.0.2, also loopback) is answered as usual.
#[tokio::test]
async fn one_source_gets_its_burst_and_no_more() {
    let stun = callsight_server::stun::spawn("127.0.0.1:0".parse().unwrap(), LIMITS).await.unwrap();
    let server = stun.addr;
    let flooder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = std::time::Instant::now();
    for i in 0..100 {
        flooder.send_to(&binding_request(i), server).await.unwrap();
    }
    // The server handles datagrams in order: once the other source's answer arrives, every
    // answer to the flood has been sent (loopback delivers at once).
    let other = UdpSocket::bind("127.0.0.2:0").await.expect("127.0.0.2 is loopback on Linux");
    other.send_to(&binding_request(1000), server).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(10), other.recv_from(&mut buf)).await.expect("an answer").unwrap();
    let reply = MessageDecoder::<Attribute>::new().decode_from_bytes(&buf[..n]).unwrap().expect("well-formed STUN");
    assert_eq!(reply.get_attribute::<XorMappedAddress>().unwrap().address(), other.local_addr().unwrap());
    let elapsed = started.elapsed().as_secs_f64();

    let mut answered = 0;
    while flooder.try_recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    let most = 20 + (elapsed * 10.0).ceil() as usize;
    assert!((20..=most).contains(&answered), "{answered} answers to 100 requests in {elapsed:.3} s (burst 20, 10/s)");
    // Every request is accounted for: answered (the flood's and the other source's) or refused.
    let (ok, refused) = (stun.counters.answered.load(Relaxed), stun.counters.rate_limited.load(Relaxed));
    assert_eq!((ok, refused), (answered as u64 + 1, 100 - answered as u64), "counters");
}
