//! The interrupt-injection API devices use.
//!
//! A device never touches the GIC: it raises or lowers its line through an
//! [`IrqSink`], which the VM's virtual GIC implements (and host tests replace
//! with a recorder). INTIDs are GICv3 numbers: 0-15 SGI, 16-31 PPI,
//! 32-1019 SPI.

/// Where a device's interrupt line goes.
pub trait IrqSink {
    /// Makes an edge-triggered interrupt pending once (e.g. a virtio-mmio
    /// used-buffer notification).
    fn raise_edge(&mut self, intid: u32);
    /// Sets the level of a level-sensitive line (e.g. the PL011's combined
    /// interrupt): pending while high, as the GIC specifies.
    fn set_level(&mut self, intid: u32, high: bool);
}

/// Number of INTIDs a [`RecordingIrqSink`] tracks.
pub const RECORDED_INTIDS: usize = 128;

/// An [`IrqSink`] that records what it is asked to do, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingIrqSink {
    /// Number of edges raised per INTID (index = INTID).
    pub edges: [u32; RECORDED_INTIDS],
    /// Current level per INTID (index = INTID).
    pub levels: [bool; RECORDED_INTIDS],
    /// Calls naming an INTID at or above [`RECORDED_INTIDS`].
    pub out_of_range: u32,
}

impl RecordingIrqSink {
    /// A recorder with no edges and every line low.
    pub const fn new() -> Self {
        RecordingIrqSink {
            edges: [0; RECORDED_INTIDS],
            levels: [false; RECORDED_INTIDS],
            out_of_range: 0,
        }
    }

    /// Total edges raised on `intid` so far.
    pub fn edges_on(&self, intid: u32) -> u32 {
        self.edges.get(intid as usize).copied().unwrap_or(0)
    }

    /// Current level of `intid`.
    pub fn level_of(&self, intid: u32) -> bool {
        self.levels.get(intid as usize).copied().unwrap_or(false)
    }
}

impl Default for RecordingIrqSink {
    fn default() -> Self {
        Self::new()
    }
}

impl IrqSink for RecordingIrqSink {
    fn raise_edge(&mut self, intid: u32) {
        match self.edges.get_mut(intid as usize) {
            Some(count) => *count += 1,
            None => self.out_of_range += 1,
        }
    }

    fn set_level(&mut self, intid: u32, high: bool) {
        match self.levels.get_mut(intid as usize) {
            Some(level) => *level = high,
            None => self.out_of_range += 1,
        }
    }
}
