//! The kernel-side filter of `jam capture`: a classic BPF program that keeps TCP segments to or
//! from one port and drops everything else before it is copied to the capture, as tcpdump's
//! `tcp port 45000` does. Without it every frame of a busy interface would cross into user space
//! to be thrown away there, and the kernel's drop count would count frames nobody wanted.
//!
//! Built here as plain instructions, so that a unit test can run it (a small interpreter of the
//! opcodes used) on frames made for the purpose; `sys::packet_socket` hands it to the kernel.

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// The opcode.
    pub code: u16,
    /// Where to jump if the test holds, and if not (instructions to skip).
    pub jt: u8,
    /// See `jt`.
    pub jf: u8,
    /// The constant.
    pub k: u32,
}

const LD_W_ABS: u16 = 0x20; // A = u32 at [k], or an ancillary value for k past SKF_AD_OFF
const LD_H_ABS: u16 = 0x28; // A = u16 at [k]
const LD_B_ABS: u16 = 0x30; // A = u8 at [k]
const LD_H_IND: u16 = 0x48; // A = u16 at [X + k]
const LDX_B_MSH: u16 = 0xb1; // X = 4 * ([k] & 0xf)
const ALU_AND_K: u16 = 0x54; // A &= k
const JEQ_K: u16 = 0x15; // if A == k
const JSET_K: u16 = 0x45; // if A & k
const RET_K: u16 = 0x06; // return k

/// How many bytes of a kept frame are passed up: all of them.
pub const KEEP: u32 = 262_144;

/// The kernel's ancillary loads: the packet's type (`PACKET_OUTGOING` is 4) and its interface.
const AD_PKTTYPE: u32 = 0xffff_f000 + 4;
const AD_IFINDEX: u32 = 0xffff_f000 + 8;
const PACKET_OUTGOING: u32 = 4;

/// Where a program's jumps go before they are made relative.
#[derive(Clone, Copy)]
enum To {
    Next,
    /// Past the next this many instructions.
    Skip(usize),
    Keep,
    Drop,
    V4,
    V6,
}

/// [`tcp_port`]'s program as a packet socket takes it: (code, jt, jf, k) for each instruction.
pub fn tcp_port_program(link: u32, port: u16, loopback: Option<u32>) -> Vec<(u16, u8, u8, u32)> {
    tcp_port(link, port, loopback).iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
}

