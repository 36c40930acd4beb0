//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod cluster;
pub mod fastavro;
pub mod platform;
pub mod slice;
