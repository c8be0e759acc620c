//! Who gets a typed byte: the focused guest or the shell. The escape key moves the focus along
//! guest 1 → guest 2 → … → shell → guest 1; the escape key pressed twice in a row sends one
//! literal escape byte to the focused guest instead.
//!
//! A single escape cannot be acted on at once (it may be the first of a pair), so it waits:
//! the next byte decides, or, if none comes within [`ESCAPE_WAIT_MS`], the focus moves then.

#![forbid(unsafe_code)]

/// How long a lone escape waits for a second one before it moves the focus.
pub const ESCAPE_WAIT_MS: u64 = 300;

/// Where typed bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    /// The guest at this index (manifest order).
    Guest(usize),
    /// The hypervisor's shell.
    Shell,
}

/// What one event means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Nothing yet (an escape waits for what follows).
    Nothing,
    /// Deliver the byte to guest `index`.
    Guest { index: usize, byte: u8 },
    /// Feed the byte to the shell.
    Shell(u8),
    /// The focus moved (print a notice).
    Switched(Focus),
    /// The focus moved and then the byte goes to the new focus.
    SwitchedThen(Focus, u8),
}

/// The focus state machine.
#[derive(Clone, Debug)]
pub struct Router {
    escape: u8,
    guests: usize,
    focus: Focus,
    /// When a lone escape arrived (ms), while it waits for a second one.
    escape_at_ms: Option<u64>,
}

impl Router {
    /// A router for `guests` guests; the first guest has the focus (the shell if there is none).
    pub fn new(escape: u8, guests: usize) -> Self {
        Self {
            escape,
            guests,
            focus: if guests > 0 {
                Focus::Guest(0)
            } else {
                Focus::Shell
            },
            escape_at_ms: None,
        }
    }

    /// Where input goes now.
    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// The escape byte.
    pub fn escape(&self) -> u8 {
        self.escape
    }

    /// The focus after the current one.
    fn next(&self) -> Focus {
        match self.focus {
            Focus::Guest(i) if i + 1 < self.guests => Focus::Guest(i + 1),
            Focus::Guest(_) => Focus::Shell,
            Focus::Shell if self.guests > 0 => Focus::Guest(0),
            Focus::Shell => Focus::Shell,
        }
    }

    fn switch(&mut self) -> Focus {
        self.focus = self.next();
        self.focus
    }

    fn deliver(&self, byte: u8) -> Routed {
        match self.focus {
            Focus::Guest(index) => Routed::Guest { index, byte },
            Focus::Shell => Routed::Shell(byte),
        }
    }

    /// One byte typed at time `now_ms`.
    pub fn feed(&mut self, byte: u8, now_ms: u64) -> Routed {
        if self.escape_at_ms.take().is_some() {
            if byte == self.escape {
                // Escape twice: one literal escape for whoever has the focus.
                return self.deliver(byte);
            }
            let to = self.switch();
            return match self.deliver(byte) {
                Routed::Guest { byte, .. } | Routed::Shell(byte) => Routed::SwitchedThen(to, byte),
                _ => Routed::Switched(to),
            };
        }
        if byte == self.escape {
            self.escape_at_ms = Some(now_ms);
            return Routed::Nothing;
        }
        self.deliver(byte)
    }

    /// Time passes: a lone escape that waited long enough moves the focus.
    pub fn tick(&mut self, now_ms: u64) -> Routed {
        match self.escape_at_ms {
            Some(at) if now_ms.saturating_sub(at) >= ESCAPE_WAIT_MS => {
                self.escape_at_ms = None;
                Routed::Switched(self.switch())
            }
            _ => Routed::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESC: u8 = 0x01;

    #[test]
    fn plain_bytes_go_to_the_first_guest() {
        let mut r = Router::new(ESC, 2);
        assert_eq!(
            r.feed(b'x', 0),
            Routed::Guest {
                index: 0,
                byte: b'x'
            }
        );
        assert_eq!(r.tick(10_000), Routed::Nothing);
    }

    #[test]
    fn a_lone_escape_cycles_through_guests_and_the_shell_after_the_wait() {
        let mut r = Router::new(ESC, 2);
        assert_eq!(r.feed(ESC, 0), Routed::Nothing);
        assert_eq!(r.tick(ESCAPE_WAIT_MS - 1), Routed::Nothing);
        assert_eq!(r.tick(ESCAPE_WAIT_MS), Routed::Switched(Focus::Guest(1)));
        r.feed(ESC, 1000);
        assert_eq!(r.tick(2000), Routed::Switched(Focus::Shell));
        r.feed(ESC, 3000);
        assert_eq!(r.tick(4000), Routed::Switched(Focus::Guest(0)));
    }

    #[test]
    fn an_escape_followed_by_a_byte_switches_and_delivers_it() {
        let mut r = Router::new(ESC, 1);
        r.feed(ESC, 0);
        assert_eq!(r.feed(b'l', 1), Routed::SwitchedThen(Focus::Shell, b'l'));
        assert_eq!(r.feed(b'i', 2), Routed::Shell(b'i'));
        r.feed(ESC, 3);
        assert_eq!(r.feed(b'k', 4), Routed::SwitchedThen(Focus::Guest(0), b'k'));
    }

    #[test]
    fn escape_twice_sends_one_literal_escape_and_keeps_the_focus() {
        let mut r = Router::new(ESC, 2);
        r.feed(ESC, 0);
        assert_eq!(
            r.feed(ESC, 1),
            Routed::Guest {
                index: 0,
                byte: ESC
            }
        );
        assert_eq!(r.tick(10_000), Routed::Nothing);
        assert_eq!(r.focus(), Focus::Guest(0));
        // A third escape starts a new pair.
        assert_eq!(r.feed(ESC, 10_001), Routed::Nothing);
    }

    #[test]
    fn without_guests_the_shell_keeps_the_focus() {
        let mut r = Router::new(0x14, 0);
        assert_eq!(r.focus(), Focus::Shell);
        r.feed(0x14, 0);
        assert_eq!(r.tick(ESCAPE_WAIT_MS), Routed::Switched(Focus::Shell));
        assert_eq!(r.feed(b'a', 0), Routed::Shell(b'a'));
    }
}
