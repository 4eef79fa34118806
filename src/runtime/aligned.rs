//! [`AlignedBuf`], the one aligned byte buffer: tensor data and TFLite model files.

/// Alignment of every [`AlignedBuf`]: 64 bytes. Tensor views cast with bytemuck need the
/// element's alignment (at most 8); LiteRT reads a model buffer's flatbuffer tables and the
/// tensor data in them in place and wants 64 (a mapping's page alignment gave it that before).
pub const ALIGN: usize = 64;

/// `ALIGN` bytes at an `ALIGN`-aligned address: the unit of [`AlignedBuf`].
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; ALIGN]);

// SAFETY: `Line` is `repr(C)` around a `[u8; 64]` with `align(64)`: size 64, no padding bytes,
// every bit pattern valid, all-zero included.
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above; `Line` is `Copy` and `'static`.
unsafe impl bytemuck::Pod for Line {}

const _: () = assert!(std::mem::size_of::<Line>() == ALIGN && std::mem::align_of::<Line>() == ALIGN);

/// A byte buffer at a 64-byte aligned address (see [`ALIGN`]), so it can be viewed as a slice of
/// any element type and handed to LiteRT as a model.
#[derive(Clone, Default)]
pub struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> Self {
        AlignedBuf { lines: vec![Line([0; ALIGN]); len.div_ceil(ALIGN)], len }
    }
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.as_bytes_mut().copy_from_slice(bytes);
        b
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<Line, u8>(&self.lines)[..self.len]
    }
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.lines)[..len]
    }
    /// View as a slice of `T`: the whole elements the buffer holds (trailing bytes of a length
    /// that is not a multiple of `size_of::<T>()` are not part of it, never a panic).
    pub fn as_slice<T: bytemuck::Pod>(&self) -> &[T] {
        let whole = self.len - self.len % std::mem::size_of::<T>().max(1);
        bytemuck::cast_slice(&self.as_bytes()[..whole])
    }
    pub fn as_slice_mut<T: bytemuck::Pod>(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(self.as_bytes_mut())
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_buffer_is_64_byte_aligned_and_keeps_its_length() {
        for len in [1usize, 3, 8, 63, 64, 65, 1000, 4097] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let b = AlignedBuf::from_bytes(&bytes);
            let c = b.clone();
            for buf in [&b, &c, &AlignedBuf::zeroed(len)] {
                assert_eq!(buf.as_bytes().as_ptr() as usize % ALIGN, 0, "len {len}");
                assert_eq!(buf.len(), len);
            }
            assert_eq!(c.as_bytes(), &bytes[..]);
            // Views of the widest element types: whole elements only, no panic.
            assert_eq!(b.as_slice::<f64>().len(), len / 8);
            assert_eq!(b.as_slice::<u16>().len(), len / 2);
        }
        let empty = AlignedBuf::zeroed(0);
        assert!(empty.is_empty() && empty.as_bytes().is_empty() && empty.as_slice::<f32>().is_empty());
    }

    #[test]
    fn as_slice_mut_writes_through_to_the_bytes() {
        let mut b = AlignedBuf::zeroed(8);
        b.as_slice_mut::<f32>().copy_from_slice(&[1.0, -2.0]);
        assert_eq!(b.as_bytes(), [1.0f32.to_ne_bytes(), (-2.0f32).to_ne_bytes()].concat());
    }
}
