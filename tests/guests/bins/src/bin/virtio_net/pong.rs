//! `role=pong`: a tiny IPv4 host that answers ARP requests for its address and ICMP echo
//! requests (ping) sent to it, so an unmodified Linux guest on the same switch can `ping` a Rust
//! guest. It answers `replies` pings (0: forever), then reports and stops.
//!
//! Formats: Ethernet II (IEEE 802.3), ARP for IPv4 over Ethernet (RFC 826), IPv4 (RFC 791,
//! header checksum), ICMP echo (RFC 792, checksum over the ICMP message).

use guest_rt::println;

use crate::exchange::{self, Config};
use crate::frame::{Mac, MacFmt};
use crate::port::{Port, PortError};

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_LEN: usize = 28;
const ARP_HTYPE_ETHERNET: u16 = 1;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const IP_PROTO_ICMP: u8 = 1;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const REPLY_TTL: u8 = 64;
/// Ethernet's shortest frame without the FCS; shorter replies are padded with zeros.
const MIN_FRAME: usize = 60;

pub(crate) type Ipv4 = [u8; 4];

/// Parses `a.b.c.d`.
pub(crate) fn parse_ipv4(text: &str) -> Option<Ipv4> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in &mut out {
        *byte = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// What the responder did.
#[derive(Debug, Default)]
pub(crate) struct PongTally {
    pub arp_replies: u64,
    pub echo_replies: u64,
    pub ignored: u64,
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

/// The Internet checksum (RFC 1071): ones' complement of the ones' complement sum.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// The reply to `frame`, written into `out` (its length), if `frame` asks `own` something.
fn answer(frame: &[u8], own_mac: Mac, own_ip: Ipv4, out: &mut [u8], t: &mut PongTally) -> usize {
    let len = match be16(frame, 12) {
        Some(ETHERTYPE_ARP) => arp_reply(frame, own_mac, own_ip, out),
        Some(ETHERTYPE_IPV4) => echo_reply(frame, own_mac, own_ip, out),
        _ => None,
    };
    match len {
        Some(len) => {
            if be16(frame, 12) == Some(ETHERTYPE_ARP) {
                t.arp_replies += 1;
            } else {
                t.echo_replies += 1;
            }
            let padded = len.max(MIN_FRAME);
            out[len..padded].fill(0);
            padded
        }
        None => {
            t.ignored += 1;
            0
        }
    }
}

fn arp_reply(frame: &[u8], own_mac: Mac, own_ip: Ipv4, out: &mut [u8]) -> Option<usize> {
    let arp = frame.get(ETH_HEADER..ETH_HEADER + ARP_LEN)?;
    let is_ipv4_over_ethernet = be16(arp, 0) == Some(ARP_HTYPE_ETHERNET)
        && be16(arp, 2) == Some(ETHERTYPE_IPV4)
        && arp[4] == 6
        && arp[5] == 4;
    if !is_ipv4_over_ethernet || be16(arp, 6) != Some(ARP_REQUEST) || arp[24..28] != own_ip {
        return None;
    }
    let (sender_mac, sender_ip) = (&arp[8..14], &arp[14..18]);
    let out = out.get_mut(..ETH_HEADER + ARP_LEN)?;
    out[0..6].copy_from_slice(sender_mac);
    out[6..12].copy_from_slice(&own_mac);
    out[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let reply = &mut out[ETH_HEADER..];
    reply[0..6].copy_from_slice(&arp[0..6]);
    reply[6..8].copy_from_slice(&ARP_REPLY.to_be_bytes());
    reply[8..14].copy_from_slice(&own_mac);
    reply[14..18].copy_from_slice(&own_ip);
    reply[18..24].copy_from_slice(sender_mac);
    reply[24..28].copy_from_slice(sender_ip);
    Some(ETH_HEADER + ARP_LEN)
}

fn echo_reply(frame: &[u8], own_mac: Mac, own_ip: Ipv4, out: &mut [u8]) -> Option<usize> {
    let ip = frame.get(ETH_HEADER..)?;
    let header_len = usize::from(*ip.first()? & 0x0F) * 4;
    let total_len = usize::from(be16(ip, 2)?);
    let is_plain_ipv4 = ip[0] >> 4 == 4 && header_len >= 20 && total_len >= header_len + 8;
    if !is_plain_ipv4 || ip.len() < total_len || ip[9] != IP_PROTO_ICMP || ip[16..20] != own_ip {
        return None;
    }
    // Fragments are not reassembled: only a whole datagram is answered.
    let is_fragment = be16(ip, 6)? & 0x3FFF != 0;
    let icmp = &ip[header_len..total_len];
    if is_fragment || icmp[0] != ICMP_ECHO_REQUEST || internet_checksum(icmp) != 0 {
        return None;
    }
    let out = out.get_mut(..ETH_HEADER + 20 + icmp.len())?;
    out[0..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&own_mac);
    out[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let reply = &mut out[ETH_HEADER..];
    // A fresh 20-byte header without options: version 4, IHL 5, the request's TOS and ID.
    reply[0] = 0x45;
    reply[1] = ip[1];
    reply[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    reply[4..6].copy_from_slice(&ip[4..6]);
    reply[6..8].fill(0);
    reply[8] = REPLY_TTL;
    reply[9] = IP_PROTO_ICMP;
    reply[10..12].fill(0);
    reply[12..16].copy_from_slice(&own_ip);
    reply[16..20].copy_from_slice(&ip[12..16]);
    let sum = internet_checksum(&reply[..20]);
    reply[10..12].copy_from_slice(&sum.to_be_bytes());
    let message = &mut reply[20..];
    message.copy_from_slice(icmp);
    message[0] = ICMP_ECHO_REPLY;
    message[2..4].fill(0);
    let sum = internet_checksum(message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(ETH_HEADER + 20 + icmp.len())
}

/// Answers until `replies` echo replies were sent (0: forever), waiting in HLT between frames
/// (the device interrupt, or the idle back-stop timer, wakes it).
pub(crate) fn run(
    port: &mut Port,
    cfg: &Config,
    own_mac: Mac,
    own_ip: Ipv4,
    replies: u64,
    tally: &mut PongTally,
) -> Result<(), PortError> {
    println!(
        "virtio-net: pong: {}.{}.{}.{} at {} answers ARP and ping{}",
        own_ip[0],
        own_ip[1],
        own_ip[2],
        own_ip[3],
        MacFmt(own_mac),
        if replies == 0 { " (forever)" } else { "" }
    );
    let mut reply = [0u8; 1600];
    while replies == 0 || tally.echo_replies < replies {
        let mut len = 0;
        if !port.poll_one(|frame| len = answer(frame, own_mac, own_ip, &mut reply, tally))? {
            exchange::idle(cfg);
            continue;
        }
        if len != 0 {
            port.send(|buf| {
                let len = len.min(buf.len());
                buf[..len].copy_from_slice(&reply[..len]);
                len
            })?;
            if tally.echo_replies % 100 == 1 {
                println!(
                    "virtio-net: pong: {} echo replies so far",
                    tally.echo_replies
                );
            }
        }
    }
    Ok(())
}
