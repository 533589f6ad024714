//! The boot configuration: which VMs to run, how, and where QEMU staged
//! their images. (Parser to be written.)
