//! A small seeded PRNG (xorshift64*, Vigna 2014) for the hostile guests: the same seed gives the
//! same sequence of register writes and descriptor chains, so a failure can be replayed.

/// xorshift64* state (never 0).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: the all-zero state never moves).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `items` (`items` must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A register value biased towards the edges: fully random, small, or a boundary value.
    pub fn value(&mut self) -> u64 {
        const EDGES: [u64; 9] = [
            0,
            1,
            0x7F,
            0xFF,
            0xFFFF,
            0x8000_0000,
            0xFFFF_FFFF,
            0x1_0000_0000,
            u64::MAX,
        ];
        match self.below(4) {
            0 | 1 => self.next_u64(),
            2 => self.below(16),
            _ => self.pick(&EDGES),
        }
    }
}
