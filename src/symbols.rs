//! The names of the symbols a stream's and a pool's graphs are typed with; tract's messages
//! carry them, and `refusal` puts them back into words.

/// The name of the symbol that stands for a chunk's length while a stream's graph is typed.
pub const STREAM_SEQ: &str = "stream_seq";

/// The name of the symbol that stands for the number of streams a pool runs in one step.
pub const POOL_BATCH: &str = "pool_batch";
