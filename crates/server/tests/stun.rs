//! The STUN server answers a Binding request built by an independent implementation
//! (`stun_codec`) with the sender's address in XOR-MAPPED-ADDRESS.

use bytecodec::{DecodeExt, EncodeExt};
use std::time::Duration;
use stun_codec::rfc5389::{attributes::XorMappedAddress, methods::BINDING, Attribute};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};
use tokio::net::UdpSocket;

#[tokio::test]
async fn binding_request_gets_the_senders_address() {
    let server = callsight_server::stun::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
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
