//! Physical memory management: which host frames are free, handed out and returned.

#![forbid(unsafe_code)]

pub mod frames;

pub use frames::FrameAllocator;
