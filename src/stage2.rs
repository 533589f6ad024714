//! Stage-2 translation tables, built per VM.
