//! Helpers for darts-prime integration tests.
