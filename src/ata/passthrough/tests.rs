//! Drive tests.
