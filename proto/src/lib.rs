//! Wire protocol of darts-prime.