/// The program that keeps TCP over IPv4 (unfragmented, or the first fragment) and IPv6 (TCP as
/// the first next header) to or from `port`. `link` is the link header's length before the IP
/// header: 14 for Ethernet, 0 for a cooked socket, which hands up the IP header first.
///
/// On `loopback` (its interface index), each frame passes twice, going out and coming in; the
/// outgoing copy is dropped here, in the kernel, as libpcap does, rather than copied up to be
/// thrown away.
pub fn tcp_port(link: u32, port: u16, loopback: Option<u32>) -> Vec<Insn> {
    let port = port as u32;
    let mut steps: Vec<(u16, To, To, u32)> = Vec::new();
    if let Some(index) = loopback {
        steps.push((LD_W_ABS, To::Next, To::Next, AD_PKTTYPE));
        steps.push((JEQ_K, To::Next, To::Skip(2), PACKET_OUTGOING));
        steps.push((LD_W_ABS, To::Next, To::Next, AD_IFINDEX));
        steps.push((JEQ_K, To::Drop, To::Next, index));
    }
    if link == 14 {
        steps.push((LD_H_ABS, To::Next, To::Next, 12));
        steps.push((JEQ_K, To::V4, To::Next, 0x0800));
        steps.push((JEQ_K, To::V6, To::Drop, 0x86dd));
    } else {
        steps.push((LD_B_ABS, To::Next, To::Next, link));
        steps.push((ALU_AND_K, To::Next, To::Next, 0xf0));
        steps.push((JEQ_K, To::V4, To::Next, 0x40));
        steps.push((JEQ_K, To::V6, To::Drop, 0x60));
    }
    let v4 = steps.len();
    steps.extend([
        (LD_B_ABS, To::Next, To::Next, link + 9),
        (JEQ_K, To::Next, To::Drop, 6),
        (LD_H_ABS, To::Next, To::Next, link + 6),
        (JSET_K, To::Drop, To::Next, 0x1fff),
        (LDX_B_MSH, To::Next, To::Next, link),
        (LD_H_IND, To::Next, To::Next, link),
        (JEQ_K, To::Keep, To::Next, port),
        (LD_H_IND, To::Next, To::Next, link + 2),
        (JEQ_K, To::Keep, To::Drop, port),
    ]);
    let v6 = steps.len();
    steps.extend([
        (LD_B_ABS, To::Next, To::Next, link + 6),
        (JEQ_K, To::Next, To::Drop, 6),
        (LD_H_ABS, To::Next, To::Next, link + 40),
        (JEQ_K, To::Keep, To::Next, port),
        (LD_H_ABS, To::Next, To::Next, link + 42),
        (JEQ_K, To::Keep, To::Drop, port),
    ]);
    let keep = steps.len();
    steps.push((RET_K, To::Next, To::Next, KEEP));
    let drop = steps.len();
    steps.push((RET_K, To::Next, To::Next, 0));
    let target = |from: usize, to: To| -> u8 {
        let dest = match to {
            To::Next => from + 1,
            To::Skip(n) => from + 1 + n,
            To::Keep => keep,
            To::Drop => drop,
            To::V4 => v4,
            To::V6 => v6,
        };
        (dest - from - 1) as u8
    };
    steps
        .iter()
        .enumerate()
        .map(|(i, &(code, jt, jf, k))| Insn { code, jt: target(i, jt), jf: target(i, jf), k })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program` on `packet` as the kernel would (the opcodes above only): the bytes kept.
    fn run(program: &[Insn], packet: &[u8]) -> u32 {
        run_on(program, packet, 0, 1)
    }

    /// [`run`] for a packet of type `pkttype` on interface `ifindex`.
    fn run_on(program: &[Insn], packet: &[u8], pkttype: u32, ifindex: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |i: usize| packet.get(i).copied();
        let half = |i: usize| Some(u16::from_be_bytes([byte(i)?, byte(i + 1)?]) as u32);
        loop {
            let i = program[pc];
            let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
            pc += 1;
            match i.code {
                LD_W_ABS if i.k == AD_PKTTYPE => a = pkttype,
                LD_W_ABS if i.k == AD_IFINDEX => a = ifindex,
                LD_H_ABS => match half(i.k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_B_ABS => match byte(i.k as usize) {
                    Some(v) => a = v as u32,
                    None => return 0,
                },
                LD_H_IND => match half((x + i.k) as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LDX_B_MSH => match byte(i.k as usize) {
                    Some(v) => x = 4 * (v as u32 & 0xf),
                    None => return 0,
                },
                ALU_AND_K => a &= i.k,
                JEQ_K => pc += jump(a == i.k),
                JSET_K => pc += jump(a & i.k != 0),
                RET_K => return i.k,
                other => panic!("opcode {other:#x} not interpreted"),
            }
        }
    }

    fn ipv4_tcp(options: usize, sport: u16, dport: u16, frag: u16) -> Vec<u8> {
        let ihl = 5 + options / 4;
        let mut p = vec![0u8; ihl * 4 + 20];
        p[0] = 0x40 | ihl as u8;
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[9] = 6;
        p[ihl * 4..ihl * 4 + 2].copy_from_slice(&sport.to_be_bytes());
        p[ihl * 4 + 2..ihl * 4 + 4].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn ipv6(next: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 60];
        p[0] = 0x60;
        p[6] = next;
        p[40..42].copy_from_slice(&sport.to_be_bytes());
        p[42..44].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn ethernet(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    #[test]
    fn keeps_the_port_both_ways_and_drops_the_rest() {
        let cooked = tcp_port(0, 45000, None);
        assert_eq!(run(&cooked, &ipv4_tcp(0, 50000, 45000, 0)), KEEP);
        assert_eq!(run(&cooked, &ipv4_tcp(0, 45000, 50000, 0x4000)), KEEP, "DF set is not a fragment");
        assert_eq!(run(&cooked, &ipv4_tcp(12, 50000, 45000, 0)), KEEP, "IPv4 options move the ports");
        assert_eq!(run(&cooked, &ipv4_tcp(0, 50000, 45001, 0)), 0);
        assert_eq!(run(&cooked, &ipv4_tcp(0, 50000, 45000, 0x0010)), 0, "a later fragment has no ports");
        assert_eq!(run(&cooked, &ipv6(6, 45000, 1)), KEEP);
        assert_eq!(run(&cooked, &ipv6(6, 1, 45000)), KEEP);
        assert_eq!(run(&cooked, &ipv6(17, 1, 45000)), 0, "UDP");
        let mut udp = ipv4_tcp(0, 50000, 45000, 0);
        udp[9] = 17;
        assert_eq!(run(&cooked, &udp), 0);
        assert_eq!(run(&cooked, &[0x00, 0x01, 0x08, 0x00]), 0, "ARP");
        assert_eq!(run(&cooked, &[0x45]), 0, "cut short");

        let eth = tcp_port(14, 45000, None);
        assert_eq!(run(&eth, &ethernet(0x0800, &ipv4_tcp(0, 50000, 45000, 0))), KEEP);
        assert_eq!(run(&eth, &ethernet(0x86dd, &ipv6(6, 45000, 1))), KEEP);
        assert_eq!(run(&eth, &ethernet(0x0806, &ipv4_tcp(0, 50000, 45000, 0))), 0);
        assert_eq!(run(&eth, &ethernet(0x0800, &ipv4_tcp(0, 1, 2, 0))), 0);
    }

    #[test]
    fn on_loopback_the_outgoing_copy_is_dropped_in_the_kernel() {
        let program = tcp_port(0, 45000, Some(1));
        let segment = ipv4_tcp(0, 50000, 45000, 0);
        assert_eq!(run_on(&program, &segment, 0, 1), KEEP, "coming in on lo");
        assert_eq!(run_on(&program, &segment, PACKET_OUTGOING, 1), 0, "going out on lo");
        assert_eq!(run_on(&program, &segment, PACKET_OUTGOING, 2), KEEP, "going out on eth0");
        assert_eq!(run_on(&program, &ipv4_tcp(0, 1, 2, 0), 0, 1), 0, "another port");
    }
}
