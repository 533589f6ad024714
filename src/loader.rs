//! Guest image checks and placement: the arm64 `Image` header, initramfs and
//! device tree blob.
