//! The console multiplexer: attributes guest output to its VM line by line,
//! routes input to the VM with focus, and interprets the escape key.
