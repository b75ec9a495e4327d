//! ATA register layer: the device (ACS-3).
