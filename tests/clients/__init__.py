"""Model definitions as practitioners write them, for auditing what users bring (issue: real users'
models). Written here from the public architectures' descriptions, not copied from their projects."""
