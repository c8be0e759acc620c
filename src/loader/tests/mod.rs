//! Host tests for the loader: hand-built images in, guest memory decoded back out.

mod acpi;
mod aml_walker;
mod bad_images;
mod builders;
mod linux;
mod pvh;
