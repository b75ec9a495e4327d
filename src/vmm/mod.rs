//! The KVM layer: the only code that touches KVM.
