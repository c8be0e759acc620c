//! The fuzz entry points over pseudo-random inputs, so `cargo test` already covers them.

use crate::devices::virtio::testing::fuzz;

/// xorshift64*: deterministic, good enough to scatter bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.next() as usize % max;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn run(seed: u64, rounds: usize, max_len: usize, target: fn(&[u8])) {
    let mut rng = Rng(seed);
    target(&[]);
    target(&[0xff; 64]);
    for _ in 0..rounds {
        target(&rng.bytes(max_len));
    }
}

#[test]
fn virtqueue_walker_survives_random_rings() {
    run(1, 300, 8192, fuzz::virtqueue);
}

#[test]
fn blk_survives_random_requests() {
    run(2, 200, 4096, fuzz::blk_request);
}

#[test]
fn net_survives_random_frames() {
    run(3, 200, 4096, fuzz::net);
}

#[test]
fn console_survives_random_traffic() {
    run(4, 200, 2048, fuzz::console);
}

#[test]
fn registers_survive_random_accesses() {
    run(5, 300, 2048, fuzz::mmio_registers);
}
