//! AHCI layer: the HBA (AHCI 1.3.1).
